"""The agent's pipeline: spans from messages, exactly-once lines, orphaned spans, late events."""

from __future__ import annotations

from typing import Any

from mfotel._internal.agent.pipeline import Pipeline
from mfotel._internal.model import ResourceLogs, ResourceMetrics, ResourceSpans
from mfotel._internal.otlp.encode import encode_logs

TID = "0af7651916cd43dd8448eb211c80319c"
SID = "00f067aa0ba902b7"
CTX = {
    "tid": TID,
    "sid": SID,
    "res": {"service.name": "metaflow", "metaflow.flow.name": "F", "metaflow.run.id": "1"},
    "attrs": {"metaflow.step.name": "s", "metaflow.task.id": "2", "metaflow.task.attempt": 0},
}


class ListSink:
    """Keeps every batch the pipeline emits."""

    def __init__(self) -> None:
        self.span_batches: list[ResourceSpans] = []
        self.log_batches: list[ResourceLogs] = []
        self.metric_batches: list[ResourceMetrics] = []

    def spans(self, batches: list[ResourceSpans]) -> None:
        self.span_batches.extend(batches)

    def logs(self, batches: list[ResourceLogs]) -> None:
        self.log_batches.extend(batches)

    def metrics(self, batches: list[ResourceMetrics]) -> None:
        self.metric_batches.extend(batches)

    def settle(self, timeout_s: float) -> None:
        return None

    def close(self, timeout_s: float) -> None:
        return None

    def all_spans(self) -> list[Any]:
        return [s for b in self.span_batches for s in b.spans]

    def all_records(self) -> list[Any]:
        """Every record, as the collector decodes it (blocks of lines included)."""
        from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
            ExportLogsServiceRequest,
        )

        request = ExportLogsServiceRequest()
        request.ParseFromString(encode_logs(self.log_batches))
        return [
            _Record(r)
            for rl in request.resource_logs
            for sl in rl.scope_logs
            for r in sl.log_records
        ]


class _Record:
    """A decoded record with its attributes as a dict."""

    def __init__(self, record: Any) -> None:
        self.body = record.body.string_value
        self.event_name = record.event_name
        self.span_id = record.span_id
        self.time_ns = record.time_unix_nano
        self.attributes = {
            kv.key: getattr(kv.value, kv.value.WhichOneof("value")) for kv in record.attributes
        }


def _end(**extra: Any) -> dict[str, Any]:
    body = {
        "t": "end",
        "ctx": CTX,
        "sid": SID,
        "psid": "b7ad6b7169203331",
        "name": "s",
        "kind": 1,
        "start_ns": 10,
        "end_ns": 20,
    }
    body.update(extra)
    return body


def test_an_end_message_alone_makes_a_complete_span() -> None:
    """An end message carries everything: ids, parent, times, identity, exception event."""
    sink = ListSink()
    pipeline = Pipeline(sink)
    exc = {"type": "ValueError", "message": "bad", "stacktrace": "tb"}
    pipeline.handle(_end(status=2, msg="bad", exc=exc, attrs={"x": 1}), conn=1)
    pipeline.flush()
    (span,) = sink.all_spans()
    assert span.trace_id.hex() == TID and span.span_id.hex() == SID
    assert span.parent_span_id.hex() == "b7ad6b7169203331"
    assert (span.start_ns, span.end_ns, span.status_code) == (10, 20, 2)
    assert span.attributes["metaflow.step.name"] == "s" and span.attributes["x"] == 1
    assert [e.name for e in span.events] == ["exception"]
    assert sink.span_batches[0].resource["metaflow.flow.name"] == "F"


def test_events_join_their_span_and_late_ones_become_log_records() -> None:
    """Events before the span's end ride on it; after its end they travel as event records."""
    sink = ListSink()
    pipeline = Pipeline(sink)
    event = {
        "t": "event",
        "ctx": CTX,
        "name": "metaflow.task.start",
        "time_ns": 15,
        "level": "info",
        "payload": {"msg": "hi", "nested": {"a": 1}},
    }
    pipeline.handle(event, conn=1)
    pipeline.handle(_end(), conn=1)
    pipeline.handle(dict(event, name="metaflow.task.late"), conn=1)
    pipeline.flush()
    (span,) = sink.all_spans()
    (on_span,) = span.events
    assert on_span.name == "metaflow.task.start"
    assert on_span.attributes == {"msg": "hi", "nested.a": 1, "metaflow.event.level": "info"}
    (late,) = sink.all_records()
    assert late.event_name == "metaflow.task.late" and late.span_id.hex() == SID
    assert late.attributes["metaflow.event.level"] == "info"  # as on a span event
    assert (late.attributes["msg"], late.attributes["nested.a"]) == ("hi", 1)


