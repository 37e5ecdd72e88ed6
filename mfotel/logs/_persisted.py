"""Reading back the logs Metaflow persisted for a task attempt.

In a local run the runtime itself writes a few lines into a task's log (``Task failed.``,
``[KILLED BY ORCHESTRATOR]``, anything printed before mfotel took over the task's output).
After an attempt ends the agent reads the attempt's persisted files (local datastore) and
exports the lines it has not seen, so every persisted line becomes exactly one record.

In a container (Batch, Kubernetes, Argo, Step Functions, Airflow) Metaflow's own tee writes
every line of the task into ``$MFLOG_STDOUT`` / ``$MFLOG_STDERR`` before uploading them as the
task's logs; there the attempt's own agent follows those two files while the attempt runs
(every ``FOLLOW_S``), and reads them to the end when the attempt is over (the task has waited
for Metaflow's tee by then; a killed task's tee gets a moment to finish), so the records
carry Metaflow's line ids and timestamps, the same as a later backfill of the uploaded logs,
and a long step's lines arrive while it runs.
"""

from __future__ import annotations

import os
import time
from collections.abc import Container, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from mfotel.logs._mflog import parse

LOG_FILES = (
    ("runtime", "stdout"),
    ("runtime", "stderr"),
    ("task", "stdout"),
    ("task", "stderr"),
)
FIRST_TRY_S = 0.3
GIVE_UP_S = 15.0
FOLLOW_S = 0.25
READ_CHUNK = 256 * 1024
TICK_BYTES = 16 * 1024 * 1024  # a followed file's most a tick: bounded, and ahead of any task


def attempt_folder(root: str, ctx: Mapping[str, Any]) -> str | None:
    res, attrs = ctx.get("res") or {}, ctx.get("attrs") or {}
    parts = (
        res.get("metaflow.flow.name"),
        res.get("metaflow.run.id"),
        attrs.get("metaflow.step.name"),
        attrs.get("metaflow.task.id"),
    )
    if not all(isinstance(p, str) and p for p in parts):
        return None
    return os.path.join(root, *parts)  # type: ignore[arg-type]


def attempt_files(folder: str, attempt: int) -> list[tuple[str, str]]:
    """(path, stream) of the attempt's persisted logs in a local datastore task folder."""
    return [
        (os.path.join(folder, f"{attempt}.{prefix}_{stream}.log"), stream)
        for prefix, stream in LOG_FILES
    ]


def read_lines(
    folder: str, attempt: int, skip: Container[str] = ()
) -> Iterator[tuple[str, int, str, str, str]]:
    """(uid, time_ns, stream, source, text) of every valid mflog line of the attempt's logs,
    except those whose id is in ``skip`` (their timestamps are never parsed)."""
    return read_files(attempt_files(folder, attempt), skip)


def read_files(
    files: list[tuple[str, str]], skip: Container[str] = ()
) -> Iterator[tuple[str, int, str, str, str]]:
    """:func:`read_lines` over explicit (path, stream) files; missing files are skipped."""
    for path, stream in files:
        if not os.path.exists(path):
            continue
        with open(path, "rb") as handle:
            for raw in handle:
                if skip and _uid_of(raw) in skip:
                    continue
                parsed = parse(raw.rstrip(b"\n"))
                if parsed is None:
                    continue
                text = parsed.text[:-1] if parsed.text.endswith(b"\r") else parsed.text
                yield (
                    parsed.uid,
                    parsed.time_ns,
                    stream,
                    parsed.source,
                    text.decode("utf-8", "replace"),
                )


def _uid_of(raw: bytes) -> str:
    """The id field of an mflog line, cheaply (no timestamp parsing); "" if there is none."""
    head, sep, _ = raw.partition(b"]")
    if not sep:
        return ""
    return head.rsplit(b"|", 1)[-1].decode("ascii", "replace")


@dataclass
class _Pending:
    ctx: Mapping[str, Any]
    files: list[tuple[str, str]]  # read, in this order
    watched: list[tuple[str, str]]  # settled once these stop growing
    first_try: float
    give_up: float
    sizes: tuple[int, ...] | None = None


