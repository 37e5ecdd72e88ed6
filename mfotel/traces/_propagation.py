"""Trace context and baggage in environment variables, as the OpenTelemetry env-carrier spec says.

Every task process, sidecar and fork of a run learns its parent span from its environment and
passes its own span on to the processes it starts. Formats, chosen with ``OTEL_PROPAGATORS``
(default ``tracecontext,baggage``):

``tracecontext``
    W3C Trace Context (https://www.w3.org/TR/trace-context/) in ``TRACEPARENT`` and
    ``TRACESTATE``. The lowercase ``traceparent``/``tracestate`` that Metaflow's built-in
    tracing and the stock OpenTelemetry propagators write into an environment dict are read
    too (the uppercase pair wins when both are valid), and :func:`inject` writes both spellings
    with the same value, so a child never sees two different contexts. Overwriting rather than
    deleting the lowercase pair is deliberate: on Windows environment names are
    case-insensitive, so deleting ``traceparent`` would delete ``TRACEPARENT`` too, and a child
    that calls ``opentelemetry.propagate.extract(os.environ)`` joins the trace.
``baggage``
    W3C Baggage (https://www.w3.org/TR/baggage/) in ``BAGGAGE`` (lowercase ``baggage`` read
    and written the same way). Invalid members are dropped, not the whole value; the value is
    capped at 180 members and 8192 bytes by dropping whole members from the end, as the
    env-carrier spec asks of truncation.
``b3``
    B3 single header (https://github.com/openzipkin/b3-propagation) in ``B3``.
``b3multi``
    B3 multiple headers in ``X_B3_TRACEID``, ``X_B3_SPANID``, ``X_B3_SAMPLED`` and
    ``X_B3_FLAGS`` (``X_B3_PARENTSPANID`` is never needed and is removed on inject).

Header names become environment names with :func:`env_name`: uppercase, every character other
than an ASCII letter or digit replaced by ``_``.

Standard library only, and nothing heavier than :mod:`dataclasses`: this module is imported in
every task process, whose interpreter may have no OpenTelemetry package. Validation uses
``str`` methods instead of :mod:`re`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass

__all__ = [
    "DEFAULT_PROPAGATORS",
    "MAX_BAGGAGE_BYTES",
    "MAX_BAGGAGE_MEMBERS",
    "MAX_TRACESTATE_MEMBERS",
    "SUPPORTED_PROPAGATORS",
    "SpanContext",
    "env_name",
    "extract",
    "inject",
    "new_span_id",
    "new_trace_id",
    "parse_propagators",
    "parse_traceparent",
    "propagators_warning",
    "unknown_propagators",
    "valid_baggage",
    "valid_tracestate",
]

DEFAULT_PROPAGATORS: tuple[str, ...] = ("tracecontext", "baggage")
SUPPORTED_PROPAGATORS: tuple[str, ...] = ("tracecontext", "baggage", "b3", "b3multi")
MAX_BAGGAGE_BYTES = 8192
MAX_BAGGAGE_MEMBERS = 180
MAX_TRACESTATE_MEMBERS = 32

# Environment names: env_name() of the header names, spelled out once.
TRACEPARENT = "TRACEPARENT"
TRACESTATE = "TRACESTATE"
BAGGAGE = "BAGGAGE"
B3 = "B3"
X_B3_TRACEID = "X_B3_TRACEID"
X_B3_SPANID = "X_B3_SPANID"
X_B3_PARENTSPANID = "X_B3_PARENTSPANID"
X_B3_SAMPLED = "X_B3_SAMPLED"
X_B3_FLAGS = "X_B3_FLAGS"

_OWS = " \t"
_DIGITS = "0123456789"
_LCALPHA = "abcdefghijklmnopqrstuvwxyz"
_ALNUM = frozenset(_DIGITS + _LCALPHA + _LCALPHA.upper())
_LOWER_HEX = _DIGITS + "abcdef"
_ANY_HEX = _LOWER_HEX + "ABCDEF"
# tracestate: key characters after the first, and value characters (chr, printable ASCII
# without "," and "="); the last value character may not be a space.
_TS_KEY_CHARS = _LCALPHA + _DIGITS + "_-*/"
_TS_TENANT_FIRST = _LCALPHA + _DIGITS
_TS_VALUE_CHARS = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) not in ",=")
# baggage: RFC 7230 token characters for keys, baggage-octet for values.
_TOKEN_CHARS = "!#$%&'*+-.^_`|~" + _DIGITS + _LCALPHA + _LCALPHA.upper()
_BAGGAGE_OCTETS = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in '",;\\')

_ZERO_TRACE_ID = bytes(16)
_ZERO_SPAN_ID = bytes(8)
_ZERO_TRACE_HEX = "0" * 32
_ZERO_SPAN_HEX = "0" * 16
_UNKNOWN_HINT = "use tracecontext, baggage, b3 or b3multi"


@dataclass(frozen=True)
class SpanContext:
    """The identity of a span as it crosses a process boundary.

    ``trace_id`` is 16 bytes and ``span_id`` 8 bytes, neither all zero (checked on creation).
    ``trace_state`` is a W3C ``tracestate`` value carried verbatim.
    """

    trace_id: bytes
    span_id: bytes
    sampled: bool = True
    trace_state: str = ""

    def __post_init__(self) -> None:
        if len(self.trace_id) != 16 or self.trace_id == _ZERO_TRACE_ID:
            raise ValueError(f"trace_id must be 16 bytes, not all zero: {self.trace_id!r}")
        if len(self.span_id) != 8 or self.span_id == _ZERO_SPAN_ID:
            raise ValueError(f"span_id must be 8 bytes, not all zero: {self.span_id!r}")

    @property
    def traceparent(self) -> str:
        """The W3C ``traceparent`` value: version 00, sampled flag only."""
        flags = "01" if self.sampled else "00"
        return f"00-{self.trace_id.hex()}-{self.span_id.hex()}-{flags}"


def new_trace_id() -> bytes:
    """16 random bytes from :func:`os.urandom`, never all zero."""
    while True:
        value = os.urandom(16)
        if value != _ZERO_TRACE_ID:
            return value


def new_span_id() -> bytes:
    """8 random bytes from :func:`os.urandom`, never all zero."""
    while True:
        value = os.urandom(8)
        if value != _ZERO_SPAN_ID:
            return value


def env_name(header_name: str) -> str:
    """The environment name of a propagation header: ``X-B3-TraceId`` → ``X_B3_TRACEID``.

    ASCII letters are uppercased, ASCII digits kept, every other character becomes ``_``.
    """
    return "".join(c.upper() if c in _ALNUM else "_" for c in header_name)


# -- OTEL_PROPAGATORS ------------------------------------------------------------------------


def _propagator_names(value: str | None) -> list[str]:
    if not value:
        return []
    return [name for name in (part.strip(_OWS) for part in value.split(",")) if name]


def parse_propagators(value: str | None) -> tuple[str, ...]:
    """The propagators ``OTEL_PROPAGATORS`` asks for, in order, without duplicates.

    Unset, empty or blank means the default ``("tracecontext", "baggage")``; names are
    case-insensitive; ``none`` anywhere means no propagation at all (as opentelemetry-python
    does). Unknown names are left out; when nothing known remains the setting is ignored and
    the default applies, as the SDK configuration spec asks for values it does not recognise.
    Tell the user with :func:`propagators_warning`.
    """
    names = [name.lower() for name in _propagator_names(value)]
    if not names:
        return DEFAULT_PROPAGATORS
    if "none" in names:
        return ()
    known = tuple(dict.fromkeys(name for name in names if name in SUPPORTED_PROPAGATORS))
    return known or DEFAULT_PROPAGATORS


def unknown_propagators(value: str | None) -> tuple[str, ...]:
    """The names in ``OTEL_PROPAGATORS`` that :func:`parse_propagators` left out, as written."""
    return tuple(
        dict.fromkeys(
            name
            for name in _propagator_names(value)
            if name.lower() not in SUPPORTED_PROPAGATORS and name.lower() != "none"
        )
    )


def propagators_warning(value: str | None) -> str | None:
    """The one line to print about unknown names in ``OTEL_PROPAGATORS``, or None if none.

    ``OTEL_PROPAGATORS: unknown propagator 'xyz' ignored; use tracecontext, baggage, b3 or
    b3multi``; several unknown names share one line (``unknown propagators 'a', 'b'``).
    """
    unknown = unknown_propagators(value)
    if not unknown:
        return None
    noun = "propagator" if len(unknown) == 1 else "propagators"
    names = ", ".join(f"'{name}'" for name in unknown)
    return f"OTEL_PROPAGATORS: unknown {noun} {names} ignored; {_UNKNOWN_HINT}"


# -- W3C Trace Context -------------------------------------------------------------------------


def _is_hex(text: str, length: int, digits: str = _LOWER_HEX) -> bool:
    # str.strip removes every leading/trailing character in ``digits``: nothing is left
    # exactly when every character is one of them.
    return len(text) == length and not text.strip(digits)


def parse_traceparent(value: str | None) -> SpanContext | None:
    """A W3C ``traceparent`` value as a context, or None when it is not valid.

    Version ``00`` must be exactly ``00-<32 hex>-<16 hex>-<2 hex>``; a higher version (never
    ``ff``) is at least that long and its first four fields are read, the rest ignored when it
    starts with ``-``. Hex is lowercase only; all-zero ids are invalid; of the flags only the
    sampled bit is used. Surrounding spaces and tabs (HTTP OWS) are ignored.
    """
    if not value:
        return None
    text = value.strip(_OWS)
    size = len(text)
    if size < 55:
        return None
    version = text[:2]
    if not _is_hex(version, 2) or version == "ff":
        return None
    if version == "00" and size != 55:
        return None
    if text[2] != "-" or text[35] != "-" or text[52] != "-" or (size > 55 and text[55] != "-"):
        return None
    trace_hex, span_hex, flags_hex = text[3:35], text[36:52], text[53:55]
    if not (_is_hex(trace_hex, 32) and _is_hex(span_hex, 16) and _is_hex(flags_hex, 2)):
        return None
    if trace_hex == _ZERO_TRACE_HEX or span_hex == _ZERO_SPAN_HEX:
        return None
    sampled = bool(int(flags_hex, 16) & 1)
    return SpanContext(bytes.fromhex(trace_hex), bytes.fromhex(span_hex), sampled)


def _is_tracestate_key(key: str) -> bool:
    tenant, at, system = key.partition("@")
    if not at:
        # simple-key = lcalpha 0*255( lcalpha / DIGIT / "_" / "-"/ "*" / "/" )
        return 0 < len(key) <= 256 and key[0] in _LCALPHA and not key.strip(_TS_KEY_CHARS)
    # multi-tenant-key = tenant-id "@" system-id
    # tenant-id = ( lcalpha / DIGIT ) 0*240( lcalpha / DIGIT / "_" / "-"/ "*" / "/" )
    # system-id = lcalpha 0*13( lcalpha / DIGIT / "_" / "-"/ "*" / "/" )
    return (
        0 < len(tenant) <= 241
        and tenant[0] in _TS_TENANT_FIRST
        and not tenant.strip(_TS_KEY_CHARS)
        and 0 < len(system) <= 14
        and system[0] in _LCALPHA
        and not system.strip(_TS_KEY_CHARS)
    )


def valid_tracestate(value: str | None) -> str:
    """A W3C ``tracestate`` value as given (outer spaces/tabs trimmed) if valid, else ``""``.

    Valid: at most 32 list members, each ``key=value`` with a key and a value of the spec's
    grammar, no key twice. Empty members between commas are allowed and not counted. One bad
    member invalidates the whole value, as the W3C test suite expects.
    """
    if not value:
        return ""
    text = value.strip(_OWS)
    seen: set[str] = set()
    for raw in text.split(","):
        member = raw.strip(_OWS)
        if not member:
            continue
        key, eq, val = member.partition("=")
        # value = 0*255(chr) nblk-chr: 1 to 256 characters, not ending in a space (a
        # trailing space was OWS and is already stripped with the member).
        if not eq or not 0 < len(val) <= 256 or val.strip(_TS_VALUE_CHARS):
            return ""
        if key in seen or not _is_tracestate_key(key):
            return ""
        seen.add(key)
        if len(seen) > MAX_TRACESTATE_MEMBERS:
            return ""
    return text if seen else ""


def _from_tracecontext(environ: Mapping[str, str]) -> SpanContext | None:
    upper = environ.get(TRACEPARENT)
    lower = environ.get("traceparent")
    context = parse_traceparent(upper)
    if context is not None:
        state = environ.get(TRACESTATE)
        if state is None and lower == upper:
            # The same context under both spellings: its tracestate may be lowercase only.
            state = environ.get("tracestate")
    else:
        context = parse_traceparent(lower)
        if context is None:
            return None
        state = environ.get("tracestate")
    trace_state = valid_tracestate(state)
    if not trace_state:
        return context
    return SpanContext(context.trace_id, context.span_id, context.sampled, trace_state)


# -- B3 ----------------------------------------------------------------------------------------
# B3 says lower-hex; uppercase is accepted on extract (as opentelemetry-python does) and
# lowercase is always written.


def _b3_trace_id(text: str | None) -> bytes | None:
    if not text:
        return None
    text = text.strip(_OWS)
    if len(text) == 16:
        text = "0" * 16 + text  # a 64-bit trace id is the low half of a 128-bit one
    if not _is_hex(text, 32, _ANY_HEX):
        return None
    value = bytes.fromhex(text)
    return None if value == _ZERO_TRACE_ID else value


def _b3_span_id(text: str | None) -> bytes | None:
    if not text:
        return None
    text = text.strip(_OWS)
    if not _is_hex(text, 16, _ANY_HEX):
        return None
    value = bytes.fromhex(text)
    return None if value == _ZERO_SPAN_ID else value


def _from_b3(environ: Mapping[str, str]) -> SpanContext | None:
    """``B3={TraceId}-{SpanId}[-{SamplingState}[-{ParentSpanId}]]``.

    A sampling state alone (``0``, ``1`` or ``d``) carries no ids, so no context: a lone deny
    cannot be passed on by a ``SpanContext | None`` and is dropped, as opentelemetry-python
    does. An absent sampling state (defer) means sampled: this process decides, and it records.
    """
    value = environ.get(B3)
    if not value:
        return None
    fields = value.strip(_OWS).split("-")
    if not 2 <= len(fields) <= 4:
        return None
    trace_id, span_id = _b3_trace_id(fields[0]), _b3_span_id(fields[1])
    if trace_id is None or span_id is None:
        return None
    sampled = True
    if len(fields) >= 3:
        if fields[2] == "0":
            sampled = False
        elif fields[2] not in ("1", "d"):
            return None
    if len(fields) == 4 and _b3_span_id(fields[3]) is None:
        return None
    return SpanContext(trace_id, span_id, sampled)


def _from_b3multi(environ: Mapping[str, str]) -> SpanContext | None:
    """``X_B3_TRACEID`` and ``X_B3_SPANID`` required; ``X_B3_FLAGS=1`` (debug) means sampled.

    ``X_B3_SAMPLED`` ``0`` (or the legacy ``false``) means not sampled; ``1``, ``true``, absent
    (defer) or anything else means sampled. ``X_B3_PARENTSPANID`` is not needed and not read.
    """
    trace_id = _b3_trace_id(environ.get(X_B3_TRACEID))
    span_id = _b3_span_id(environ.get(X_B3_SPANID))
    if trace_id is None or span_id is None:
        return None
    if environ.get(X_B3_FLAGS, "").strip(_OWS) == "1":
        sampled = True
    else:
        sampled = environ.get(X_B3_SAMPLED, "").strip(_OWS).lower() not in ("0", "false")
    return SpanContext(trace_id, span_id, sampled)


# -- W3C Baggage -------------------------------------------------------------------------------


def _is_baggage_member(member: str) -> bool:
    # list-member = key OWS "=" OWS value *( OWS ";" OWS property )
    # property = key OWS "=" OWS value / key OWS; key = token; value = *baggage-octet
    pair, *properties = member.split(";")
    key, eq, value = pair.partition("=")
    key = key.strip(_OWS)
    if not eq or not key or key.strip(_TOKEN_CHARS) or value.strip(_OWS).strip(_BAGGAGE_OCTETS):
        return False
    for prop in properties:
        prop_key, prop_eq, prop_value = prop.partition("=")
        prop_key = prop_key.strip(_OWS)
        if not prop_key or prop_key.strip(_TOKEN_CHARS):
            return False
        if prop_eq and prop_value.strip(_OWS).strip(_BAGGAGE_OCTETS):
            return False
    return True


def valid_baggage(value: str | None) -> str:
    """A W3C ``baggage`` value with its invalid members dropped and the spec's caps applied.

    Members are kept in order and as written (outer spaces/tabs trimmed), joined by ``,``;
    once 180 members or 8192 bytes are reached, the remaining members are dropped whole.
    """
    if not value:
        return ""
    kept: list[str] = []
    size = -1  # no comma before the first member
    for raw in value.split(","):
        member = raw.strip(_OWS)
        if not member or not _is_baggage_member(member):
            continue
        size += len(member) + 1  # valid members are ASCII: characters are bytes
        if len(kept) == MAX_BAGGAGE_MEMBERS or size > MAX_BAGGAGE_BYTES:
            break
        kept.append(member)
    return ",".join(kept)


# -- extract / inject --------------------------------------------------------------------------


def extract(
    environ: Mapping[str, str], propagators: Sequence[str]
) -> tuple[SpanContext | None, str]:
    """The parent context and the baggage to pass on, read from ``environ``.

    The context propagators are tried in the configured order and the first valid context
    wins; baggage is read only when ``baggage`` is configured (``BAGGAGE``, else ``baggage``).
    """
    context: SpanContext | None = None
    for name in propagators:
        if name == "tracecontext":
            context = _from_tracecontext(environ)
        elif name == "b3":
            context = _from_b3(environ)
        elif name == "b3multi":
            context = _from_b3multi(environ)
        if context is not None:
            break
    baggage = ""
    if "baggage" in propagators:
        value = environ.get(BAGGAGE)
        baggage = valid_baggage(environ.get("baggage") if value is None else value)
    return context, baggage


def _put(environ: MutableMapping[str, str], names: tuple[str, str], value: str) -> None:
    # Give the uppercase and the lowercase spelling one value, or remove both. Where names are
    # case-insensitive (os.environ on Windows) the two are one variable: still right.
    if value:
        for name in names:
            environ[name] = value
    else:
        for name in names:
            environ.pop(name, None)


def inject(
    ctx: SpanContext,
    baggage: str,
    propagators: Sequence[str],
    environ: MutableMapping[str, str],
) -> None:
    """Write ``ctx`` and ``baggage`` into ``environ`` for every configured propagator.

    Variables of a configured format that would contradict ``ctx`` are replaced or removed:
    ``TRACEPARENT`` and ``traceparent`` get the same value, ``TRACESTATE``/``tracestate`` and
    ``BAGGAGE``/``baggage`` are set together or removed together, and ``X_B3_PARENTSPANID`` and
    ``X_B3_FLAGS`` (a debug flag would override a deny) are removed. Formats not configured are
    left alone. ``ctx.trace_state`` and ``baggage`` are written as given: pass values that came
    from :func:`extract` or were checked with :func:`valid_tracestate`/:func:`valid_baggage`.
    """
    if "tracecontext" in propagators:
        _put(environ, (TRACEPARENT, "traceparent"), ctx.traceparent)
        _put(environ, (TRACESTATE, "tracestate"), ctx.trace_state)
    if "baggage" in propagators:
        _put(environ, (BAGGAGE, "baggage"), baggage)
    if "b3" in propagators:
        environ[B3] = f"{ctx.trace_id.hex()}-{ctx.span_id.hex()}-{'1' if ctx.sampled else '0'}"
    if "b3multi" in propagators:
        environ.pop(X_B3_PARENTSPANID, None)
        environ.pop(X_B3_FLAGS, None)
        environ[X_B3_TRACEID] = ctx.trace_id.hex()
        environ[X_B3_SPANID] = ctx.span_id.hex()
        environ[X_B3_SAMPLED] = "1" if ctx.sampled else "0"
