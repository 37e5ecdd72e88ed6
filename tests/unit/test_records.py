"""Log lines become records: JSON bodies, severities, identity attributes."""

from __future__ import annotations

import pytest

from mfotel._internal.model import SEVERITY_ERROR, SEVERITY_INFO, SEVERITY_WARN
from mfotel.logs._records import body_and_severity, make_record


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


def test_record_carries_identity_and_contract_attributes() -> None:
    """A record has the task identity plus log.iostream, log.record.uid and the log source."""
    record = make_record(
        "uid-1",
        123,
        "stderr",
        "hi",
        "task",
        {"metaflow.step.name": "fan"},
        b"\x01" * 16,
        b"\x02" * 8,
        456,
    )
    assert record.attributes == {
        "metaflow.step.name": "fan",
        "log.iostream": "stderr",
        "log.record.uid": "uid-1",
        "metaflow.log.source": "task",
    }
    assert (record.time_ns, record.observed_ns, record.flags) == (123, 456, 1)
    assert record.trace_id == b"\x01" * 16 and record.span_id == b"\x02" * 8
