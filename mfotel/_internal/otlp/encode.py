"""OTLP protobuf encoding, written directly from the wire format, standard library only.

The agent must run in any interpreter a task may have (Python >= 3.9, nothing installed),
so it cannot rely on ``protobuf`` or ``opentelemetry``. The subset of protobuf OTLP needs is
small: a message is a run of fields, each a tag (``field_number << 3 | wire_type``, a varint)
followed by a varint, 8 or 4 little-endian bytes, or a varint length and that many bytes.

How it is built, for speed (this runs for every log line):

* One ``bytearray`` per request. A sub-message's length is not known until it is written, so
  the writer appends a one-byte placeholder, writes the body after it, then patches the
  placeholder: one byte when the body is under 128 bytes (nearly always for a KeyValue, an
  AnyValue or a log record), otherwise the placeholder is replaced by the full varint, which
  shifts only that sub-message's own bytes. Fields are appended straight into the buffer;
  no per-field ``bytes`` objects are built beyond each string's own UTF-8.
* Records repeat the same identity attributes line after line, so a KeyValue with a str, int
  or bool value is encoded once and kept, ready to append, in a small bounded cache.
* Every tag is a module constant (an ``int`` for one-byte tags); a fixed-width field and its
  tag go out in one ``struct`` call (``<BQ``, ``<Bd``, ``<BI``).
* Varints and lengths have a one-byte fast path; values dispatch on the common types first.

Output is canonical proto3, the same bytes the official generated classes serialize: fields
in field-number order; zero, empty and unset scalars left out; oneof members (AnyValue values,
a data point's ``as_int``/``as_double``) and ``optional`` fields (a histogram's sum, min and
max) written whenever set, even when zero; the resource and scope messages always present,
a span's status only when it has a code or a message (an absent Status reads as UNSET).

Field numbers are opentelemetry-proto v1 (with Span.flags = 16 and LogRecord.event_name = 12);
the tests decode every output with the official generated classes.

Where the data come from users (attribute values, log bodies parsed from JSON lines, names),
nothing raises:

* A ``str`` that cannot be UTF-8 (lone surrogates, e.g. from ``surrogateescape`` decoding) is
  repaired: surrogate pairs are joined into their character and each lone surrogate becomes
  U+FFFD. (``surrogatepass`` would write invalid UTF-8, which a proto3 parser rejects along
  with the whole request; ``replace`` alone would turn a valid pair into ``??``.)
* An ``int`` outside int64 is sent as its decimal ``string_value`` (exact, unlike a double).
* Any other value (a set, a datetime, a nested structure deeper than ``_MAX_DEPTH``) is sent
  as its ``str()``. ``None`` is an empty AnyValue; a log record whose body is None has no body.

Fields the agent makes itself (ids, times, counts, flags, enums) are trusted: a negative time
or a float where an int belongs is a bug, and raises ``struct.error``.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence

from mfotel._internal.model import (
    AttrValue,
    Gauge,
    Histogram,
    HistogramPoint,
    LogBlock,
    LogRecord,
    Metric,
    NumberPoint,
    ResourceLogs,
    ResourceMetrics,
    ResourceSpans,
    Scope,
    Span,
    Sum,
)

__all__ = ["encode_logs", "encode_metrics", "encode_traces"]

_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1
_MAX_DEPTH = 32  # nesting of arrays and kvlists before a value is sent as its str()

_pack_d = struct.Struct("<d").pack
_pack_Bd = struct.Struct("<Bd").pack  # one-byte tag + double
_pack_BQ = struct.Struct("<BQ").pack  # one-byte tag + fixed64
_pack_Bq = struct.Struct("<Bq").pack  # one-byte tag + sfixed64
_pack_BI = struct.Struct("<BI").pack  # one-byte tag + fixed32
_pack_2BI = struct.Struct("<2BI").pack  # two-byte tag + fixed32

# Wire types.
_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5


def _t(field: int, wire: int) -> int:
    return (field << 3) | wire


# Tags. Names are MESSAGE_FIELD; every one but Span.flags fits in one byte.
# common.v1
_ANY_STRING = _t(1, _LEN)
_ANY_BOOL = _t(2, _VARINT)
_ANY_INT = _t(3, _VARINT)
_ANY_DOUBLE = _t(4, _I64)
_ANY_ARRAY = _t(5, _LEN)
_ANY_KVLIST = _t(6, _LEN)
_ANY_BYTES = _t(7, _LEN)
_ARRAY_VALUES = _t(1, _LEN)
_KVLIST_VALUES = _t(1, _LEN)
_KV_KEY = _t(1, _LEN)
_KV_VALUE = _t(2, _LEN)
_SCOPE_NAME = _t(1, _LEN)
_SCOPE_VERSION = _t(2, _LEN)
# resource.v1
_RESOURCE_ATTRIBUTES = _t(1, _LEN)
# Export*ServiceRequest / Resource* / Scope* (the same shape for all three signals)
_REQUEST_RESOURCE_X = _t(1, _LEN)  # resource_spans / resource_logs / resource_metrics
_RX_RESOURCE = _t(1, _LEN)
_RX_SCOPE_X = _t(2, _LEN)  # scope_spans / scope_logs / scope_metrics
_SX_SCOPE = _t(1, _LEN)
_SX_ITEMS = _t(2, _LEN)  # spans / log_records / metrics
# trace.v1
_SPAN_TRACE_ID = _t(1, _LEN)
_SPAN_SPAN_ID = _t(2, _LEN)
_SPAN_TRACE_STATE = _t(3, _LEN)
_SPAN_PARENT_SPAN_ID = _t(4, _LEN)
_SPAN_NAME = _t(5, _LEN)
_SPAN_KIND = _t(6, _VARINT)
_SPAN_START = _t(7, _I64)
_SPAN_END = _t(8, _I64)
_SPAN_ATTRIBUTES = _t(9, _LEN)
_SPAN_EVENTS = _t(11, _LEN)
_SPAN_LINKS = _t(13, _LEN)
_SPAN_STATUS = _t(15, _LEN)
_SPAN_FLAGS_TAG = (_t(16, _I32) & 0x7F | 0x80, _t(16, _I32) >> 7)  # two-byte varint tag
_EVENT_TIME = _t(1, _I64)
_EVENT_NAME = _t(2, _LEN)
_EVENT_ATTRIBUTES = _t(3, _LEN)
_LINK_TRACE_ID = _t(1, _LEN)
_LINK_SPAN_ID = _t(2, _LEN)
_LINK_TRACE_STATE = _t(3, _LEN)
_LINK_ATTRIBUTES = _t(4, _LEN)
_STATUS_MESSAGE = _t(2, _LEN)
_STATUS_CODE = _t(3, _VARINT)
# logs.v1
_LOG_TIME = _t(1, _I64)
_LOG_SEVERITY_NUMBER = _t(2, _VARINT)
_LOG_SEVERITY_TEXT = _t(3, _LEN)
_LOG_BODY = _t(5, _LEN)
_LOG_ATTRIBUTES = _t(6, _LEN)
_LOG_FLAGS = _t(8, _I32)
_LOG_TRACE_ID = _t(9, _LEN)
_LOG_SPAN_ID = _t(10, _LEN)
_LOG_OBSERVED_TIME = _t(11, _I64)
_LOG_EVENT_NAME = _t(12, _LEN)
# metrics.v1
_METRIC_NAME = _t(1, _LEN)
_METRIC_DESCRIPTION = _t(2, _LEN)
_METRIC_UNIT = _t(3, _LEN)
_METRIC_GAUGE = _t(5, _LEN)
_METRIC_SUM = _t(7, _LEN)
_METRIC_HISTOGRAM = _t(9, _LEN)
_DATA_POINTS = _t(1, _LEN)  # Gauge, Sum and Histogram alike
_TEMPORALITY = _t(2, _VARINT)  # Sum and Histogram alike
_SUM_MONOTONIC = _t(3, _VARINT)
_POINT_START = _t(2, _I64)  # NumberDataPoint and HistogramDataPoint alike
_POINT_TIME = _t(3, _I64)
_NUMBER_AS_DOUBLE = _t(4, _I64)
_NUMBER_AS_INT = _t(6, _I64)
_NUMBER_ATTRIBUTES = _t(7, _LEN)
_HIST_COUNT = _t(4, _I64)
_HIST_SUM = _t(5, _I64)
_HIST_BUCKET_COUNTS = _t(6, _LEN)
_HIST_EXPLICIT_BOUNDS = _t(7, _LEN)
_HIST_ATTRIBUTES = _t(9, _LEN)
_HIST_MIN = _t(11, _I64)
_HIST_MAX = _t(12, _I64)


# -- primitives ----------------------------------------------------------------------------------


def _varint(value: int) -> bytes:
    """A varint; negative values (int64/enum) as ten-byte two's complement, as protobuf does."""
    if value < 0:
        value += 1 << 64
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _close(out: bytearray, at: int) -> None:
    """Fill the one-byte length placeholder at ``out[at]`` with the length of what follows."""
    n = len(out) - at - 1
    if n < 0x80:
        out[at] = n
    else:
        out[at : at + 1] = _varint(n)


