"""``metaflow.tracing`` while MF_TRACING is on; the implementation is mfotel's.

If mfotel itself cannot be imported (a broken install), Metaflow gets inert functions and one
warning line: telemetry must never stop a flow.
"""

try:
    from mfotel._internal.hooks import (
        cli,
        get_trace_id,
        init_tracing,
        inject_tracing_vars,
        post_fork,
        traced,
        tracing,
    )
except Exception as _error:  # pragma: no cover - exercised by the broken-install test
    import contextlib as _contextlib
    import os as _os
    import sys as _sys

    if not _os.environ.get("MFOTEL_WARNED"):
        _os.environ["MFOTEL_WARNED"] = "1"
        _sys.stderr.write("mfotel: telemetry is off, mfotel failed to load: %s\n" % (_error,))

    def init_tracing():
        pass

    @_contextlib.contextmanager
    def post_fork():
        yield

    def cli(name):
        return lambda func: func

    def inject_tracing_vars(env_dict):
        return env_dict

    def get_trace_id():
        return ""

    @_contextlib.contextmanager
    def traced(name, attrs=None):
        yield

    def tracing(func):
        return func