@dataclass
class _Followed:
    """Files a running attempt's lines are being written to, read as they grow. Lines end at
    ``\n`` only (a ``\r`` is part of a line, as in Metaflow's own reader); a line not yet
    finished waits in ``partial`` until it is."""

    ctx: Mapping[str, Any]
    files: list[tuple[str, str]]
    offsets: list[int]
    partial: list[bytes]
    next_read: float = 0.0

    def read_new(self, to_end: bool = False) -> Iterator[list[tuple[str, int, str, str, str]]]:
        """The lines finished since the last read, a chunk's worth at a time (so that a chatty
        task's backlog is never all in memory at once): up to TICK_BYTES a file, or all."""
        for index, (path, stream) in enumerate(self.files):
            budget = TICK_BYTES
            try:
                with open(path, "rb") as handle:
                    handle.seek(self.offsets[index])
                    while to_end or budget > 0:
                        data = handle.read(READ_CHUNK)
                        if not data:
                            break
                        budget -= len(data)
                        self.offsets[index] += len(data)
                        pieces = (self.partial[index] + data).split(b"\n")
                        self.partial[index] = pieces.pop()
                        lines = []
                        for raw in pieces:
                            line = _parsed(raw, stream)
                            if line is not None:
                                lines.append(line)
                        if lines:
                            yield lines
            except OSError:
                continue


def _parsed(raw: bytes, stream: str) -> tuple[str, int, str, str, str] | None:
    parsed = parse(raw)
    if parsed is None:
        return None
    text = parsed.text[:-1] if parsed.text.endswith(b"\r") else parsed.text
    return (parsed.uid, parsed.time_ns, stream, parsed.source, text.decode("utf-8", "replace"))


class Sweeper:
    """Reads an attempt's persisted logs: once written (local runs), or as they are written
    (containers)."""

    def __init__(self) -> None:
        self._pending: dict[str, _Pending] = {}
        self._roots: dict[str, str] = {}
        self._followed: dict[str, _Followed] = {}

    def remember_root(self, sid: str, datastore: Any) -> None:
        if isinstance(datastore, list) and len(datastore) == 2 and datastore[0] == "local":
            self._roots[sid] = str(datastore[1])

    def follow(self, ctx: Mapping[str, Any], mflog: Any) -> None:
        """Follow the attempt's ``$MFLOG_STDOUT`` / ``$MFLOG_STDERR`` (Metaflow's capture)."""
        if isinstance(mflog, list) and len(mflog) == 2 and all(isinstance(p, str) for p in mflog):
            sid = str(ctx.get("sid"))
            files = [(mflog[0], "stdout"), (mflog[1], "stderr")]
            self._followed[sid] = _Followed(ctx, files, [0, 0], [b"", b""])

    def schedule(self, ctx: Mapping[str, Any]) -> None:
        sid = str(ctx.get("sid"))
        if sid in self._pending or sid in self._followed:
            return  # followed files are read to the end when the attempt's agent finishes
        now = time.monotonic()
        root = self._roots.get(sid)
        folder = attempt_folder(root, ctx) if root else None
        if folder is None:
            return
        attempt = int((ctx.get("attrs") or {}).get("metaflow.task.attempt", 0))
        files = attempt_files(folder, attempt)
        watched = files[:2]  # the runtime's own two: it writes them last
        self._pending[sid] = _Pending(ctx, files, watched, now + FIRST_TRY_S, now + GIVE_UP_S)

    def due(
        self, final: bool = False, seen: Any = None
    ) -> Iterator[tuple[Mapping[str, Any], list[Any], bool]]:
        """(ctx, lines, fresh) of attempts with lines to export: ``fresh`` when they come from
        followed files, which nothing else reads (so no other path can have sent them)."""
        now = time.monotonic()
        for sid, followed in list(self._followed.items()):
            if final:
                # The attempt's task said it is done (after Metaflow's tee wrote its last
                # lines), or it is gone: read to the end.
                del self._followed[sid]
                for lines in followed.read_new(to_end=True):
                    yield followed.ctx, lines, True
            elif now >= followed.next_read:
                followed.next_read = now + FOLLOW_S
                for lines in followed.read_new():
                    yield followed.ctx, lines, True
        for sid, pending in list(self._pending.items()):
            if not final and now < pending.first_try:
                continue
            sizes = _sizes(pending.watched)
            # Written, and no longer growing since the last look: the writer is done with it.
            settled = sizes is not None and sizes == pending.sizes
            pending.sizes = sizes
            if settled or final or now >= pending.give_up:
                del self._pending[sid]
                skip = seen(pending.ctx) if seen is not None else ()
                yield pending.ctx, list(read_files(pending.files, skip)), False

    def settle(self, timeout_s: float) -> None:
        """Wait (at most ``timeout_s``) until followed files stop growing: a task that was
        killed leaves Metaflow's tee a moment to write what was still in its pipes."""
        deadline = time.monotonic() + timeout_s
        last: list[tuple[int, ...] | None] = []
        while self._followed and time.monotonic() < deadline:
            sizes = [_sizes(f.files) for f in self._followed.values()]
            if sizes == last:
                return
            last = sizes
            time.sleep(0.1)


def _sizes(files: list[tuple[str, str]]) -> tuple[int, ...] | None:
    try:
        return tuple(os.path.getsize(path) for path, _ in files)
    except OSError:
        return None
