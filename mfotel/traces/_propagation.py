"""Trace context in environment variables, as the OpenTelemetry env-carrier spec says.

Formats: W3C ``tracecontext`` (``TRACEPARENT``/``TRACESTATE``; the lowercase ``traceparent``
Metaflow's built-in tracing writes is read too), W3C ``baggage`` (``BAGGAGE``), B3 single
(``B3``) and B3 multi (``X_B3_TRACEID``, …). Chosen with ``OTEL_PROPAGATORS``, default
``tracecontext,baggage``. Standard library only: this runs in every task process.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass

DEFAULT_PROPAGATORS = ("tracecontext", "baggage")
KNOWN_PROPAGATORS = ("tracecontext", "baggage", "b3", "b3multi", "none")
MAX_BAGGAGE_BYTES = 8192
MAX_BAGGAGE_MEMBERS = 180
_HEX = frozenset("0123456789abcdef")
_B3_MULTI = ("X_B3_TRACEID", "X_B3_SPANID", "X_B3_SAMPLED", "X_B3_FLAGS", "X_B3_PARENTSPANID")
_ZERO_TRACE = bytes(16)
_ZERO_SPAN = bytes(8)


@dataclass(frozen=True)
class SpanContext:
    trace_id: bytes
    span_id: bytes
    sampled: bool = True
    trace_state: str = ""

    @property
    def traceparent(self) -> str:
        flags = "01" if self.sampled else "00"
        return f"00-{self.trace_id.hex()}-{self.span_id.hex()}-{flags}"


def new_trace_id() -> bytes:
    while True:
        value = os.urandom(16)
        if value != _ZERO_TRACE:
            return value


def new_span_id() -> bytes:
    while True:
        value = os.urandom(8)
        if value != _ZERO_SPAN:
            return value


def env_name(header_name: str) -> str:
    """``X-B3-TraceId`` → ``X_B3_TRACEID``: uppercase, non-alphanumerics become ``_``."""
    return "".join(c if c.isalnum() else "_" for c in header_name.upper())


def parse_propagators(value: str | None) -> tuple[str, ...]:
    """OTEL_PROPAGATORS as a tuple of known names; unknown ones are left out.

    Use :func:`unknown_propagators` to tell the user which ones were left out.
    """
    if value is None or not value.strip():
        return DEFAULT_PROPAGATORS
    names = [n.strip().lower() for n in value.split(",") if n.strip()]
    if "none" in names:
        return ()
    return tuple(n for n in names if n in KNOWN_PROPAGATORS)


def unknown_propagators(value: str | None) -> list[str]:
    if not value:
        return []
    return [
        n.strip()
        for n in value.split(",")
        if n.strip() and n.strip().lower() not in KNOWN_PROPAGATORS
    ]


def _is_hex(text: str, length: int) -> bool:
    return len(text) == length and set(text) <= _HEX


def parse_traceparent(value: str | None) -> SpanContext | None:
    """A W3C traceparent value, or None when it is not valid."""
    if not value:
        return None
    value = value.strip()
    parts = value.split("-")
    if len(parts) < 4:
        return None
    version, trace_id, span_id, flags = parts[:4]
    if not _is_hex(version, 2) or version == "ff":
        return None
    if version == "00" and (len(parts) != 4 or len(value) != 55):
        return None
    if not (_is_hex(trace_id, 32) and _is_hex(span_id, 16) and _is_hex(flags, 2)):
        return None
    trace, span = bytes.fromhex(trace_id), bytes.fromhex(span_id)
    if trace == _ZERO_TRACE or span == _ZERO_SPAN:
        return None
    return SpanContext(trace, span, bool(int(flags, 16) & 1))


def _valid_tracestate(value: str) -> str:
    members = [m.strip() for m in value.split(",") if m.strip()]
    if len(members) > 32 or any("=" not in m for m in members):
        return ""
    return ",".join(members)


def _from_tracecontext(environ: Mapping[str, str]) -> SpanContext | None:
    for parent_key, state_key in (("TRACEPARENT", "TRACESTATE"), ("traceparent", "tracestate")):
        context = parse_traceparent(environ.get(parent_key))
        if context is not None:
            state = _valid_tracestate(environ.get(state_key, ""))
            return SpanContext(context.trace_id, context.span_id, context.sampled, state)
    return None


def _b3_trace_id(text: str) -> bytes | None:
    text = text.strip().lower()
    if len(text) == 16:
        text = "0" * 16 + text
    if not _is_hex(text, 32):
        return None
    value = bytes.fromhex(text)
    return None if value == _ZERO_TRACE else value


def _b3_span_id(text: str) -> bytes | None:
    text = text.strip().lower()
    if not _is_hex(text, 16):
        return None
    value = bytes.fromhex(text)
    return None if value == _ZERO_SPAN else value


def _from_b3(environ: Mapping[str, str]) -> SpanContext | None:
    value = environ.get("B3", "").strip()
    parts = value.split("-")
    if len(parts) < 2:
        return None  # a lone sampling flag ("0", "1", "d") carries no context
    trace, span = _b3_trace_id(parts[0]), _b3_span_id(parts[1])
    if trace is None or span is None:
        return None
    sampled = parts[2].strip().lower() in ("1", "d") if len(parts) > 2 else True
    return SpanContext(trace, span, sampled)


def _from_b3multi(environ: Mapping[str, str]) -> SpanContext | None:
    trace = _b3_trace_id(environ.get("X_B3_TRACEID", ""))
    span = _b3_span_id(environ.get("X_B3_SPANID", ""))
    if trace is None or span is None:
        return None
    flag = environ.get("X_B3_FLAGS", "").strip() == "1"
    sampled_text = environ.get("X_B3_SAMPLED", "").strip().lower()
    sampled = flag or (sampled_text in ("1", "true", "") and sampled_text != "0")
    return SpanContext(trace, span, sampled)


def valid_baggage(value: str | None) -> str:
    """W3C baggage with invalid members dropped, capped at the spec's limits."""
    if not value:
        return ""
    kept: list[str] = []
    size = 0
    for member in value.split(","):
        member = member.strip()
        key, sep, rest = member.partition("=")
        key = key.strip()
        if not sep or not key or any(c in key for c in ' "(),/:;<=>?@[\\]{}\t'):
            continue
        if any(ord(c) < 0x21 or ord(c) > 0x7E or c in '",;\\' for c in rest.split(";")[0].strip()):
            continue
        added = len(member) + (1 if kept else 0)
        if len(kept) >= MAX_BAGGAGE_MEMBERS or size + added > MAX_BAGGAGE_BYTES:
            break
        kept.append(member)
        size += added
    return ",".join(kept)


