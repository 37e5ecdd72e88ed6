"""The stdlib OTLP encoder against the official generated protobuf classes.

Every output is decoded with ``opentelemetry-proto``'s generated messages. Field by field
checks pin the mapping from the model; a reference builder that makes the same request with
the generated classes pins the whole of it (parsed equality, and byte equality for the
encoder's claim to write canonical proto3).
"""

from __future__ import annotations

import math
import random
import subprocess
import sys
import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1 import common_pb2 as pb_common
from opentelemetry.proto.logs.v1 import logs_pb2 as pb_logs
from opentelemetry.proto.metrics.v1 import metrics_pb2 as pb_metrics
from opentelemetry.proto.resource.v1 import resource_pb2 as pb_resource
from opentelemetry.proto.trace.v1 import trace_pb2 as pb_trace

from mfotel._internal.model import (
    SEVERITY_ERROR,
    SEVERITY_INFO,
    SPAN_KIND_SERVER,
    STATUS_ERROR,
    STATUS_OK,
    TEMPORALITY_CUMULATIVE,
    TEMPORALITY_DELTA,
    AttrValue,
    Gauge,
    Histogram,
    HistogramPoint,
    LogRecord,
    Metric,
    NumberPoint,
    ResourceLogs,
    ResourceMetrics,
    ResourceSpans,
    Scope,
    Span,
    SpanEvent,
    SpanLink,
    Sum,
)
from mfotel._internal.otlp.encode import encode_logs, encode_metrics, encode_traces

TRACE_ID = bytes(range(1, 17))
SPAN_ID = bytes(range(17, 25))
PARENT_ID = bytes(range(25, 33))
T0 = 1_700_000_000_123_456_789
INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)
RESOURCE: dict[str, AttrValue] = {"service.name": "metaflow", "metaflow.run.id": "42"}
SCOPE = Scope("mfotel", "0.1.0")


# -- decoding helpers ------------------------------------------------------------------------


def parse_traces(data: bytes) -> Any:
    message = ExportTraceServiceRequest()
    message.ParseFromString(data)
    return message


def parse_logs(data: bytes) -> Any:
    message = ExportLogsServiceRequest()
    message.ParseFromString(data)
    return message


def parse_metrics(data: bytes) -> Any:
    message = ExportMetricsServiceRequest()
    message.ParseFromString(data)
    return message


def py(any_value: Any) -> Any:
    """A decoded AnyValue back as a Python value (kvlist -> dict, array -> list)."""
    kind = any_value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [py(v) for v in any_value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: py(kv.value) for kv in any_value.kvlist_value.values}
    return getattr(any_value, kind)


def attrs(key_values: Any) -> dict[str, Any]:
    return {kv.key: py(kv.value) for kv in key_values}


def one_log(record: LogRecord, resource: Mapping[str, AttrValue] = RESOURCE) -> Any:
    request = parse_logs(encode_logs([ResourceLogs(resource, SCOPE, [record])]))
    return request.resource_logs[0].scope_logs[0].log_records[0]


def one_span(span: Span) -> Any:
    request = parse_traces(encode_traces([ResourceSpans(RESOURCE, SCOPE, [span])]))
    return request.resource_spans[0].scope_spans[0].spans[0]


def one_metric(metric: Metric) -> Any:
    request = parse_metrics(encode_metrics([ResourceMetrics(RESOURCE, SCOPE, [metric])]))
    return request.resource_metrics[0].scope_metrics[0].metrics[0]


def any_of(value: AttrValue) -> Any:
    """``value`` encoded as a log body and decoded: the AnyValue the collector would see."""
    return one_log(LogRecord(time_ns=1, observed_ns=1, body=value)).body


# -- a reference builder with the generated classes ------------------------------------------


def ref_any(value: Any) -> Any:
    if isinstance(value, str):
        return pb_common.AnyValue(string_value=value)
    if isinstance(value, bool):
        return pb_common.AnyValue(bool_value=value)
    if isinstance(value, int):
        if INT64_MIN <= value <= INT64_MAX:
            return pb_common.AnyValue(int_value=value)
        return pb_common.AnyValue(string_value=str(value))
    if isinstance(value, float):
        return pb_common.AnyValue(double_value=value)
    if isinstance(value, bytes):
        return pb_common.AnyValue(bytes_value=value)
    if isinstance(value, Mapping):
        return pb_common.AnyValue(kvlist_value=pb_common.KeyValueList(values=ref_kvs(value)))
    if isinstance(value, Sequence):
        return pb_common.AnyValue(
            array_value=pb_common.ArrayValue(values=[ref_any(v) for v in value])
        )
    assert value is None
    return pb_common.AnyValue()


