"""The pieces behind backfill and tail: pathspecs, log names, streaming, checkpoints, ledger."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mfotel._internal.model import LogRecord, ResourceLogs, Scope
from mfotel._internal.otlp.encode import encode_logs
from mfotel.logs import _ledger, _stores
from mfotel.logs._backfill import BackfillError, parse_since, read_lines
from mfotel.logs._checkpoint import CheckpointError, Checkpoints
from mfotel.logs._layout import Pathspec, PathspecError, find_logs, log_file, parse_pathspec
from mfotel.logs._records import make_block, shared_attributes
from mfotel.logs._stores import LocalStore, StoreError, open_store
from mfotel.traces._ids import attempt_span_id, root_context


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ProbeFlow", Pathspec("ProbeFlow")),
        ("ProbeFlow/17", Pathspec("ProbeFlow", "17")),
        ("ProbeFlow/argo-abc/fan", Pathspec("ProbeFlow", "argo-abc", "fan")),
        ("/ProbeFlow/17/fan/3/", Pathspec("ProbeFlow", "17", "fan", "3")),
    ],
)
def test_pathspecs_parse(text: str, expected: Pathspec) -> None:
    """Flow, run, step and task pathspecs parse; surrounding slashes are forgiven."""
    assert parse_pathspec(text) == expected
    assert parse_pathspec(str(expected)) == expected


@pytest.mark.parametrize(
    "text", ["", "ProbeFlow//3", "1Flow/2", "Probe-Flow/2", "F/1/2/3/4", "F/../x", "F/a b"]
)
def test_malformed_pathspecs_are_refused(text: str) -> None:
    """A malformed pathspec raises PathspecError with a message naming it."""
    with pytest.raises(PathspecError, match="pathspec"):
        parse_pathspec(text)


@pytest.mark.parametrize(
    ("key", "fields"),
    [
        ("F/1/s/2/0.runtime_stdout.log", (0, "stdout", "runtime")),
        ("F/1/s/2/3.task_stderr.log", (3, "stderr", "task")),
        ("F/1/s/2/1.stdout.log", (1, "stdout", "legacy")),
        ("F/1/s/2/0.data.json", None),
        ("F/1/s/2/_meta/0.stdout.log", None),
        ("F/1/s/0.stdout.log", None),
        ("F/1/s/2/x.stdout.log", None),
    ],
)
def test_log_names_new_and_old(key: str, fields: tuple[int, str, str] | None) -> None:
    """Both mflog-era names and pre-mflog names are task logs; nothing else is."""
    log = log_file(key, 10)
    assert (None if log is None else (log.attempt, log.stream, log.prefix)) == fields


def test_find_logs_orders_attempts_and_sources(tmp_path: Path) -> None:
    """Logs come in task order (numerically), attempt, then runtime/task, stdout before stderr."""
    for name in ["10/0.task_stderr.log", "10/0.runtime_stdout.log", "9/1.task_stdout.log",
                 "9/0.task_stdout.log", "10/0.data.json"]:  # fmt: skip
        path = tmp_path / "F" / "1" / "s" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x\n")
    keys = [log.key for log in find_logs(LocalStore(str(tmp_path)), parse_pathspec("F/1"))]
    assert keys == [
        "F/1/s/9/0.task_stdout.log",
        "F/1/s/9/1.task_stdout.log",
        "F/1/s/10/0.runtime_stdout.log",
        "F/1/s/10/0.task_stderr.log",
    ]


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 1 << 20])
def test_read_lines_streams_across_chunk_boundaries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    """Lines and their byte offsets come out the same whatever the chunk size."""
    monkeypatch.setattr(_stores, "CHUNK", chunk)
    data = b"one\n\ntwo three\nfour"
    (tmp_path / "k").write_bytes(data)
    store = LocalStore(str(tmp_path))
    assert list(read_lines(store, "k", 0)) == [
        (0, 4, b"one"),
        (4, 5, b""),
        (5, 15, b"two three"),
        (15, 19, b"four"),
    ]
    assert list(read_lines(store, "k", 5, final_partial=False)) == [(5, 15, b"two three")]
    assert list(read_lines(store, "k", 0, 9)) == [(0, 4, b"one"), (4, 5, b""), (5, 9, b"two ")]


def test_since_durations_and_dates() -> None:
    """--since takes 30m/12h/7d/2w ago or an ISO date (UTC without an offset)."""
    assert parse_since("30m", 10_000.0) == 10_000.0 - 1800
    assert parse_since("2d", 200_000.0) == 200_000.0 - 172_800
    assert parse_since("1970-01-02", 0) == 86_400
    assert parse_since("1970-01-01T01:00:00+01:00", 0) == 0
    with pytest.raises(BackfillError, match="--since 'soon'"):
        parse_since("soon", 0)


def test_checkpoints_advance_persist_and_reset(tmp_path: Path) -> None:
    """Offsets only grow, survive a new Checkpoints, and reset forgets the ones asked for."""
    one = Checkpoints(str(tmp_path))
    one.advance("F", "1", "/r/F/1/a/1/0.task_stdout.log", 10)
    one.advance("F", "1", "/r/F/1/a/1/0.task_stdout.log", 5)
    one.advance("F", "1", "/r/F/1/b/2/0.task_stdout.log", 7)
    one.save()
    saved = json.loads((tmp_path / "F" / "1.json").read_text())
    assert saved["files"] == {"/r/F/1/a/1/0.task_stdout.log": 10, "/r/F/1/b/2/0.task_stdout.log": 7}
    two = Checkpoints(str(tmp_path))
    assert two.offset("F", "1", "/r/F/1/a/1/0.task_stdout.log") == 10
    assert two.reset("F", "1", "/F/1/a/") == 1
    assert Checkpoints(str(tmp_path)).offset("F", "1", "/r/F/1/a/1/0.task_stdout.log") == 0
    assert two.reset("F", "1") == 1
    assert not (tmp_path / "F" / "1.json").exists()


def test_an_unreadable_checkpoint_names_the_fix(tmp_path: Path) -> None:
    """A corrupt checkpoint file is an error naming the file and how to start over."""
    (tmp_path / "F").mkdir()
    (tmp_path / "F" / "1.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"1\.json is unreadable: delete it"):
        Checkpoints(str(tmp_path)).offset("F", "1", "x")


def _record(uid: str, pathspec: str, attempt: int) -> LogRecord:
    attrs = {"metaflow.task.pathspec": pathspec, "metaflow.task.attempt": attempt}
    attrs["log.record.uid"] = uid  # type: ignore[assignment]
    return LogRecord(time_ns=1, observed_ns=2, body="x", attributes=attrs)


def test_ledger_entries_survive_encoding(tmp_path: Path) -> None:
    """The ids read back from an encoded request are the ids of its records."""
    batches = [
        ResourceLogs({"service.name": "m"}, Scope("s"), [_record("a", "F/1/s/2", 0)]),
        ResourceLogs({}, Scope("s"), [_record("b", "F/1/s/2", 1), _record("c", "F/1/t/3", 0)]),
    ]
    entries = _ledger.entries_of(batches)
    assert entries == [("F/1/s/2", 0, "a", 1), ("F/1/s/2", 1, "b", 1), ("F/1/t/3", 0, "c", 1)]
    assert _ledger.entries_in_request(encode_logs(batches)) == entries
    assert _ledger.entries_in_request(b"\x0a\xff") == []
    _ledger.record(str(tmp_path), entries)
    _ledger.record(str(tmp_path), [("F/1/s/2", 0, "d", 1), ("../../x/y", 0, "e", 1)])
    assert _ledger.delivered(str(tmp_path), "F/1/s/2", 0).ids == {"a", "d"}
    assert _ledger.delivered(str(tmp_path), "F/1/s/2", 1).ids == {"b"}
    assert not list(tmp_path.parent.glob("x"))


PREFIX = "0123abcd-0123-4123-8123-"


def test_a_streams_sequential_ids_are_one_ledger_line_however_they_come(tmp_path: Path) -> None:
    """A relay's chunk is one entry and one ledger line, however many lines it has; the same
    ids decoded one by one from a spooled request compact to the same line; the read-back
    holds each id, and nothing around them."""
    block = make_block(
        shared_attributes({"metaflow.task.pathspec": "F/1/s/2"}, "stdout", "task"),
        b"",
        b"",
        1,
        [b"x"] * 1000,
        5,
        (PREFIX, 16),
        ("F/1/s/2", 0),
    )
    batches = [ResourceLogs({}, Scope("s"), [], [block])]
    entries = _ledger.entries_of(batches)
    assert entries == [("F/1/s/2", 0, f"{PREFIX}{16:012x}", 1000)]
    _ledger.record(str(tmp_path / "a"), entries)
    decoded = _ledger.entries_in_request(encode_logs(batches))
    assert len(decoded) == 1000
    _ledger.record(str(tmp_path / "b"), [(p, n, uid, 1) for p, n, uid, _ in decoded])
    for folder in ("a", "b"):
        text = (tmp_path / folder / "F/1/s/2/0.uids").read_text()
        assert text == f"{PREFIX}{16:012x}+1000\n", text
        ids = _ledger.delivered(str(tmp_path / folder), "F/1/s/2", 0)
        assert f"{PREFIX}{16:012x}" in ids and f"{PREFIX}{1015:012x}" in ids
        assert f"{PREFIX}{15:012x}" not in ids and f"{PREFIX}{1016:012x}" not in ids
        assert len(ids) == 1000


def test_line_ids_add_only_what_is_new() -> None:
    """Ranges that overlap what is known give back only their new parts, and merge."""
    ids = _ledger.LineIds()
    assert ids.add_range(PREFIX, 10, 10) == [(10, 20)]
    assert ids.add_range(PREFIX, 20, 5) == [(20, 25)]
    assert ids.add_range(PREFIX, 0, 5) == [(0, 5)]
    assert ids.add_range(PREFIX, 3, 30) == [(5, 10), (25, 33)]
    assert ids.add_range(PREFIX, 0, 33) == []
    assert ids.ranges[PREFIX] == [[0, 33]] and len(ids) == 33
    assert ids.add("random-id") and not ids.add("random-id")
    assert not ids.add(f"{PREFIX}{7:012x}")
    other = _ledger.LineIds()
    other.add_range(PREFIX, 40, 2)
    ids.update(other)
    assert ids.ranges[PREFIX] == [[0, 33], [40, 42]]


def test_run_trace_is_remembered(tmp_path: Path) -> None:
    """The runtime's note of a run's trace id reads back; a missing one is None."""
    trace_id = root_context("F", "1").trace_id
    _ledger.note_run_trace(str(tmp_path), "F", "1", trace_id)
    assert _ledger.run_trace(str(tmp_path), "F", "1") == trace_id
    assert _ledger.run_trace(str(tmp_path), "F", "2") is None


def test_attempt_span_ids_differ_per_attempt_and_trace() -> None:
    """An attempt's span id depends on its trace, pathspec and attempt, and is never zero."""
    a, b = root_context("F", "1").trace_id, root_context("F", "2").trace_id
    ids = {attempt_span_id(t, p, n) for t in (a, b) for p in ("F/1/s/2", "F/1/s/3") for n in (0, 1)}
    assert len(ids) == 8 and all(len(i) == 8 and any(i) for i in ids)
    assert attempt_span_id(a, "F/1/s/2", 0) == attempt_span_id(a, "F/1/s/2", 0)