def _utf8_slow(text: object) -> bytes:
    """UTF-8 of a str that failed to encode (lone surrogates), or of a non-str's ``str()``."""
    if not isinstance(text, str):
        text = str(text)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        # Through UTF-16: surrogate pairs become their character, lone ones U+FFFD.
        fixed = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
        return fixed.encode("utf-8")


def _utf8(text: str) -> bytes:
    try:
        return text.encode("utf-8")
    except (UnicodeEncodeError, AttributeError):
        return _utf8_slow(text)


def _put_bytes(out: bytearray, tag: int, data: bytes) -> None:
    """A length-delimited field: one-byte tag, length, data."""
    out.append(tag)
    n = len(data)
    if n < 0x80:
        out.append(n)
    else:
        out += _varint(n)
    out += data


def _put_str(out: bytearray, tag: int, text: str) -> None:
    """A string field, left out when empty (proto3 default)."""
    if text:
        _put_bytes(out, tag, _utf8(text))


def _put_enum(out: bytearray, tag: int, value: int) -> None:
    """An enum or other varint field, left out when zero (proto3 default)."""
    if value:
        out.append(tag)
        if 0 < value < 0x80:
            out.append(value)
        else:
            out += _varint(value)


# -- AnyValue and attributes ---------------------------------------------------------------------


