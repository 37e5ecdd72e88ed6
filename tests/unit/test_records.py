"""Log lines become records: JSON bodies, severities, identity attributes."""

from __future__ import annotations

from typing import Any

import pytest

from mfotel._internal.model import (
    SEVERITY_ERROR,
    SEVERITY_INFO,
    SEVERITY_WARN,
    LogBlock,
    ResourceLogs,
    Scope,
)
from mfotel._internal.otlp.encode import encode_logs
from mfotel.logs._records import body_and_severity, make_block, shared_attributes


def test_json_object_line_becomes_a_map_with_its_level() -> None:
    """A JSON-object line is a structured body and its level sets the severity."""
    body, number, text = body_and_severity('{"level": "warning", "msg": "x", "n": 2}')
    assert body == {"level": "warning", "msg": "x", "n": 2}
    assert (number, text) == (SEVERITY_WARN, "WARN")


@pytest.mark.parametrize(
    ("line", "number"),
    [
        ('{"severity": "ERROR"}', SEVERITY_ERROR),
        ('{"levelname": "INFO", "x": 1}', SEVERITY_INFO),
        ("INFO:root:hello", SEVERITY_INFO),
        ("ERROR:probe:bad", SEVERITY_ERROR),
        ("[WARNING] careful", SEVERITY_WARN),
        ("just text", 0),
        ("[1, 2, 3]", 0),
        ("{not json}", 0),
    ],
)
def test_severity_is_taken_from_level_fields_and_common_prefixes(line: str, number: int) -> None:
    """Severity comes from a JSON level field or a logging-style prefix, else stays unset."""
    assert body_and_severity(line)[1] == number


def test_json_array_and_invalid_json_stay_text() -> None:
    """Only a JSON *object* becomes a map body; everything else is the line's text."""
    assert body_and_severity("[1, 2]")[0] == "[1, 2]"
    assert body_and_severity("{oops")[0] == "{oops"


def _decode(block: LogBlock) -> list[Any]:
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    request = ExportLogsServiceRequest()
    request.ParseFromString(encode_logs([ResourceLogs({}, Scope("s"), [], [block])]))
    return list(request.resource_logs[0].scope_logs[0].log_records)


def test_a_block_of_lines_decodes_to_records_with_identity_and_contract_attributes() -> None:
    """Each line is a record with the task identity plus log.iostream, log.record.uid and the
    log source, its time, the trace context and the sampled flag."""
    shared = shared_attributes({"metaflow.step.name": "fan"}, "stderr", "task")
    block = make_block(
        shared, b"\x01" * 16, b"\x02" * 8, 456, [b"hi", b"there"], [123, 124], ["u-1", "u-2"], None
    )
    records = _decode(block)
    assert [r.body.string_value for r in records] == ["hi", "there"]
    attrs = {kv.key: kv.value.string_value for kv in records[1].attributes}
    assert attrs == {
        "metaflow.step.name": "fan",
        "log.iostream": "stderr",
        "log.record.uid": "u-2",
        "metaflow.log.source": "task",
    }
    first = records[0]
    assert (first.time_unix_nano, first.observed_time_unix_nano, first.flags) == (123, 456, 1)
    assert first.trace_id == b"\x01" * 16 and first.span_id == b"\x02" * 8


def test_a_chunk_of_sequential_ids_and_shaped_lines() -> None:
    """A relay chunk: one time for all, ids from a stream prefix and the first sequence number,
    JSON and level-prefixed lines shaped as body_and_severity says, long and empty lines."""
    texts = [b"plain", b'{"level": "error", "m": 1}', b"", b"WARNING:x:careful", b"x" * 300]
    prefix = "0123abcd-0123-4123-8123-"
    block = make_block(
        shared_attributes({}, "stdout", "task"), b"", b"", 9, texts, 77, (prefix, 255), None
    )
    records = _decode(block)
    assert [r.time_unix_nano for r in records] == [77] * 5
    uids = [
        {kv.key: kv.value.string_value for kv in r.attributes}["log.record.uid"] for r in records
    ]
    assert uids == [f"{prefix}{n:012x}" for n in range(255, 260)]
    assert records[1].severity_number == SEVERITY_ERROR
    assert {kv.key: kv.value for kv in records[1].body.kvlist_value.values}["m"].int_value == 1
    assert records[2].body.HasField("string_value") and records[2].body.string_value == ""
    assert (records[3].severity_number, records[3].body.string_value) == (
        SEVERITY_WARN,
        "WARNING:x:careful",
    )
    assert records[4].body.string_value == "x" * 300 and records[0].flags == 0
