"""Event-logger payloads to span-event attributes."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

MAX_DEPTH = 4


def flatten(payload: Mapping[str, Any], prefix: str = "", depth: int = 0) -> dict[str, Any]:
    """Nested maps become dotted keys; lists of scalars stay arrays; the rest becomes JSON."""
    out: dict[str, Any] = {}
    for key, value in payload.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and depth < MAX_DEPTH:
            out.update(flatten(value, name + ".", depth + 1))
        elif value is None:
            continue
        elif isinstance(value, (str, bool, int, float)):
            out[name] = value
        elif isinstance(value, (list, tuple)) and all(
            isinstance(v, (str, bool, int, float)) for v in value
        ):
            kinds = {type(v) for v in value}
            out[name] = list(value) if len(kinds) <= 1 else [str(v) for v in value]
        else:
            out[name] = json.dumps(value, default=str, sort_keys=True)
    return out


def event_attributes(body: Mapping[str, Any]) -> dict[str, Any]:
    """An ``event`` message's attributes: its payload, flattened, and its level as
    ``metaflow.event.level`` (on a span event and on the log record of a late one alike)."""
    attributes = flatten(body.get("payload") or {})
    level = body.get("level")
    if level:
        attributes["metaflow.event.level"] = str(level)
    return attributes