def _put_any(out: bytearray, value: AttrValue, depth: int) -> None:
    """The fields of one AnyValue (the caller writes its tag and length)."""
    # The common exact types first; bool before int because bool is an int.
    if isinstance(value, str):
        try:
            data = value.encode("utf-8")
        except UnicodeEncodeError:
            data = _utf8_slow(value)
        _put_bytes(out, _ANY_STRING, data)
    elif isinstance(value, bool):
        out.append(_ANY_BOOL)
        out.append(1 if value else 0)
    elif isinstance(value, int):
        if 0 <= value < 0x80:
            out.append(_ANY_INT)
            out.append(value)
        elif _INT64_MIN <= value <= _INT64_MAX:
            out.append(_ANY_INT)
            out += _varint(value)
        else:  # no int64 holds it: keep it exact as text
            _put_bytes(out, _ANY_STRING, str(value).encode("ascii"))
    elif isinstance(value, float):
        out += _pack_Bd(_ANY_DOUBLE, value)
    elif value is None:
        pass  # an empty AnyValue
    elif depth >= _MAX_DEPTH:
        _put_bytes(out, _ANY_STRING, _utf8_slow(value))
    elif isinstance(value, (dict, Mapping)):
        out.append(_ANY_KVLIST)
        at = len(out)
        out.append(0)
        _put_attributes(out, _KVLIST_VALUES, value, depth + 1)
        _close(out, at)
    elif isinstance(value, (bytes, bytearray, memoryview)):
        _put_bytes(out, _ANY_BYTES, bytes(value))
    elif isinstance(value, (list, tuple, Sequence)):
        out.append(_ANY_ARRAY)
        at = len(out)
        out.append(0)
        depth += 1
        for item in value:
            out.append(_ARRAY_VALUES)
            item_at = len(out)
            out.append(0)
            _put_any(out, item, depth)
            _close(out, item_at)
        _close(out, at)
    else:
        _put_bytes(out, _ANY_STRING, _utf8_slow(value))


