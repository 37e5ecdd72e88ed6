"""Waiting on a condition variable until a predicate holds, without polling sleeps."""

from __future__ import annotations

import threading
import time
from typing import Callable


def wait_until(lock: threading.Condition, predicate: Callable[[], bool], timeout: float) -> bool:
    """True once ``predicate()`` holds (checked under ``lock``), False after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    with lock:
        while not predicate():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            lock.wait(remaining)
        return True
