"""Log lines to OTLP log records: structured JSON bodies, severity, identity."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from mfotel._internal.model import (
    SEVERITY_DEBUG,
    SEVERITY_ERROR,
    SEVERITY_FATAL,
    SEVERITY_INFO,
    SEVERITY_UNSPECIFIED,
    SEVERITY_WARN,
    AttrValue,
    LogRecord,
)

_LEVELS = {
    "trace": (1, "TRACE"),
    "debug": (SEVERITY_DEBUG, "DEBUG"),
    "info": (SEVERITY_INFO, "INFO"),
    "information": (SEVERITY_INFO, "INFO"),
    "notice": (10, "NOTICE"),
    "warn": (SEVERITY_WARN, "WARN"),
    "warning": (SEVERITY_WARN, "WARN"),
    "error": (SEVERITY_ERROR, "ERROR"),
    "err": (SEVERITY_ERROR, "ERROR"),
    "critical": (SEVERITY_FATAL, "FATAL"),
    "fatal": (SEVERITY_FATAL, "FATAL"),
    "exception": (SEVERITY_ERROR, "ERROR"),
}
_LEVEL_KEYS = ("level", "severity", "levelname", "log.level", "lvl", "status")
# Python logging's default format starts "LEVEL:logger:"; the common "[LEVEL]" too. One
# regex match and one dict look-up per line (this runs for every line, live and backfilled).
_PREFIX = re.compile(r"\[([A-Z]+)\]|([A-Z]+)[: ]")
_PREFIX_LEVELS = {name.upper(): level for name, level in _LEVELS.items()}


def severity_of(value: object) -> tuple[int, str]:
    if isinstance(value, bool):
        return SEVERITY_UNSPECIFIED, ""
    if isinstance(value, int) and 1 <= value <= 24:
        return value, ""
    if isinstance(value, str):
        found = _LEVELS.get(value.strip().lower())
        if found is not None:
            return found
        return SEVERITY_UNSPECIFIED, value
    return SEVERITY_UNSPECIFIED, ""


def body_and_severity(text: str) -> tuple[AttrValue, int, str]:
    """A JSON-object line becomes a map body with its level as severity; other lines stay text."""
    stripped = text.strip()
    if stripped.startswith("{") and stripped.endswith("}"):
        try:
            parsed = json.loads(stripped)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            for key in _LEVEL_KEYS:
                if key in parsed:
                    number, name = severity_of(parsed[key])
                    if number:
                        return parsed, number, name
            return parsed, SEVERITY_UNSPECIFIED, ""
    if stripped[:1].isupper() or stripped[:1] == "[":
        match = _PREFIX.match(stripped)
        if match is not None:
            found = _PREFIX_LEVELS.get(match.group(1) or match.group(2))
            if found is not None:
                return text, found[0], found[1]
    return text, SEVERITY_UNSPECIFIED, ""


def make_record(
    uid: str,
    time_ns: int,
    stream: str,
    text: str,
    source: str,
    identity: Mapping[str, Any],
    trace_id: bytes,
    span_id: bytes,
    observed_ns: int,
) -> LogRecord:
    body, severity, severity_text = body_and_severity(text)
    attributes = dict(identity)
    attributes["log.iostream"] = stream
    attributes["log.record.uid"] = uid
    attributes["metaflow.log.source"] = source
    return LogRecord(
        time_ns=time_ns,
        observed_ns=observed_ns,
        body=body,
        severity_number=severity,
        severity_text=severity_text,
        attributes=attributes,
        trace_id=trace_id,
        span_id=span_id,
        flags=1 if trace_id else 0,
    )
