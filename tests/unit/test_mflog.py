"""mflog lines: what the tee writes, Metaflow parses, and backfill reads back."""

from __future__ import annotations

import pytest
from metaflow.mflog import mflog as metaflow_mflog

from mfotel.logs._mflog import format_timestamp, header, new_uid, now_us_ns, parse


def test_header_is_parsed_by_metaflow_with_same_time_and_id() -> None:
    """A line the tee writes parses in Metaflow with our id, source, time and persist mark."""
    time_ns = now_us_ns()
    uid = new_uid()
    line = header(time_ns, b"task", uid, True) + b"hello | world ] x"
    parsed = metaflow_mflog.parse(line)
    assert parsed is not None
    assert parsed.should_persist == b"[!"
    assert parsed.logsource == b"task"
    assert parsed.id == uid.encode()
    assert parsed.msg == b"hello | world ] x"
    seconds = parsed.utc_tstamp.replace(tzinfo=__import__("datetime").timezone.utc).timestamp()
    assert round(seconds * 1_000_000) * 1000 == time_ns


def test_parse_reads_metaflow_written_lines() -> None:
    """A line Metaflow decorates parses here with the same id, source and text."""
    line = metaflow_mflog.decorate(b"runtime", b"Task failed.")
    parsed = parse(line)
    assert parsed is not None
    assert parsed.source == "runtime"
    assert parsed.text == b"Task failed."
    assert parsed.should_persist is False
    assert parsed.uid == metaflow_mflog.parse(line).id.decode()


def test_round_trip_keeps_the_microsecond() -> None:
    """Time survives header → parse to the nanosecond, since it is microsecond-truncated."""
    time_ns = 1_795_347_341_629_497_000
    parsed = parse(header(time_ns, b"task", "abc", False) + b"x")
    assert parsed is not None and parsed.time_ns == time_ns
    assert format_timestamp(time_ns) == b"2026-11-22T11:35:41.629497Z"


@pytest.mark.parametrize(
    "line",
    [
        b"plain text",
        b"[MFLOG|0|not-a-time Z|task|id]x",
        b"[MFLOG|0|2026-11-22T10:15:41.629497Z|task]x",
        b"[MFLOG|1|2026-11-22T10:15:41.629497Z|task|id]x",
        b"[MFLOG|0|2026-11-22T10:15:41.629497Z|task|id",
    ],
)
def test_parse_rejects_what_is_not_an_mflog_line(line: bytes) -> None:
    """Anything that is not a complete version-0 mflog line parses to None."""
    assert parse(line) is None


def test_uids_are_unique_uuid4_strings() -> None:
    """Line ids look like Metaflow's (uuid4 text) and do not repeat."""
    uids = {new_uid() for _ in range(1000)}
    assert len(uids) == 1000
    assert all(len(u) == 36 and u[14] == "4" for u in uids)
