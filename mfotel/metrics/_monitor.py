"""The ``mfotelMonitor`` Metaflow monitor: timers, counters and gauges go to the run's agent.

It has no sidecar worker, so Metaflow starts no process for it; each measurement is one
small message on the process's existing agent connection.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from metaflow.monitor import NullMonitor

from mfotel._internal import hooks


class Monitor(NullMonitor):  # type: ignore[misc]
    TYPE = "mfotelMonitor"

    @contextmanager
    def count(self, name: str) -> Iterator[None]:
        yield
        hooks.emit_metric("counter", name, 1)

    @contextmanager
    def measure(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            hooks.emit_metric("timer", name, time.perf_counter() - start)

    def gauge(self, gauge: Any) -> None:
        hooks.emit_metric("gauge", str(gauge.name), float(gauge.value))

    @classmethod
    def get_worker(cls) -> None:
        return None