def ref_kvs(attributes: Mapping[str, Any]) -> list[Any]:
    return [pb_common.KeyValue(key=k, value=ref_any(v)) for k, v in attributes.items()]


def ref_resource(resource: Mapping[str, Any]) -> Any:
    return pb_resource.Resource(attributes=ref_kvs(resource))


def ref_scope(scope: Scope) -> Any:
    return pb_common.InstrumentationScope(name=scope.name, version=scope.version)


def ref_traces(batches: Sequence[ResourceSpans]) -> Any:
    request = ExportTraceServiceRequest()
    for batch in batches:
        spans = []
        for s in batch.spans:
            span = pb_trace.Span(
                trace_id=s.trace_id,
                span_id=s.span_id,
                trace_state=s.trace_state,
                parent_span_id=s.parent_span_id,
                flags=s.flags,
                name=s.name,
                kind=s.kind,  # type: ignore[arg-type]
                start_time_unix_nano=s.start_ns,
                end_time_unix_nano=s.end_ns,
                attributes=ref_kvs(s.attributes),
                events=[
                    pb_trace.Span.Event(
                        time_unix_nano=e.time_ns, name=e.name, attributes=ref_kvs(e.attributes)
                    )
                    for e in s.events
                ],
                links=[
                    pb_trace.Span.Link(
                        trace_id=link.trace_id,
                        span_id=link.span_id,
                        trace_state=link.trace_state,
                        attributes=ref_kvs(link.attributes),
                    )
                    for link in s.links
                ],
            )
            if s.status_code or s.status_message:
                status = pb_trace.Status(message=s.status_message, code=s.status_code)  # type: ignore[arg-type]
                span.status.CopyFrom(status)
            spans.append(span)
        request.resource_spans.append(
            pb_trace.ResourceSpans(
                resource=ref_resource(batch.resource),
                scope_spans=[pb_trace.ScopeSpans(scope=ref_scope(batch.scope), spans=spans)],
            )
        )
    return request


def ref_logs(batches: Sequence[ResourceLogs]) -> Any:
    request = ExportLogsServiceRequest()
    for batch in batches:
        records = []
        for r in batch.records:
            record = pb_logs.LogRecord(
                time_unix_nano=r.time_ns,
                observed_time_unix_nano=r.observed_ns,
                severity_number=r.severity_number,  # type: ignore[arg-type]
                severity_text=r.severity_text,
                attributes=ref_kvs(r.attributes),
                flags=r.flags,
                trace_id=r.trace_id,
                span_id=r.span_id,
                event_name=r.event_name,
            )
            if r.body is not None:
                record.body.CopyFrom(ref_any(r.body))
            records.append(record)
        request.resource_logs.append(
            pb_logs.ResourceLogs(
                resource=ref_resource(batch.resource),
                scope_logs=[pb_logs.ScopeLogs(scope=ref_scope(batch.scope), log_records=records)],
            )
        )
    return request


def ref_number_point(p: NumberPoint) -> Any:
    point = pb_metrics.NumberDataPoint(
        start_time_unix_nano=p.start_ns,
        time_unix_nano=p.time_ns,
        attributes=ref_kvs(p.attributes),
    )
    if isinstance(p.value, int) and not isinstance(p.value, bool):
        point.as_int = p.value
    else:
        point.as_double = float(p.value)
    return point


def ref_metrics(batches: Sequence[ResourceMetrics]) -> Any:
    request = ExportMetricsServiceRequest()
    for batch in batches:
        metrics = []
        for m in batch.metrics:
            metric = pb_metrics.Metric(name=m.name, description=m.description, unit=m.unit)
            if isinstance(m.data, Sum):
                metric.sum.CopyFrom(
                    pb_metrics.Sum(
                        data_points=[ref_number_point(p) for p in m.data.points],
                        aggregation_temporality=m.data.temporality,  # type: ignore[arg-type]
                        is_monotonic=m.data.monotonic,
                    )
                )
            elif isinstance(m.data, Gauge):
                metric.gauge.CopyFrom(
                    pb_metrics.Gauge(data_points=[ref_number_point(p) for p in m.data.points])
                )
            else:
                points = []
                for p in m.data.points:
                    point = pb_metrics.HistogramDataPoint(
                        start_time_unix_nano=p.start_ns,
                        time_unix_nano=p.time_ns,
                        count=p.count,
                        sum=p.sum,
                        bucket_counts=list(p.bucket_counts),
                        explicit_bounds=list(p.explicit_bounds),
                        attributes=ref_kvs(p.attributes),
                    )
                    if p.min is not None:
                        point.min = p.min
                    if p.max is not None:
                        point.max = p.max
                    points.append(point)
                metric.histogram.CopyFrom(
                    pb_metrics.Histogram(
                        data_points=points,
                        aggregation_temporality=m.data.temporality,  # type: ignore[arg-type]
                    )
                )
            metrics.append(metric)
        request.resource_metrics.append(
            pb_metrics.ResourceMetrics(
                resource=ref_resource(batch.resource),
                scope_metrics=[
                    pb_metrics.ScopeMetrics(scope=ref_scope(batch.scope), metrics=metrics)
                ],
            )
        )
    return request


