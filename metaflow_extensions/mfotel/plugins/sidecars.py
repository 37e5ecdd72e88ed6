"""``mfotelMonitor`` and ``mfotelEventLogger``: Metaflow's metrics and events go to the run's
agent as small messages on the process's agent connection. No sidecar worker, so Metaflow
starts no process for them.

Inert unless ``metaflow.tracing`` is mfotel's in this process (which loaded
``mfotel._internal.hooks``): a name on a command line must always resolve, and must never
fail a task.
"""

import sys
import time
from contextlib import contextmanager

from metaflow.event_logger import NullEventLogger
from metaflow.monitor import NullMonitor


def _hooks():
    return sys.modules.get("mfotel._internal.hooks")


def _metric(kind, name, value):
    hooks = _hooks()
    if hooks is not None:
        hooks.emit_metric(kind, name, value)


class Monitor(NullMonitor):
    TYPE = "mfotelMonitor"

    @contextmanager
    def count(self, name):
        yield
        _metric("counter", name, 1)

    @contextmanager
    def measure(self, name):
        start = time.perf_counter()
        try:
            yield
        finally:
            _metric("timer", name, time.perf_counter() - start)

    def gauge(self, gauge):
        try:
            _metric("gauge", str(gauge.name), float(gauge.value))
        except (AttributeError, TypeError, ValueError):
            pass

    @classmethod
    def get_worker(cls):
        return None


class EventLogger(NullEventLogger):
    TYPE = "mfotelEventLogger"

    def log(self, payload):
        hooks = _hooks()
        if hooks is not None:
            hooks.log_event(payload)

    @classmethod
    def get_worker(cls):
        return None