def test_stores_refuse_unusable_roots(tmp_path: Path) -> None:
    """An unknown datastore, a missing folder, a bucketless root: one line each naming the fix."""
    with pytest.raises(StoreError, match="is not one of local, s3, gs, azure"):
        open_store("hdfs", "x")
    with pytest.raises(StoreError, match="is not a folder"):
        open_store("local", str(tmp_path / "nope"))
    with pytest.raises(StoreError, match="names no bucket"):
        open_store("s3", "s3://")


def test_a_missing_extra_names_the_pip_install() -> None:
    """A cloud datastore without its SDK says which extra to install."""
    assert 'pip install "mfotel[gs]"' in str(_stores.missing_extra("gs"))


def test_followed_files_give_each_line_once_as_it_is_finished(tmp_path: Path) -> None:
    """A container attempt's files, read as they grow: lines end at \\n only (a \\r stays in
    the text, as in Metaflow's reader), a line being written waits, and the final read goes
    to the end however long the rest is."""
    from mfotel.logs._persisted import READ_CHUNK, Sweeper

    out, err = tmp_path / "mflog_stdout", tmp_path / "mflog_stderr"
    head = "[MFLOG|0|2026-12-06T10:00:00.000001Z|task|{}]"
    out.write_bytes((head.format("u1") + "10%\r20%\r30%\n" + head.format("u2") + "hal").encode())
    err.write_bytes(b"")
    sweeper = Sweeper()
    ctx = {"sid": "s1"}
    sweeper.follow(ctx, [str(out), str(err)])
    first = [line for _, lines, _ in sweeper.due() for line in lines]
    assert [(uid, text) for uid, _, _, _, text in first] == [("u1", "10%\r20%\r30%")]
    big = "x" * (READ_CHUNK + 10)
    with out.open("ab") as handle:
        handle.write(b"f done\n" + (head.format("u3") + big + "\n").encode())
    with err.open("ab") as handle:
        handle.write((head.format("u4") + "oops\n").encode())
    rest = [line for _, lines, _ in sweeper.due(final=True) for line in lines]
    assert [(uid, stream) for uid, _, stream, _, _ in rest] == [
        ("u2", "stdout"),
        ("u3", "stdout"),
        ("u4", "stderr"),
    ]
    assert rest[0][4] == "half done" and len(rest[1][4]) == len(big)
    assert list(sweeper.due(final=True)) == []
