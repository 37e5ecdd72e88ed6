"""Log lines to OTLP log records: structured JSON bodies, severity, identity."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from mfotel._internal.model import (
    SEVERITY_DEBUG,
    SEVERITY_ERROR,
    SEVERITY_FATAL,
    SEVERITY_INFO,
    SEVERITY_UNSPECIFIED,
    SEVERITY_WARN,
    AttrValue,
    LogBlock,
)
from mfotel._internal.otlp.encode import log_attributes

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


# A line whose first byte is one of these may be more than its text: a JSON object (perhaps
# after blanks), a "[LEVEL]" or "LEVEL:" prefix. Any other line is a plain-text body, decided
# on one byte: the live path and backfill shape every line with this.
_MAYBE_SPECIAL = frozenset(b"{[ \t\r\x0b\x0c" + bytes(range(ord("A"), ord("Z") + 1)))


def shape(texts: Sequence[bytes]) -> dict[int, tuple[AttrValue, int, str]]:
    """The lines (valid UTF-8) whose record is not just their text with no severity, by index:
    (body, severity number, severity text), as :func:`body_and_severity` says."""
    special: dict[int, tuple[AttrValue, int, str]] = {}
    maybe = _MAYBE_SPECIAL
    for index, text in enumerate(texts):
        if text and text[0] in maybe:
            decoded = text.decode("utf-8", "replace")
            shaped = body_and_severity(decoded)
            if shaped[1] or shaped[0] is not decoded:
                special[index] = shaped
    return special


def shared_attributes(identity: Mapping[str, Any], stream: str, source: str) -> bytes:
    """The encoded attributes every record of one attempt's stream carries: the identity,
    ``log.iostream`` and ``metaflow.log.source`` (``log.record.uid`` is each record's own)."""
    attributes = dict(identity)
    attributes["log.iostream"] = stream
    attributes["metaflow.log.source"] = source
    return log_attributes(attributes)


def make_block(
    shared: bytes,
    trace_id: bytes,
    span_id: bytes,
    observed_ns: int,
    texts: list[bytes],
    times: int | list[int],
    uids: list[str] | tuple[str, int],
    attempt: tuple[str, int] | None,
    stream: str = "",
) -> LogBlock:
    """Lines (valid UTF-8, without newlines) of one attempt's stream as a block of records."""
    return LogBlock(
        shared,
        trace_id,
        span_id,
        observed_ns,
        texts,
        times,
        uids,
        attempt,
        flags=1 if span_id else 0,
        stream=stream,
        special=shape(texts),
    )
