"""The part of mfotel a task needs, for Metaflow's code package.

A remote task's interpreter (a stock image, ``@pypi``/``@conda``, a scheduler's worker) has
Metaflow's code package and usually not mfotel, so ``@mfotel`` adds these modules to the
package: the task hooks, the agent with its OTLP encoder and transports, the log relay and
tee. All of them are standard library only. The CLI, the collector tooling, backfill and the
test stand-ins stay out; ``tests/unit/test_package.py`` checks that nothing these modules
import is missing.
"""

from __future__ import annotations

import functools
import os

# Entry points: what Metaflow's hooks, the monitor and event logger, and the spawned
# processes (agent, relay, tee) import first.
ENTRY_MODULES = (
    "mfotel._internal.hooks",
    "mfotel._internal.remote",
    "mfotel._internal.handoff",
    "mfotel._internal.agent.__main__",
    "mfotel.logs._relay",
    "mfotel.logs._tee",
)

TASK_MODULES = (
    "mfotel",
    "mfotel._internal",
    "mfotel._internal.agent",
    "mfotel._internal.agent.__main__",
    "mfotel._internal.agent.detect",
    "mfotel._internal.agent.exporter",
    "mfotel._internal.agent.pipeline",
    "mfotel._internal.agent.server",
    "mfotel._internal.agent.sinks",
    "mfotel._internal.agent.spool",
    "mfotel._internal.handoff",
    "mfotel._internal.hooks",
    "mfotel._internal.identity",
    "mfotel._internal.ipc",
    "mfotel._internal.model",
    "mfotel._internal.otlp",
    "mfotel._internal.otlp.config",
    "mfotel._internal.otlp.encode",
    "mfotel._internal.otlp.transport",
    "mfotel._internal.otlp.wire",
    "mfotel._internal.paths",
    "mfotel._internal.proc",
    "mfotel._internal.remote",
    "mfotel.events",
    "mfotel.events._attributes",
    "mfotel.logs",
    "mfotel.logs._ledger",
    "mfotel.logs._lines",
    "mfotel.logs._mflog",
    "mfotel.logs._persisted",
    "mfotel.logs._records",
    "mfotel.logs._relay",
    "mfotel.logs._tee",
    "mfotel.metrics",
    "mfotel.metrics._aggregate",
    "mfotel.settings",
    "mfotel.traces",
    "mfotel.traces._ids",
    "mfotel.traces._propagation",
    "mfotel.traces._spans",
)


def module_file(root: str, module: str) -> str:
    """The source file of ``module`` under the folder that holds the ``mfotel`` package."""
    base = os.path.join(root, *module.split("."))
    return os.path.join(base, "__init__.py") if os.path.isdir(base) else base + ".py"


@functools.lru_cache(maxsize=1)
def task_files() -> list[tuple[str, str]]:
    """``(path, name in the package)`` of every module a task needs, as ``add_to_package``
    returns them (Metaflow >= 2.16 puts them under ``.mf_code/``, on the task's path); once per
    process, though Metaflow asks once per step."""
    import mfotel

    root = os.path.dirname(os.path.dirname(os.path.abspath(mfotel.__file__)))
    files = []
    for module in TASK_MODULES:
        path = module_file(root, module)
        files.append((path, os.path.relpath(path, root).replace(os.sep, "/")))
    return files