# -- sample data -----------------------------------------------------------------------------

NESTED: dict[str, AttrValue] = {
    "s": "text",
    "empty": "",
    "t": True,
    "f": False,
    "zero": 0,
    "small": 7,
    "two_bytes": 300,
    "neg": -1,
    "min": INT64_MIN,
    "max": INT64_MAX,
    "pi": 3.14159,
    "negzero": -0.0,
    "inf": math.inf,
    "raw": b"\x00\xff\x80",
    "none": None,
    "list": [1, "two", 3.0, False, None, [b"x"]],
    "tuple": ("a", "b"),
    "empty_list": [],
    "map": {"inner": {"deeper": [1, {"k": "v"}]}, "n": -5},
    "empty_map": {},
    "unicodé ✓": "日本語 🚀",
}


def full_span() -> Span:
    return Span(
        trace_id=TRACE_ID,
        span_id=SPAN_ID,
        name="step/start",
        start_ns=T0,
        end_ns=T0 + 5_000,
        parent_span_id=PARENT_ID,
        kind=SPAN_KIND_SERVER,
        attributes={"metaflow.step.name": "start", "attempt": 0, "nested": {"a": [1, 2]}},
        events=[
            SpanEvent("exception", T0 + 10, {"exception.type": "ValueError"}),
            SpanEvent("bare", T0 + 20),
        ],
        links=[
            SpanLink(bytes(16 * [9]), bytes(8 * [8]), {"why": "retry"}, "k=v"),
            SpanLink(bytes(16 * [7]), bytes(8 * [6])),
        ],
        status_code=STATUS_ERROR,
        status_message="boom",
        trace_state="vendor=1",
        flags=0x301,
    )


def full_log() -> LogRecord:
    return LogRecord(
        time_ns=T0,
        observed_ns=T0 + 1,
        body={"msg": "hello", "n": 2, "tags": ["a", "b"]},
        severity_number=SEVERITY_ERROR,
        severity_text="ERROR",
        attributes={"log.iostream": "stderr", "metaflow.task.id": "3", "attempt": 1},
        trace_id=TRACE_ID,
        span_id=SPAN_ID,
        flags=1,
        event_name="metaflow.task.started",
    )


def all_metrics() -> list[Metric]:
    point_attrs: dict[str, AttrValue] = {"metaflow.step.name": "train"}
    return [
        Metric(
            "lines",
            Sum([NumberPoint(point_attrs, T0, 12, T0 - 100), NumberPoint({}, T0, 0)]),
            unit="{line}",
            description="log lines",
        ),
        Metric(
            "delta.bytes",
            Sum([NumberPoint(point_attrs, T0, 2.5, T0 - 1)], False, TEMPORALITY_DELTA),
        ),
        Metric("temperature", Gauge([NumberPoint({}, T0, -273.15), NumberPoint({}, T0, -4)])),
        Metric(
            "duration",
            Histogram(
                [
                    HistogramPoint(
                        point_attrs, T0 - 1000, T0, 6, 12.5, [1, 2, 3], [1.0, 5.0], 0.5, 9.0
                    ),
                    HistogramPoint({}, T0 - 1000, T0, 0, 0.0, [0], []),
                ],
                TEMPORALITY_CUMULATIVE,
            ),
            unit="s",
        ),
    ]


# -- traces ----------------------------------------------------------------------------------


def test_span_scalar_fields_round_trip() -> None:
    """Ids, trace state, name, kind, start/end times and flags decode to what was given."""
    span = one_span(full_span())
    assert span.trace_id == TRACE_ID
    assert span.span_id == SPAN_ID
    assert span.parent_span_id == PARENT_ID
    assert span.trace_state == "vendor=1"
    assert span.name == "step/start"
    assert span.kind == SPAN_KIND_SERVER
    assert span.start_time_unix_nano == T0
    assert span.end_time_unix_nano == T0 + 5_000
    assert span.flags == 0x301