def _put_kv(out: bytearray, key: str, value: AttrValue, depth: int) -> None:
    """The length and fields of one KeyValue (the caller writes its tag)."""
    kv_at = len(out)
    out.append(0)
    try:
        key_data = key.encode("utf-8")
    except (UnicodeEncodeError, AttributeError):
        key_data = _utf8_slow(key)
    if key_data:
        _put_bytes(out, _KV_KEY, key_data)
    out.append(_KV_VALUE)
    any_at = len(out)
    out.append(0)
    _put_any(out, value, depth)
    _close(out, any_at)
    _close(out, kv_at)


def _kv_bytes(key: str, value: AttrValue) -> bytes:
    """The length and fields of one KeyValue, as bytes."""
    if isinstance(value, str):
        try:
            key_data = key.encode("utf-8")
            data = value.encode("utf-8")
        except UnicodeEncodeError:
            key_data = _utf8_slow(key)
            data = _utf8_slow(value)
        n = len(key_data)
        m = len(data)
        if n and n + m < 0x7A:  # every length here fits one byte: no placeholders
            # length, _KV_KEY (0x0A), key, _KV_VALUE (0x12), AnyValue{_ANY_STRING (0x0A), value}
            return b"%c\n%c%b\x12%c\n%c%b" % (n + m + 6, n, key_data, m + 2, m, data)
    buf = bytearray()
    _put_kv(buf, key, value, 0)
    return bytes(buf)


# Encoded KeyValues (length and fields) by (key, value, type of value). Records carry the same
# identity attributes line after line, so most attributes are one dict hit and one append.
# Only str, int and bool values, whose equal values encode alike (with the type in the key,
# 1 and True differ; floats are left out, as -0.0 == 0.0). Bounded, at most about 1 MB: cleared
# when full, so values that never repeat (a record uid) cost a little churn, never growth.
# Dict operations are atomic, so threads may share it.
_kv_cache: dict[tuple[str, object, type], bytes] = {}
_KV_CACHE_MAX = 2048
_KV_CACHE_ITEM_MAX = 512


def _put_attributes(
    out: bytearray, tag: int, attributes: Mapping[str, AttrValue], depth: int = 0
) -> None:
    """Repeated KeyValue field ``tag``: one KeyValue per attribute, in the mapping's order."""
    cache = _kv_cache
    for key, value in attributes.items():
        out.append(tag)
        kind = type(value)
        if (kind is str or kind is int or kind is bool) and type(key) is str:
            memo = (key, value, kind)
            encoded = cache.get(memo)
            if encoded is None:
                encoded = _kv_bytes(key, value)
                if len(encoded) <= _KV_CACHE_ITEM_MAX:
                    if len(cache) >= _KV_CACHE_MAX:
                        cache.clear()
                    cache[memo] = encoded
            out += encoded
        else:
            _put_kv(out, key, value, depth)


def _put_resource_and_scope(out: bytearray, resource: Mapping[str, AttrValue], scope: Scope) -> int:
    """Resource, then the opening of the scope-level message; returns its placeholder."""
    out.append(_RX_RESOURCE)
    at = len(out)
    out.append(0)
    _put_attributes(out, _RESOURCE_ATTRIBUTES, resource)
    _close(out, at)
    out.append(_RX_SCOPE_X)
    scope_x_at = len(out)
    out.append(0)
    out.append(_SX_SCOPE)
    at = len(out)
    out.append(0)
    _put_str(out, _SCOPE_NAME, scope.name)
    _put_str(out, _SCOPE_VERSION, scope.version)
    _close(out, at)
    return scope_x_at


# -- traces --------------------------------------------------------------------------------------


