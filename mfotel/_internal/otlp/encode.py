"""OTLP protobuf encoding, written directly from the wire format, standard library only.

The agent must run in any interpreter a task may have, so it cannot rely on ``protobuf``.
The encoding is small: every message here is a sequence of fields, each a tag (field
number and wire type as a varint) followed by a varint, 8 or 4 little-endian bytes, or a
length-prefixed payload. Messages are built inside-out into ``bytes`` (a sub-message must be
complete before its length is known). Field numbers follow opentelemetry-proto v1; the tests
decode every output with the official generated classes.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping, Sequence

from mfotel._internal.model import (
    AttrValue,
    Gauge,
    Histogram,
    LogRecord,
    Metric,
    ResourceLogs,
    ResourceMetrics,
    ResourceSpans,
    Scope,
    Span,
    Sum,
)

_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5
_pack_d = struct.Struct("<d").pack
_pack_q = struct.Struct("<q").pack
_pack_Q = struct.Struct("<Q").pack
_pack_I = struct.Struct("<I").pack


def _varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64  # int64 negatives are ten-byte two's complement varints
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _tag(field: int, wire: int) -> bytes:
    return _varint((field << 3) | wire)


def _len_field(tag: bytes, payload: bytes) -> bytes:
    return tag + _varint(len(payload)) + payload


def _text(value: str) -> bytes:
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: replace rather than fail a whole batch
        return value.encode("utf-8", "replace")


# Tags used on hot paths, computed once.
_T1_LEN, _T2_LEN, _T3_LEN, _T4_LEN = (_tag(n, _LEN) for n in (1, 2, 3, 4))
_T5_LEN, _T6_LEN, _T7_LEN = (_tag(n, _LEN) for n in (5, 6, 7))
_ANY_BOOL, _ANY_INT, _ANY_DOUBLE = _tag(2, _VARINT), _tag(3, _VARINT), _tag(4, _I64)


def _any_value(value: AttrValue) -> bytes:
    if isinstance(value, str):
        return _len_field(_T1_LEN, _text(value))
    if isinstance(value, bool):
        return _ANY_BOOL + (b"\x01" if value else b"\x00")
    if isinstance(value, int):
        return _ANY_INT + _varint(value)
    if isinstance(value, float):
        return _ANY_DOUBLE + _pack_d(value)
    if isinstance(value, bytes):
        return _len_field(_T7_LEN, value)
    if isinstance(value, Mapping):
        return _len_field(_T6_LEN, _key_values(value, 1))
    if value is None:
        return b""
    if isinstance(value, Sequence):
        items = b"".join(_len_field(_T1_LEN, _any_value(v)) for v in value)
        return _len_field(_T5_LEN, items)
    return _len_field(_T1_LEN, _text(str(value)))


def _key_value(key: str, value: AttrValue) -> bytes:
    return _len_field(_T1_LEN, _text(key)) + _len_field(_T2_LEN, _any_value(value))


def _key_values(attributes: Mapping[str, AttrValue], field: int) -> bytes:
    tag = _tag(field, _LEN)
    return b"".join(_len_field(tag, _key_value(k, v)) for k, v in attributes.items())


def _resource(attributes: Mapping[str, AttrValue]) -> bytes:
    return _key_values(attributes, 1)


def _scope(scope: Scope) -> bytes:
    out = _len_field(_T1_LEN, _text(scope.name))
    if scope.version:
        out += _len_field(_T2_LEN, _text(scope.version))
    return out


def _fixed64(field: int, value: int) -> bytes:
    return _tag(field, _I64) + _pack_Q(value)


def _double(field: int, value: float) -> bytes:
    return _tag(field, _I64) + _pack_d(value)


def _enum(field: int, value: int) -> bytes:
    return _tag(field, _VARINT) + _varint(value) if value else b""


def _string(field: int, value: str) -> bytes:
    return _len_field(_tag(field, _LEN), _text(value)) if value else b""


def _raw(field: int, value: bytes) -> bytes:
    return _len_field(_tag(field, _LEN), value) if value else b""


def _fixed32(field: int, value: int) -> bytes:
    return _tag(field, _I32) + _pack_I(value) if value else b""


# -- traces ------------------------------------------------------------------------------------


def _span(span: Span) -> bytes:
    parts = [
        _raw(1, span.trace_id),
        _raw(2, span.span_id),
        _string(3, span.trace_state),
        _raw(4, span.parent_span_id),
        _string(5, span.name),
        _enum(6, span.kind),
        _fixed64(7, span.start_ns),
        _fixed64(8, span.end_ns),
        _key_values(span.attributes, 9),
    ]
    tag_event = _tag(11, _LEN)
    for event in span.events:
        body = _fixed64(1, event.time_ns) + _string(2, event.name)
        parts.append(_len_field(tag_event, body + _key_values(event.attributes, 3)))
    tag_link = _tag(13, _LEN)
    for link in span.links:
        body = _raw(1, link.trace_id) + _raw(2, link.span_id) + _string(3, link.trace_state)
        parts.append(_len_field(tag_link, body + _key_values(link.attributes, 4)))
    if span.status_code or span.status_message:
        status = _string(2, span.status_message) + _enum(3, span.status_code)
        parts.append(_len_field(_tag(15, _LEN), status))
    parts.append(_fixed32(16, span.flags))
    return b"".join(parts)


def encode_traces(batches: Iterable[ResourceSpans]) -> bytes:
    """An ExportTraceServiceRequest."""
    out = []
    for batch in batches:
        spans = b"".join(_len_field(_T2_LEN, _span(s)) for s in batch.spans)
        scope_spans = _len_field(_T1_LEN, _scope(batch.scope)) + spans
        body = _len_field(_T1_LEN, _resource(batch.resource)) + _len_field(_T2_LEN, scope_spans)
        out.append(_len_field(_T1_LEN, body))
    return b"".join(out)


# -- logs ----------------------------------------------------------------------------------------


def _log(record: LogRecord) -> bytes:
    return b"".join(
        (
            _fixed64(1, record.time_ns),
            _enum(2, record.severity_number),
            _string(3, record.severity_text),
            _len_field(_T5_LEN, _any_value(record.body)) if record.body is not None else b"",
            _key_values(record.attributes, 6),
            _fixed32(8, record.flags),
            _raw(9, record.trace_id),
            _raw(10, record.span_id),
            _fixed64(11, record.observed_ns),
            _string(12, record.event_name),
        )
    )


def encode_logs(batches: Iterable[ResourceLogs]) -> bytes:
    """An ExportLogsServiceRequest."""
    out = []
    for batch in batches:
        records = b"".join(_len_field(_T2_LEN, _log(r)) for r in batch.records)
        scope_logs = _len_field(_T1_LEN, _scope(batch.scope)) + records
        body = _len_field(_T1_LEN, _resource(batch.resource)) + _len_field(_T2_LEN, scope_logs)
        out.append(_len_field(_T1_LEN, body))
    return b"".join(out)


# -- metrics -------------------------------------------------------------------------------------


def _number_points(points: Sequence[object]) -> bytes:
    from mfotel._internal.model import NumberPoint

    out = []
    for point in points:
        assert isinstance(point, NumberPoint)
        value = point.value
        if isinstance(value, int) and not isinstance(value, bool):
            number = _tag(6, _I64) + _pack_q(value)
        else:
            number = _double(4, float(value))
        body = (
            (_fixed64(2, point.start_ns) if point.start_ns else b"")
            + _fixed64(3, point.time_ns)
            + number
            + _key_values(point.attributes, 7)
        )
        out.append(_len_field(_T1_LEN, body))
    return b"".join(out)


def _metric(metric: Metric) -> bytes:
    head = _string(1, metric.name) + _string(2, metric.description) + _string(3, metric.unit)
    data = metric.data
    if isinstance(data, Sum):
        body = (
            _number_points(data.points)
            + _enum(2, data.temporality)
            + (_tag(3, _VARINT) + b"\x01" if data.monotonic else b"")
        )
        return head + _len_field(_tag(7, _LEN), body)
    if isinstance(data, Gauge):
        return head + _len_field(_T5_LEN, _number_points(data.points))
    assert isinstance(data, Histogram)
    points = []
    for p in data.points:
        buckets = b"".join(_pack_Q(c) for c in p.bucket_counts)
        bounds = b"".join(_pack_d(b) for b in p.explicit_bounds)
        body = (
            _fixed64(2, p.start_ns)
            + _fixed64(3, p.time_ns)
            + _fixed64(4, p.count)
            + _double(5, p.sum)
            + _raw(6, buckets)
            + _raw(7, bounds)
            + _key_values(p.attributes, 9)
            + (_double(11, p.min) if p.min is not None else b"")
            + (_double(12, p.max) if p.max is not None else b"")
        )
        points.append(_len_field(_T1_LEN, body))
    body = b"".join(points) + _enum(2, data.temporality)
    return head + _len_field(_tag(9, _LEN), body)


def encode_metrics(batches: Iterable[ResourceMetrics]) -> bytes:
    """An ExportMetricsServiceRequest."""
    out = []
    for batch in batches:
        metrics = b"".join(_len_field(_T2_LEN, _metric(m)) for m in batch.metrics)
        scope_metrics = _len_field(_T1_LEN, _scope(batch.scope)) + metrics
        body = _len_field(_T1_LEN, _resource(batch.resource)) + _len_field(_T2_LEN, scope_metrics)
        out.append(_len_field(_T1_LEN, body))
    return b"".join(out)