def test_span_attributes_events_links_and_status_round_trip() -> None:
    """Attributes, every event and link with their own attributes, and the status decode."""
    span = one_span(full_span())
    assert attrs(span.attributes) == {
        "metaflow.step.name": "start",
        "attempt": 0,
        "nested": {"a": [1, 2]},
    }
    assert [(e.name, e.time_unix_nano, attrs(e.attributes)) for e in span.events] == [
        ("exception", T0 + 10, {"exception.type": "ValueError"}),
        ("bare", T0 + 20, {}),
    ]
    first, second = span.links
    assert (first.trace_id, first.span_id, first.trace_state) == (
        bytes(16 * [9]),
        bytes(8 * [8]),
        "k=v",
    )
    assert attrs(first.attributes) == {"why": "retry"}
    assert (second.trace_id, second.span_id, second.trace_state) == (
        bytes(16 * [7]),
        bytes(8 * [6]),
        "",
    )
    assert span.HasField("status")
    assert (span.status.code, span.status.message) == (STATUS_ERROR, "boom")


def test_a_root_span_has_no_parent_status_or_flags_fields() -> None:
    """Empty parent id, unset status and zero flags are left out of the wire entirely."""
    data = encode_traces(
        [ResourceSpans({}, Scope("s"), [Span(TRACE_ID, SPAN_ID, "root", T0, T0 + 1, flags=0)])]
    )
    span = parse_traces(data).resource_spans[0].scope_spans[0].spans[0]
    assert span.parent_span_id == b""
    assert not span.HasField("status")
    assert span.flags == 0
    assert span.kind == 1  # the model's default, INTERNAL
    fields = {f.name for f, _ in span.ListFields()}
    assert fields == {
        "trace_id",
        "span_id",
        "name",
        "kind",
        "start_time_unix_nano",
        "end_time_unix_nano",
    }


def test_status_ok_without_message_is_sent() -> None:
    """A status with only a code is present, with that code and no message."""
    span = one_span(Span(TRACE_ID, SPAN_ID, "x", 1, 2, status_code=STATUS_OK))
    assert span.HasField("status")
    assert (span.status.code, span.status.message) == (STATUS_OK, "")


def test_resource_and_scope_round_trip_for_traces() -> None:
    """Resource attributes land in Resource.attributes and the scope's name and version."""
    request = parse_traces(encode_traces([ResourceSpans(RESOURCE, SCOPE, [full_span()])]))
    resource_spans = request.resource_spans[0]
    assert attrs(resource_spans.resource.attributes) == RESOURCE
    scope = resource_spans.scope_spans[0].scope
    assert (scope.name, scope.version) == ("mfotel", "0.1.0")


def test_traces_equal_the_generated_classes_request() -> None:
    """The whole trace request parses equal to one built with the generated classes."""
    batches = [
        ResourceSpans(RESOURCE, SCOPE, [full_span(), Span(TRACE_ID, PARENT_ID, "c", 1, 2)]),
        ResourceSpans({}, Scope("other"), [Span(TRACE_ID, SPAN_ID, "k", 3, 4, kind=3)]),
    ]
    assert parse_traces(encode_traces(batches)) == ref_traces(batches)


# -- logs ------------------------------------------------------------------------------------


def test_log_record_fields_round_trip() -> None:
    """Times, severity, body, attributes, flags, trace/span ids and event_name decode."""
    record = one_log(full_log())
    assert record.time_unix_nano == T0
    assert record.observed_time_unix_nano == T0 + 1
    assert record.severity_number == SEVERITY_ERROR
    assert record.severity_text == "ERROR"
    assert py(record.body) == {"msg": "hello", "n": 2, "tags": ["a", "b"]}
    assert attrs(record.attributes) == {
        "log.iostream": "stderr",
        "metaflow.task.id": "3",
        "attempt": 1,
    }
    assert record.flags == 1
    assert record.trace_id == TRACE_ID
    assert record.span_id == SPAN_ID
    assert record.event_name == "metaflow.task.started"


def test_a_plain_log_record_leaves_optional_fields_out() -> None:
    """Without trace context, severity, flags or event name, those fields are absent."""
    record = one_log(LogRecord(time_ns=T0, observed_ns=T0, body="just text"))
    fields = {f.name for f, _ in record.ListFields()}
    assert fields == {"time_unix_nano", "observed_time_unix_nano", "body"}
    assert record.body.string_value == "just text"


def test_a_none_body_is_no_body_at_all() -> None:
    """A record whose body is None has no body field (not an empty AnyValue)."""
    record = one_log(LogRecord(time_ns=1, observed_ns=2, body=None))
    assert not record.HasField("body")


def test_empty_string_body_is_present_and_empty() -> None:
    """An empty string body is still a string_value (a oneof member is sent even when empty)."""
    record = one_log(LogRecord(time_ns=1, observed_ns=2, body=""))
    assert record.HasField("body")
    assert record.body.WhichOneof("value") == "string_value"


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 128, 16_383, 16_384, 70_000, 2_100_000])
def test_bodies_of_every_length_class_round_trip(size: int) -> None:
    """Bodies whose lengths cross each varint-length boundary decode intact."""
    text = "x" * size
    assert one_log(LogRecord(time_ns=1, observed_ns=2, body=text)).body.string_value == text