def _put_span(out: bytearray, span: Span) -> None:
    if span.trace_id:
        _put_bytes(out, _SPAN_TRACE_ID, span.trace_id)
    if span.span_id:
        _put_bytes(out, _SPAN_SPAN_ID, span.span_id)
    _put_str(out, _SPAN_TRACE_STATE, span.trace_state)
    if span.parent_span_id:
        _put_bytes(out, _SPAN_PARENT_SPAN_ID, span.parent_span_id)
    _put_str(out, _SPAN_NAME, span.name)
    _put_enum(out, _SPAN_KIND, span.kind)
    if span.start_ns:
        out += _pack_BQ(_SPAN_START, span.start_ns)
    if span.end_ns:
        out += _pack_BQ(_SPAN_END, span.end_ns)
    if span.attributes:
        _put_attributes(out, _SPAN_ATTRIBUTES, span.attributes)
    for event in span.events:
        out.append(_SPAN_EVENTS)
        at = len(out)
        out.append(0)
        if event.time_ns:
            out += _pack_BQ(_EVENT_TIME, event.time_ns)
        _put_str(out, _EVENT_NAME, event.name)
        if event.attributes:
            _put_attributes(out, _EVENT_ATTRIBUTES, event.attributes)
        _close(out, at)
    for link in span.links:
        out.append(_SPAN_LINKS)
        at = len(out)
        out.append(0)
        if link.trace_id:
            _put_bytes(out, _LINK_TRACE_ID, link.trace_id)
        if link.span_id:
            _put_bytes(out, _LINK_SPAN_ID, link.span_id)
        _put_str(out, _LINK_TRACE_STATE, link.trace_state)
        if link.attributes:
            _put_attributes(out, _LINK_ATTRIBUTES, link.attributes)
        _close(out, at)
    if span.status_code or span.status_message:  # an absent Status reads as UNSET
        out.append(_SPAN_STATUS)
        at = len(out)
        out.append(0)
        _put_str(out, _STATUS_MESSAGE, span.status_message)
        _put_enum(out, _STATUS_CODE, span.status_code)
        _close(out, at)
    if span.flags:
        out += _pack_2BI(*_SPAN_FLAGS_TAG, span.flags)


def encode_traces(batches: Sequence[ResourceSpans]) -> bytes:
    """An ExportTraceServiceRequest: per batch one ResourceSpans holding one ScopeSpans."""
    out = bytearray()
    for batch in batches:
        out.append(_REQUEST_RESOURCE_X)
        batch_at = len(out)
        out.append(0)
        scope_at = _put_resource_and_scope(out, batch.resource, batch.scope)
        for span in batch.spans:
            out.append(_SX_ITEMS)
            at = len(out)
            out.append(0)
            _put_span(out, span)
            _close(out, at)
        _close(out, scope_at)
        _close(out, batch_at)
    return bytes(out)


# -- logs ----------------------------------------------------------------------------------------


def _put_log(out: bytearray, record: LogRecord) -> None:
    _put_log_head(out, record.time_ns, record.severity_number, record.severity_text, record.body)
    if record.attributes:
        _put_attributes(out, _LOG_ATTRIBUTES, record.attributes)
    _put_log_tail(
        out, record.flags, record.trace_id, record.span_id, record.observed_ns, record.event_name
    )


def _put_log_head(
    out: bytearray, time_ns: int, severity: int, severity_text: str, body: AttrValue
) -> None:
    """A LogRecord's fields before its attributes (fields 1 to 5)."""
    if time_ns:
        out += _pack_BQ(_LOG_TIME, time_ns)
    if severity:
        if 0 < severity < 0x80:
            out.append(_LOG_SEVERITY_NUMBER)
            out.append(severity)
        else:
            _put_enum(out, _LOG_SEVERITY_NUMBER, severity)
    if severity_text:
        _put_str(out, _LOG_SEVERITY_TEXT, severity_text)
    if body is not None:
        if isinstance(body, str):  # the usual case, as in _put_attributes
            try:
                data = body.encode("utf-8")
            except UnicodeEncodeError:
                data = _utf8_slow(body)
            m = len(data)
            if m < 0x7E:
                out.append(_LOG_BODY)
                out.append(m + 2)
                out.append(_ANY_STRING)
                out.append(m)
                out += data
            else:
                out.append(_LOG_BODY)
                at = len(out)
                out.append(0)
                _put_bytes(out, _ANY_STRING, data)
                _close(out, at)
        else:
            out.append(_LOG_BODY)
            at = len(out)
            out.append(0)
            _put_any(out, body, 0)
            _close(out, at)


def _put_log_tail(
    out: bytearray, flags: int, trace_id: bytes, span_id: bytes, observed_ns: int, event_name: str
) -> None:
    """A LogRecord's fields after its attributes (fields 8 to 12)."""
    if flags:
        out += _pack_BI(_LOG_FLAGS, flags)
    if trace_id:
        _put_bytes(out, _LOG_TRACE_ID, trace_id)
    if span_id:
        _put_bytes(out, _LOG_SPAN_ID, span_id)
    if observed_ns:
        out += _pack_BQ(_LOG_OBSERVED_TIME, observed_ns)
    if event_name:
        _put_str(out, _LOG_EVENT_NAME, event_name)