def test_every_resource_names_its_service_as_the_specification_says() -> None:
    """OTEL_SERVICE_NAME wins, then a service.name in OTEL_RESOURCE_ATTRIBUTES, else metaflow:
    for a run's resource and the agent's own alike."""
    from mfotel._internal.identity import resource_attributes, service_name

    cases = [
        ({}, "metaflow"),
        ({"OTEL_RESOURCE_ATTRIBUTES": "service.name=ml,team=a"}, "ml"),
        ({"OTEL_RESOURCE_ATTRIBUTES": "service.name=ml", "OTEL_SERVICE_NAME": "train"}, "train"),
        ({"OTEL_SERVICE_NAME": "  "}, "metaflow"),
    ]
    for environ, expected in cases:
        assert service_name(environ) == expected, environ
        assert resource_attributes("F", "1", "u", [], environ)["service.name"] == expected


def test_a_line_is_exported_once_however_it_arrives() -> None:
    """The same line id live, again live, and from the persisted log yields one record."""
    sink = ListSink()
    pipeline = Pipeline(sink)
    line = ["uid-1", 123_000, "stdout", "hello"]
    pipeline.handle({"t": "log", "ctx": CTX, "lines": [line, line]}, conn=1)
    added = pipeline.add_persisted_lines(
        CTX,
        [
            ("uid-1", 123_000, "stdout", "task", "hello"),
            ("uid-2", 124_000, "stderr", "runtime", "Task failed."),
        ],
    )
    pipeline.flush()
    assert added == 1
    records = sink.all_records()
    assert [r.attributes["log.record.uid"] for r in records] == ["uid-1", "uid-2"]
    assert records[1].attributes["metaflow.log.source"] == "runtime"


def test_a_span_whose_process_died_ends_in_error() -> None:
    """A started span whose connection closes without an end is ended ERROR at finish."""
    sink = ListSink()
    pipeline = Pipeline(sink)
    pipeline.handle(
        {"t": "start", "ctx": CTX, "sid": SID, "name": "s", "kind": 1, "start_ns": 10}, conn=7
    )
    pipeline.closed(7)
    pipeline.finish(settle_s=0)
    (span,) = sink.all_spans()
    assert span.status_code == 2 and "ended without ending" in span.status_message
    assert span.end_ns >= span.start_ns


def test_a_fork_span_ends_normally_when_its_process_exits() -> None:
    """A span marked eof_ends (parallel_map child) ends OK when its connection closes."""
    sink = ListSink()
    pipeline = Pipeline(sink)
    pipeline.handle(
        {
            "t": "start",
            "ctx": CTX,
            "sid": "1111111111111111",
            "psid": SID,
            "name": "parallel_map",
            "kind": 1,
            "start_ns": 10,
            "eof_ends": True,
        },
        conn=3,
    )
    pipeline.closed(3)
    pipeline.flush()
    (span,) = sink.all_spans()
    assert span.name == "parallel_map" and span.status_code == 0
    assert span.parent_span_id.hex() == SID


def test_unsampled_spans_are_dropped_but_their_logs_are_kept() -> None:
    """A span from an unsampled parent is not exported; its task's lines still are."""
    sink = ListSink()
    pipeline = Pipeline(sink)
    pipeline.handle(_end(sampled=False), conn=1)
    pipeline.handle({"t": "log", "ctx": CTX, "lines": [["u", 1000, "stdout", "x"]]}, conn=1)
    pipeline.flush()
    assert sink.all_spans() == []
    assert len(sink.all_records()) == 1


def test_malformed_messages_are_ignored() -> None:
    """Messages without a usable context, or with broken lines, are skipped without error."""
    sink = ListSink()
    pipeline = Pipeline(sink)
    pipeline.handle({"t": "log"}, conn=1)
    pipeline.handle({"t": "log", "ctx": CTX, "lines": [["only-uid"], "junk", None]}, conn=1)
    pipeline.flush()
    assert sink.all_records() == []
