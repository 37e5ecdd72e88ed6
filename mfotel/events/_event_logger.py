"""The ``mfotelEventLogger`` Metaflow event logger: events go to the run's agent.

Like the monitor it has no sidecar worker, so Metaflow starts no process for it.
"""

from __future__ import annotations

from typing import Any

from metaflow.event_logger import NullEventLogger

from mfotel._internal import hooks


class EventLogger(NullEventLogger):  # type: ignore[misc]
    TYPE = "mfotelEventLogger"

    def log(self, payload: Any) -> None:
        if isinstance(payload, dict):
            hooks.emit_event(
                str(payload.get("level", "info")),
                str(payload.get("module", "")),
                str(payload.get("name", "event")),
                payload.get("payload"),
            )
        else:
            hooks.emit_event("info", "", "event", payload)

    @classmethod
    def get_worker(cls) -> None:
        return None