def log_attributes(attributes: Mapping[str, AttrValue]) -> bytes:
    """Attributes shared by a :class:`LogBlock`'s records, encoded once for all of them."""
    out = bytearray()
    _put_attributes(out, _LOG_ATTRIBUTES, attributes)
    return bytes(out)


_UID_KEY = b"log.record.uid"
_uid_heads: dict[int, bytes] = {}


def _uid_head(m: int) -> bytes:
    """A ``log.record.uid`` attribute up to its value's ``m`` bytes (which follow)."""
    head = _uid_heads.get(m)
    if head is None:
        n = len(_UID_KEY)
        if n + m < 0x7A:
            head = bytes((_LOG_ATTRIBUTES, n + m + 6, _KV_KEY, n)) + _UID_KEY
            head += bytes((_KV_VALUE, m + 2, _ANY_STRING, m))
        else:
            head = b""  # rare: an id this long takes the general path
        if len(_uid_heads) < 256:
            _uid_heads[m] = head
    return head


def _put_block(out: bytearray, block: LogBlock) -> None:
    """A block's records: per line its time, body and id around the block's shared bytes.
    This is the hot path of the live log path and of backfill; a plain line is one join."""
    end = bytearray()
    _put_log_tail(end, block.flags, block.trace_id, block.span_id, block.observed_ns, "")
    tail = bytes(end)
    shared = block.shared
    texts = block.texts
    times = block.times
    stamps: Sequence[bytes]
    if isinstance(times, int):
        stamps = [_pack_BQ(_LOG_TIME, times) if times else b""] * len(texts)
    else:
        stamps = [_pack_BQ(_LOG_TIME, t) if t else b"" for t in times]
    uids = block.uids
    ids: Sequence[bytes]
    if isinstance(uids, tuple):
        prefix = uids[0].encode("ascii")
        # mfotel.logs._mflog.sequential_id's format, in bytes (a log carrier's stream)
        ids = [b"%b%012x" % (prefix, seq) for seq in range(uids[1], uids[1] + len(texts))]
    else:
        ids = [uid.encode("utf-8", "replace") for uid in uids]
    special = block.special
    join = b"".join
    for index, (text, stamp, uid) in enumerate(zip(texts, stamps, ids)):
        head = _uid_head(len(uid))
        if head:
            uid_part = head + uid
        else:
            uid_part = bytes((_LOG_ATTRIBUTES,)) + _kv_bytes(
                "log.record.uid", uid.decode("utf-8", "replace")
            )
        rec: bytes | bytearray
        if special and index in special:
            body, severity, severity_text = special[index]
            rec = bytearray(stamp)
            _put_log_head(rec, 0, severity, severity_text, body)
            rec += shared
            rec += uid_part
            rec += tail
        else:
            m = len(text)
            if m < 0x7E:
                body_head = b"%c%c%c%c" % (_LOG_BODY, m + 2, _ANY_STRING, m)
            else:
                size = _varint(m)
                body_head = b"%c%b%c%b" % (_LOG_BODY, _varint(len(size) + 1 + m), _ANY_STRING, size)
            rec = join((stamp, body_head, text, shared, uid_part, tail))
        n = len(rec)
        out.append(_SX_ITEMS)
        if n < 0x80:
            out.append(n)
        else:
            out += _varint(n)
        out += rec


def encode_logs(batches: Sequence[ResourceLogs]) -> bytes:
    """An ExportLogsServiceRequest: per batch one ResourceLogs holding one ScopeLogs."""
    out = bytearray()
    for batch in batches:
        out.append(_REQUEST_RESOURCE_X)
        batch_at = len(out)
        out.append(0)
        scope_at = _put_resource_and_scope(out, batch.resource, batch.scope)
        for record in batch.records:
            out.append(_SX_ITEMS)
            at = len(out)
            out.append(0)
            _put_log(out, record)
            n = len(out) - at - 1
            if n < 0x80:
                out[at] = n
            else:
                out[at : at + 1] = _varint(n)
        for block in batch.blocks:
            _put_block(out, block)
        _close(out, scope_at)
        _close(out, batch_at)
    return bytes(out)