_EXTRACTORS = {"tracecontext": _from_tracecontext, "b3": _from_b3, "b3multi": _from_b3multi}


def extract(
    environ: Mapping[str, str], propagators: Sequence[str]
) -> tuple[SpanContext | None, str]:
    """The parent context (first valid one among the propagators) and the baggage to pass on."""
    context = None
    for name in propagators:
        extractor = _EXTRACTORS.get(name)
        if extractor is not None:
            context = extractor(environ)
            if context is not None:
                break
    baggage = valid_baggage(environ.get("BAGGAGE")) if "baggage" in propagators else ""
    return context, baggage


def inject(
    ctx: SpanContext,
    baggage: str,
    propagators: Sequence[str],
    environ: MutableMapping[str, str],
) -> None:
    """Write ``ctx`` for every configured propagator; stale values of those formats go away.

    The lowercase ``traceparent``/``tracestate`` Metaflow's built-in tracing reads are
    overwritten with the same values, so a child can never see two different contexts.
    """
    if "tracecontext" in propagators:
        environ["TRACEPARENT"] = environ["traceparent"] = ctx.traceparent
        if ctx.trace_state:
            environ["TRACESTATE"] = environ["tracestate"] = ctx.trace_state
        else:
            environ.pop("TRACESTATE", None)
            environ.pop("tracestate", None)
    if "baggage" in propagators:
        if baggage:
            environ["BAGGAGE"] = baggage
        else:
            environ.pop("BAGGAGE", None)
    if "b3" in propagators:
        environ["B3"] = f"{ctx.trace_id.hex()}-{ctx.span_id.hex()}-{'1' if ctx.sampled else '0'}"
    if "b3multi" in propagators:
        for name in _B3_MULTI:
            environ.pop(name, None)
        environ["X_B3_TRACEID"] = ctx.trace_id.hex()
        environ["X_B3_SPANID"] = ctx.span_id.hex()
        environ["X_B3_SAMPLED"] = "1" if ctx.sampled else "0"
