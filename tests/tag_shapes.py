"""What each backend should receive for a Metaflow tag: the tests' oracle for the collector's OTTL.

Written from the vendors' documented rules, independently of the templates, so that a test
comparing the two can fail: Datadog's tag rules
(https://docs.datadoghq.com/getting_started/tagging/#define-tags) as its agent applies them, and
the field rules the kit documents for Splunk.
"""

from __future__ import annotations

import re
import unicodedata

DATADOG_MAX_TAG = 200
DATADOG_RESERVED_KEYS = ("host", "device", "source", "service", "env", "version")


def _letter(c: str) -> bool:
    return unicodedata.category(c).startswith("L")


def _lower(c: str) -> str:
    """One character lowercased on its own, as Go's unicode.ToLower does (no special casing)."""
    low = c.lower()
    return low[0] if len(low) > 1 else low


def datadog_tag(tag: str) -> str:
    """A Metaflow tag as a Datadog tag; "" when nothing of it survives."""
    text = "".join(_lower(c) for c in tag)
    start = 0
    while start < len(text) and not (_letter(text[start]) or text[start] == ":"):
        start += 1
    text = text[start:]
    key, colon, _ = text.partition(":")
    if colon and key in DATADOG_RESERVED_KEYS:
        text = "metaflow_" + text
    out: list[str] = []
    for c in text[:DATADOG_MAX_TAG]:
        if _letter(c) or unicodedata.category(c) == "Nd" or c in ":./-":
            out.append(c)
        elif not out or out[-1] != "_":
            out.append("_")
    return "".join(out).removesuffix("_")


def datadog_tags(tags: list[str]) -> list[str]:
    return [t for t in (datadog_tag(tag) for tag in tags) if t]


def datadog_span_tags(tags: list[str]) -> dict[str, str]:
    """The key:value ones whose key has no dot, as span tags (the last of a repeated key
    wins); dotted keys are Datadog's and OpenTelemetry's own (service.name, ...)."""
    pairs = (t.partition(":") for t in datadog_tags(tags))
    return {
        key: value
        for key, colon, value in pairs
        if key and colon and value and _letter(key[0]) and "." not in key
    }


# What Go's JSON encoder escapes, which the templates see as one "_" per character (except
# < > &, which the Splunk and CloudWatch mappings turn back into themselves).
_JSON_ESCAPED = {'"', "\\", "\u2028", "\u2029"} | {chr(c) for c in range(0x20)}


def _unescaped(tag: str) -> str:
    return "".join("_" if c in _JSON_ESCAPED or c == "'" else c for c in tag)


def _pairs(tags: list[str], key_pattern: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for tag in tags:
        key, colon, value = tag.partition(":")
        if colon and value and re.fullmatch(key_pattern, key):
            found[key.strip()] = value.strip()
    return found


def splunk_fields(tags: list[str]) -> dict[str, str]:
    """The metaflow_tag map: key:value tags whose key is a Splunk field name."""
    return _pairs([_unescaped(t) for t in tags], "[A-Za-z][A-Za-z0-9_]*")


def splunk_dimensions(tags: list[str], keys: list[str]) -> dict[str, str]:
    """The metric dimensions metric_tag_keys=keys adds on Splunk."""
    found = _pairs([_unescaped(t) for t in tags], "[A-Za-z0-9_.-]+")
    return {k: v for k, v in found.items() if k in keys}


def cloudwatch_dimensions(tags: list[str], keys: list[str]) -> dict[str, str]:
    """The dimensions metric_tag_keys=keys adds: printable ASCII, other runs one "_"."""
    ascii_tags = [re.sub(r"[^ -~]+", "_", _unescaped(t)) for t in tags]
    found = _pairs(ascii_tags, "[A-Za-z0-9_.-]+")
    return {k: v for k, v in found.items() if k in keys}