# -- metrics -------------------------------------------------------------------------------------


def _put_number_points(out: bytearray, points: Sequence[NumberPoint]) -> None:
    for point in points:
        out.append(_DATA_POINTS)
        at = len(out)
        out.append(0)
        if point.start_ns:
            out += _pack_BQ(_POINT_START, point.start_ns)
        if point.time_ns:
            out += _pack_BQ(_POINT_TIME, point.time_ns)
        value = point.value
        # A oneof member: written even when zero. An int beyond int64 goes as a double.
        if (
            isinstance(value, int)
            and not isinstance(value, bool)
            and _INT64_MIN <= value <= _INT64_MAX
        ):
            out += _pack_Bq(_NUMBER_AS_INT, value)
        else:
            try:
                number = float(value)
            except OverflowError:
                number = float("inf") if value > 0 else float("-inf")
            out += _pack_Bd(_NUMBER_AS_DOUBLE, number)
        if point.attributes:
            _put_attributes(out, _NUMBER_ATTRIBUTES, point.attributes)
        _close(out, at)


def _put_histogram_points(out: bytearray, points: Sequence[HistogramPoint]) -> None:
    for point in points:
        out.append(_DATA_POINTS)
        at = len(out)
        out.append(0)
        if point.start_ns:
            out += _pack_BQ(_POINT_START, point.start_ns)
        if point.time_ns:
            out += _pack_BQ(_POINT_TIME, point.time_ns)
        if point.count:
            out += _pack_BQ(_HIST_COUNT, point.count)
        if point.sum is not None:  # proto3 `optional`: present even when 0.0
            out += _pack_Bd(_HIST_SUM, point.sum)
        counts = point.bucket_counts
        if counts:  # packed repeated fixed64
            _put_bytes(out, _HIST_BUCKET_COUNTS, struct.pack(f"<{len(counts)}Q", *counts))
        bounds = point.explicit_bounds
        if bounds:  # packed repeated double
            _put_bytes(out, _HIST_EXPLICIT_BOUNDS, struct.pack(f"<{len(bounds)}d", *bounds))
        if point.attributes:
            _put_attributes(out, _HIST_ATTRIBUTES, point.attributes)
        if point.min is not None:
            out += _pack_Bd(_HIST_MIN, point.min)
        if point.max is not None:
            out += _pack_Bd(_HIST_MAX, point.max)
        _close(out, at)


def _put_metric(out: bytearray, metric: Metric) -> None:
    _put_str(out, _METRIC_NAME, metric.name)
    _put_str(out, _METRIC_DESCRIPTION, metric.description)
    _put_str(out, _METRIC_UNIT, metric.unit)
    data = metric.data
    if isinstance(data, Sum):
        out.append(_METRIC_SUM)
        at = len(out)
        out.append(0)
        _put_number_points(out, data.points)
        _put_enum(out, _TEMPORALITY, data.temporality)
        if data.monotonic:
            out.append(_SUM_MONOTONIC)
            out.append(1)
        _close(out, at)
    elif isinstance(data, Gauge):
        out.append(_METRIC_GAUGE)
        at = len(out)
        out.append(0)
        _put_number_points(out, data.points)
        _close(out, at)
    elif isinstance(data, Histogram):
        out.append(_METRIC_HISTOGRAM)
        at = len(out)
        out.append(0)
        _put_histogram_points(out, data.points)
        _put_enum(out, _TEMPORALITY, data.temporality)
        _close(out, at)
    else:
        raise TypeError(f"not a metric data kind: {type(data).__name__}")


def encode_metrics(batches: Sequence[ResourceMetrics]) -> bytes:
    """An ExportMetricsServiceRequest: per batch one ResourceMetrics holding one ScopeMetrics."""
    out = bytearray()
    for batch in batches:
        out.append(_REQUEST_RESOURCE_X)
        batch_at = len(out)
        out.append(0)
        scope_at = _put_resource_and_scope(out, batch.resource, batch.scope)
        for metric in batch.metrics:
            out.append(_SX_ITEMS)
            at = len(out)
            out.append(0)
            _put_metric(out, metric)
            _close(out, at)
        _close(out, scope_at)
        _close(out, batch_at)
    return bytes(out)