def test_many_large_attributes_round_trip() -> None:
    """Records and key-values over 128 bytes (multi-byte length prefixes) decode intact."""
    attributes: dict[str, AttrValue] = {f"key.{i}" * 20: "v" * (i * 37) for i in range(40)}
    attributes["list"] = ["y" * 300] * 3
    record = one_log(LogRecord(time_ns=1, observed_ns=2, body="b", attributes=attributes))
    assert attrs(record.attributes) == attributes


def test_logs_equal_the_generated_classes_request() -> None:
    """The whole log request parses equal to one built with the generated classes."""
    batches = [
        ResourceLogs(
            RESOURCE,
            SCOPE,
            [
                full_log(),
                LogRecord(time_ns=T0, observed_ns=T0, body="line", severity_number=SEVERITY_INFO),
                LogRecord(time_ns=0, observed_ns=T0, body=NESTED, attributes=NESTED),
                LogRecord(time_ns=1, observed_ns=1, body=None, event_name="e"),
            ],
        ),
        ResourceLogs({"a": 1}, Scope("x"), []),
    ]
    assert parse_logs(encode_logs(batches)) == ref_logs(batches)


# -- metrics ---------------------------------------------------------------------------------


def test_sum_points_keep_int_and_double_apart() -> None:
    """An int value is as_int (even zero), a float as_double; temporality and monotonic decode."""
    lines, delta = (one_metric(m) for m in all_metrics()[:2])
    assert (lines.name, lines.unit, lines.description) == ("lines", "{line}", "log lines")
    assert lines.WhichOneof("data") == "sum"
    first, second = lines.sum.data_points
    assert first.WhichOneof("value") == "as_int" and first.as_int == 12
    assert second.WhichOneof("value") == "as_int" and second.as_int == 0
    assert (first.start_time_unix_nano, first.time_unix_nano) == (T0 - 100, T0)
    assert second.start_time_unix_nano == 0
    assert attrs(first.attributes) == {"metaflow.step.name": "train"}
    assert lines.sum.aggregation_temporality == TEMPORALITY_CUMULATIVE
    assert lines.sum.is_monotonic is True
    (point,) = delta.sum.data_points
    assert point.WhichOneof("value") == "as_double" and point.as_double == 2.5
    assert delta.sum.aggregation_temporality == TEMPORALITY_DELTA
    assert delta.sum.is_monotonic is False


def test_gauge_points_round_trip_including_negative_ints() -> None:
    """Gauge points decode; a negative int is a sfixed64 as_int, a negative float as_double."""
    gauge = one_metric(all_metrics()[2])
    assert gauge.WhichOneof("data") == "gauge"
    first, second = gauge.gauge.data_points
    assert first.WhichOneof("value") == "as_double" and first.as_double == -273.15
    assert second.WhichOneof("value") == "as_int" and second.as_int == -4


@pytest.mark.parametrize(
    ("value", "kind", "expected"),
    [
        (INT64_MAX, "as_int", INT64_MAX),
        (INT64_MIN, "as_int", INT64_MIN),
        (True, "as_double", 1.0),
        (2**64, "as_double", float(2**64)),
        (10**400, "as_double", math.inf),
        (-(10**400), "as_double", -math.inf),
        (0.0, "as_double", 0.0),
    ],
    ids=["int64-max", "int64-min", "bool", "2**64", "10**400", "-10**400", "zero-float"],
)
def test_number_point_edge_values(value: int | float, kind: str, expected: float) -> None:
    """int64 extremes stay ints; bools and ints beyond int64 become doubles (inf if need be)."""
    metric = one_metric(Metric("g", Gauge([NumberPoint({}, 1, value)])))
    (point,) = metric.gauge.data_points
    assert point.WhichOneof("value") == kind
    assert getattr(point, kind) == expected


def test_histogram_points_round_trip() -> None:
    """Count, sum, packed buckets and bounds, min/max and temporality decode as given."""
    histogram = one_metric(all_metrics()[3])
    assert histogram.WhichOneof("data") == "histogram"
    assert histogram.histogram.aggregation_temporality == TEMPORALITY_CUMULATIVE
    full, empty = histogram.histogram.data_points
    assert (full.start_time_unix_nano, full.time_unix_nano) == (T0 - 1000, T0)
    assert full.count == 6
    assert full.HasField("sum") and full.sum == 12.5
    assert list(full.bucket_counts) == [1, 2, 3]
    assert list(full.explicit_bounds) == [1.0, 5.0]
    assert full.HasField("min") and full.min == 0.5
    assert full.HasField("max") and full.max == 9.0
    assert attrs(full.attributes) == {"metaflow.step.name": "train"}
    assert empty.count == 0
    assert empty.HasField("sum") and empty.sum == 0.0  # optional: present though zero
    assert list(empty.bucket_counts) == [0]
    assert list(empty.explicit_bounds) == []
    assert not empty.HasField("min") and not empty.HasField("max")


