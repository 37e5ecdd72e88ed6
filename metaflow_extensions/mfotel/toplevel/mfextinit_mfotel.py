"""Metaflow loads this first: with MF_TRACING on, ``metaflow.tracing`` becomes mfotel's.

With MF_TRACING unset or ``off`` nothing is overridden and nothing of mfotel is imported.
Where mfotel cannot run (an unknown MF_TRACING value, a Python or Metaflow too old) the run
or task says so in one line and goes on untouched.
"""

from metaflow_extensions.mfotel import gate as _gate

if _gate.active():
    module_overrides = "mfotel_overrides"
elif _gate.problem():
    _gate.warn_once(_gate.problem())
