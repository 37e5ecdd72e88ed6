"""Whether mfotel runs in this process: the one decision every entry file shares.

Metaflow imports this in every process of a flow whenever the extension is installed or
travels in a code package, with or without ``MF_TRACING``, so it stays standard-library only,
cheap, and importable on any Python Metaflow runs on (no syntax newer than 3.6).
"""

import os
import sys

MODES = ("otlp", "console")
MIN_PYTHON = (3, 9)
MIN_METAFLOW = "2.16"
# Processes that are a run, a task or a deployment: the ones that say why telemetry is off.
# (Not Metaflow's helpers, such as save_logs or a sidecar, which would repeat the line.)
_COMMANDS = ("run", "resume", "step", "create")


def mode():
    return os.environ.get("MF_TRACING", "").strip().lower()


def problem():
    """Why mfotel cannot run in this process although MF_TRACING asks for it, or None."""
    wanted = mode()
    if wanted in ("", "off"):
        return None
    if wanted not in MODES:
        return (
            "MF_TRACING=%r is not otlp, console or off; telemetry is off (set MF_TRACING=otlp)"
            % (wanted,)
        )
    if sys.version_info < MIN_PYTHON:
        return "telemetry is off: mfotel needs Python >= %d.%d, this task runs %d.%d (%s)" % (
            MIN_PYTHON + sys.version_info[:2] + (sys.executable,)
        )
    if not _metaflow_supported():
        return (
            "telemetry is off: mfotel needs Metaflow >= %s (pip install -U metaflow)" % MIN_METAFLOW
        )
    return None


def active():
    """MF_TRACING asks for telemetry and this process can give it."""
    return mode() in MODES and problem() is None


def user_decospecs():
    """The user's own DEFAULT_DECOSPECS (environment or Metaflow's config file), without
    ``mfotel``; "" when there are none."""
    try:
        from metaflow.metaflow_config_funcs import from_conf

        specs = str(from_conf("DEFAULT_DECOSPECS", "") or "").split()
    except Exception:  # Metaflow's configuration is its own business to report
        return ""
    return " ".join(spec for spec in specs if spec.split(":", 1)[0] != "mfotel")


def warn_once(line):
    """One ``mfotel:`` line per run or task: child processes inherit the mark."""
    if os.environ.get("MFOTEL_WARNED"):
        return
    if not any(arg in _COMMANDS for arg in sys.argv[1:]):
        return
    os.environ["MFOTEL_WARNED"] = "1"
    try:
        sys.stderr.write("mfotel: %s\n" % (line,))
        sys.stderr.flush()
    except Exception:
        pass


def _metaflow_supported():
    # Feature, not version string: Metaflow >= 2.16 has packaging_sys (a code package's copy
    # of Metaflow has no distribution metadata to read a version from).
    metaflow = sys.modules.get("metaflow")
    path = getattr(metaflow, "__file__", None)
    if not path:
        return True
    return os.path.isdir(os.path.join(os.path.dirname(path), "packaging_sys"))