def test_histogram_with_many_large_buckets_round_trips() -> None:
    """Bucket counts up to 2**64-1 and 200 bounds survive the packed encoding."""
    counts = [0, 1, 2**32, 2**64 - 1] * 50
    bounds = [i * 0.5 - 10 for i in range(199)]
    point = HistogramPoint({}, 1, 2, sum(counts) % 2**64, -1.5, counts, bounds, -3.0, 0.0)
    metric = one_metric(Metric("h", Histogram([point], TEMPORALITY_DELTA)))
    (decoded,) = metric.histogram.data_points
    assert list(decoded.bucket_counts) == counts
    assert list(decoded.explicit_bounds) == bounds
    assert (decoded.min, decoded.max, decoded.sum) == (-3.0, 0.0, -1.5)
    assert decoded.HasField("max")  # zero max is still present
    assert metric.histogram.aggregation_temporality == TEMPORALITY_DELTA


def test_metrics_equal_the_generated_classes_request() -> None:
    """The whole metric request parses equal to one built with the generated classes."""
    batches = [
        ResourceMetrics(RESOURCE, SCOPE, all_metrics()),
        ResourceMetrics({}, Scope("two", ""), [Metric("c", Sum([NumberPoint(NESTED, 5, 1)]))]),
    ]
    assert parse_metrics(encode_metrics(batches)) == ref_metrics(batches)


def test_an_unknown_metric_kind_is_a_type_error() -> None:
    """A Metric whose data is none of Sum, Gauge, Histogram raises TypeError."""
    metric = Metric("bad", data=object())  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        encode_metrics([ResourceMetrics({}, SCOPE, [metric])])


# -- AnyValue --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "kind", "expected"),
    [
        ("text", "string_value", "text"),
        ("", "string_value", ""),
        ("日本語 🚀 ✓", "string_value", "日本語 🚀 ✓"),
        (True, "bool_value", True),
        (False, "bool_value", False),
        (0, "int_value", 0),
        (127, "int_value", 127),
        (128, "int_value", 128),
        (-1, "int_value", -1),
        (INT64_MAX, "int_value", INT64_MAX),
        (INT64_MIN, "int_value", INT64_MIN),
        (1.5, "double_value", 1.5),
        (0.0, "double_value", 0.0),
        (-1e300, "double_value", -1e300),
        (math.inf, "double_value", math.inf),
        (b"", "bytes_value", b""),
        (b"\x00\xff", "bytes_value", b"\x00\xff"),
        (bytearray(b"ab"), "bytes_value", b"ab"),
    ],
)
def test_scalar_any_values_use_the_right_oneof_member(
    value: AttrValue, kind: str, expected: object
) -> None:
    """Each scalar Python type maps to its AnyValue member, bool before int, zero included."""
    decoded = any_of(value)
    assert decoded.WhichOneof("value") == kind
    assert getattr(decoded, kind) == expected


def test_nan_double_round_trips() -> None:
    """A NaN attribute is a double_value NaN."""
    assert math.isnan(any_of(math.nan).double_value)


def test_none_is_an_empty_any_value() -> None:
    """None as an attribute value is a present but empty AnyValue."""
    record = one_log(LogRecord(time_ns=1, observed_ns=1, body="b", attributes={"k": None}))
    (kv,) = record.attributes
    assert kv.key == "k"
    assert kv.HasField("value")
    assert kv.value.WhichOneof("value") is None


def test_negative_ints_are_ten_byte_varints() -> None:
    """-1 goes out as the ten-byte two's-complement varint int64 uses."""
    data = encode_logs([ResourceLogs({}, Scope(""), [LogRecord(0, 0, -1)])])
    assert b"\x18" + b"\xff" * 9 + b"\x01" in data
    assert any_of(-1).int_value == -1


def test_nested_arrays_and_kvlists_round_trip() -> None:
    """Lists, tuples and mappings nest to any depth as array_value and kvlist_value."""
    decoded = any_of(NESTED)
    assert decoded.WhichOneof("value") == "kvlist_value"
    expected = dict(NESTED)
    expected["tuple"] = ["a", "b"]
    assert py(decoded) == expected
    assert decoded.kvlist_value.values[-1].key == "unicodé ✓"
    inner = {kv.key: kv.value for kv in decoded.kvlist_value.values}
    assert inner["empty_list"].WhichOneof("value") == "array_value"
    assert inner["empty_map"].WhichOneof("value") == "kvlist_value"
    assert math.copysign(1.0, inner["negzero"].double_value) == -1.0


