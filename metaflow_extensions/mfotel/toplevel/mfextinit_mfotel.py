"""Metaflow loads this first: with MF_TRACING on, ``metaflow.tracing`` becomes mfotel's.

With MF_TRACING unset or ``off`` nothing is overridden and nothing else of mfotel is imported.
"""

import os as _os

_mode = _os.environ.get("MF_TRACING", "").strip().lower()
if _mode in ("otlp", "console"):
    module_overrides = "mfotel_overrides"
elif _mode not in ("", "off") and not _os.environ.get("MFOTEL_WARNED"):
    # Child processes inherit the mark, so a run prints this once, not once per task.
    _os.environ["MFOTEL_WARNED"] = "1"
    import sys as _sys

    _sys.stderr.write(
        "mfotel: MF_TRACING=%r is not otlp, console or off; telemetry is off for this run "
        "(set MF_TRACING=otlp)\n" % _mode
    )