def test_ints_beyond_int64_are_sent_exactly_as_text() -> None:
    """An int no int64 holds (JSON allows them) becomes its decimal string, not an error."""
    assert py(any_of([2**63, -(2**63) - 1, 10**30])) == [
        str(2**63),
        str(-(2**63) - 1),
        str(10**30),
    ]


def test_lone_surrogates_are_replaced_and_pairs_joined() -> None:
    """Unencodable strings never raise: a lone surrogate is U+FFFD, a surrogate pair its char."""
    text = "a\udcff b\ud83d\ude00 c\ud800"
    record = one_log(
        LogRecord(
            time_ns=1,
            observed_ns=1,
            body=text,
            severity_text="\udc80",
            attributes={"k\udcfe": text, "list": [text], "map": {text: text}},
            event_name="e\ud800",
        )
    )
    fixed = "a\ufffd b\U0001f600 c\ufffd"
    assert record.body.string_value == fixed
    assert record.severity_text == "\ufffd"
    assert attrs(record.attributes) == {"k\ufffd": fixed, "list": [fixed], "map": {fixed: fixed}}
    assert record.event_name == "e\ufffd"
    span = one_span(Span(TRACE_ID, SPAN_ID, "n\udcff", 1, 2, attributes={"x": "\ud800"}))
    assert span.name == "n\ufffd"
    assert attrs(span.attributes) == {"x": "\ufffd"}


def test_unsupported_values_and_keys_become_strings() -> None:
    """A value of no AnyValue type is sent as its str(); a non-str key likewise."""
    body: Any = {"set": frozenset([1]), 5: "five", "obj": Scope("s")}
    assert py(any_of(body)) == {
        "set": "frozenset({1})",
        "5": "five",
        "obj": "Scope(name='s', version='')",
    }


def test_deep_and_cyclic_structures_do_not_recurse_forever() -> None:
    """Nesting past the depth limit is cut to a string; a self-containing list does not hang."""
    deep: Any = "leaf"
    for _ in range(200):
        deep = [deep]
    decoded = py(any_of(deep))
    depth = 0
    while isinstance(decoded, list):
        (decoded,) = decoded
        depth += 1
    assert isinstance(decoded, str) and decoded.startswith("[[")
    assert 10 < depth < 200
    cyclic: list[Any] = [1]
    cyclic.append(cyclic)
    assert py(any_of(cyclic))[0] == 1


def test_empty_keys_round_trip() -> None:
    """An empty attribute key decodes as the empty string."""
    record = one_log(LogRecord(time_ns=1, observed_ns=1, body="b", attributes={"": "v"}))
    assert attrs(record.attributes) == {"": "v"}


def test_random_attribute_trees_equal_the_generated_classes() -> None:
    """Seeded random AnyValue trees parse equal to the generated classes' encoding."""
    rng = random.Random(20240601)

    def value(depth: int) -> AttrValue:
        kind = rng.randrange(9 if depth < 4 else 6)
        if kind == 0:
            return "".join(
                chr(rng.choice([65, 233, 0x65E5, 0x1F680])) for _ in range(rng.randrange(200))
            )
        if kind == 1:
            return rng.random() < 0.5
        if kind == 2:
            return rng.randint(INT64_MIN, INT64_MAX) >> rng.randrange(64)
        if kind == 3:
            return rng.uniform(-1e9, 1e9)
        if kind == 4:
            return rng.randbytes(rng.randrange(300))
        if kind == 5:
            return None
        if kind in (6, 7):
            return [value(depth + 1) for _ in range(rng.randrange(5))]
        return {f"k{i}": value(depth + 1) for i in range(rng.randrange(5))}

    records = [
        LogRecord(
            time_ns=rng.randrange(2**64),
            observed_ns=rng.randrange(2**64),
            body=value(0),
            attributes={f"a{i}": value(1) for i in range(rng.randrange(8))},
        )
        for _ in range(300)
    ]
    batches = [ResourceLogs(RESOURCE, SCOPE, records)]
    assert parse_logs(encode_logs(batches)) == ref_logs(batches)


# -- requests as a whole ---------------------------------------------------------------------


def test_no_batches_is_an_empty_request() -> None:
    """Encoding no batches gives the empty message, which parses as an empty request."""
    assert encode_traces([]) == encode_logs([]) == encode_metrics([]) == b""


def test_empty_resource_and_scope_are_still_present() -> None:
    """A batch with no resource attributes and an unnamed scope still carries both messages."""
    request = parse_logs(encode_logs([ResourceLogs({}, Scope(""), [])]))
    resource_logs = request.resource_logs[0]
    assert resource_logs.HasField("resource")
    assert resource_logs.scope_logs[0].HasField("scope")
    assert list(resource_logs.scope_logs[0].log_records) == []


def test_output_is_byte_identical_to_deterministic_protobuf() -> None:
    """For all three signals the bytes equal the generated classes' deterministic serialization."""
    spans = [ResourceSpans(RESOURCE, SCOPE, [full_span(), Span(TRACE_ID, SPAN_ID, "", 0, 0)])]
    logs = [ResourceLogs(RESOURCE, SCOPE, [full_log(), LogRecord(0, 0, NESTED, attributes=NESTED)])]
    metrics = [ResourceMetrics(RESOURCE, SCOPE, all_metrics())]
    assert encode_traces(spans) == ref_traces(spans).SerializeToString(deterministic=True)
    assert encode_logs(logs) == ref_logs(logs).SerializeToString(deterministic=True)
    assert encode_metrics(metrics) == ref_metrics(metrics).SerializeToString(deterministic=True)


def test_encoder_runs_without_protobuf_or_opentelemetry() -> None:
    """The module imports and encodes in an interpreter where protobuf and OpenTelemetry fail."""
    script = textwrap.dedent(
        """
        import sys
        for name in ("google", "google.protobuf", "opentelemetry", "grpc"):
            sys.modules[name] = None  # any import of these now raises ImportError
        from mfotel._internal.model import LogRecord, ResourceLogs, Scope
        from mfotel._internal.otlp.encode import encode_logs
        batch = ResourceLogs({"a": [1, {"b": None}]}, Scope("s"), [LogRecord(1, 2, "x")])
        data = encode_logs([batch])
        print(data.hex())
        leaked = sorted(
            m for m, mod in sys.modules.items()
            if mod is not None and m.split(".")[0] in ("google", "opentelemetry", "grpc")
        )
        print(",".join(leaked) or "-")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    hex_data, leaked = result.stdout.split()
    request = parse_logs(bytes.fromhex(hex_data))
    assert request.resource_logs[0].scope_logs[0].log_records[0].body.string_value == "x"
    assert leaked == "-"


def test_subclasses_and_abstract_containers_map_like_their_base_types() -> None:
    """str/int subclasses, any Sequence and any Mapping encode as their base AnyValue kinds."""
    import enum
    import types

    class Color(str, enum.Enum):
        RED = "red"

    class Level(enum.IntEnum):
        HIGH = 3

    body: Any = {
        "color": Color.RED,
        "level": Level.HIGH,
        "range": range(3),
        "proxy": types.MappingProxyType({"a": 1}),
    }
    decoded = any_of(body)
    inner = {kv.key: kv.value for kv in decoded.kvlist_value.values}
    assert inner["color"].WhichOneof("value") == "string_value"
    assert inner["level"].WhichOneof("value") == "int_value" and inner["level"].int_value == 3
    assert py(inner["range"]) == [0, 1, 2]
    assert py(inner["proxy"]) == {"a": 1}


def test_the_attribute_cache_keeps_equal_values_of_different_types_apart() -> None:
    """1, True, "1", 0.0 and -0.0 under one key each keep their own type and sign."""
    values: list[AttrValue] = [1, True, "1", 1.0, 0, False, 0.0, -0.0, 1, True]
    for _ in range(2):  # the second pass reads whatever the first one cached
        for value in values:
            record = one_log(LogRecord(time_ns=1, observed_ns=1, body="b", attributes={"k": value}))
            decoded = record.attributes[0].value
            assert type(py(decoded)) is type(value)
            assert py(decoded) == value
            if isinstance(value, float):
                assert math.copysign(1.0, py(decoded)) == math.copysign(1.0, value)


def test_the_attribute_cache_stays_bounded_and_correct() -> None:
    """Many distinct attribute values never grow the cache past its bound nor mix values up."""
    from mfotel._internal.otlp import encode as encode_module

    count = encode_module._KV_CACHE_MAX * 3 + 7
    records = [
        LogRecord(
            time_ns=1,
            observed_ns=1,
            body="b",
            attributes={"uid": f"{i:08x}", "i": i, "same": "x", "long": "z" * 600},
        )
        for i in range(count)
    ]
    request = parse_logs(encode_logs([ResourceLogs(RESOURCE, SCOPE, records)]))
    decoded = request.resource_logs[0].scope_logs[0].log_records
    assert [attrs(r.attributes) for r in decoded] == [dict(r.attributes) for r in records]
    assert len(encode_module._kv_cache) <= encode_module._KV_CACHE_MAX
    assert all(len(v) <= encode_module._KV_CACHE_ITEM_MAX for v in encode_module._kv_cache.values())
