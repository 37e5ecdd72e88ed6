"""The ledger of log lines the live path delivered, so a backfill sends only the rest.

When a collector accepts a request of log records, the agent (or ``mfotel replay``, for a
spooled request) appends each record's ``log.record.uid`` to one file per task attempt:
``<state>/delivered/<Flow>/<run>/<step>/<task>/<attempt>.uids``, one id a line. Those ids are
the ids of the lines in Metaflow's persisted log, so ``mfotel backfill`` skips exactly the
lines that already arrived: live and backfill together send every line once.

The runtime also writes the run's trace id there (``<Flow>/<run>/trace``), so a backfill of
the run joins its trace even when a ``TRACEPARENT`` put the run inside another trace.

Appends of a few kilobytes with ``O_APPEND`` are whole on a local filesystem, so the agent and
a replay can write one file at the same time. Deleting the folder makes a backfill send
everything again.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from mfotel.logs._mflog import sequential_id, split_sequential

if TYPE_CHECKING:  # the runtime imports this module; it needs no dataclasses
    from mfotel._internal.model import ResourceLogs

# (task pathspec, attempt, line id, count): ``count`` lines from that id on, whose ids are a
# stream's prefix and consecutive sequence numbers (see mfotel.logs._lines), or 1.
Entry = tuple[str, int, str, int]


class LineIds:
    """A set of line ids that holds a stream's sequential ids as ranges: a chatty task's
    million lines cost a few numbers, not a million strings. Other ids are kept as they are."""

    __slots__ = ("ids", "ranges")

    def __init__(self) -> None:
        self.ids: set[str] = set()
        self.ranges: dict[str, list[list[int]]] = {}  # prefix -> sorted, disjoint [start, end)

    def __contains__(self, uid: object) -> bool:
        if uid in self.ids:
            return True
        if not self.ranges or not isinstance(uid, str):
            return False
        split = split_sequential(uid)
        spans = self.ranges.get(split[0]) if split is not None else None
        if split is None or spans is None:
            return False
        return any(start <= split[1] < end for start, end in spans)

    def __iter__(self) -> Iterator[str]:
        yield from self.ids
        for prefix, spans in self.ranges.items():
            for start, end in spans:
                for seq in range(start, end):
                    yield sequential_id(prefix, seq)

    def __bool__(self) -> bool:
        return bool(self.ids or self.ranges)

    def __len__(self) -> int:
        return len(self.ids) + sum(e - s for spans in self.ranges.values() for s, e in spans)

    def add(self, uid: str) -> bool:
        """Add one id; False when it was already here."""
        if uid in self:
            return False
        self.ids.add(uid)
        return True

    def add_range(self, prefix: str, first: int, count: int) -> list[tuple[int, int]]:
        """Add ``count`` sequential ids from ``first`` on; the (start, end) parts that were
        new (all of it, nearly always: a stream's chunks arrive in order)."""
        spans = self.ranges.setdefault(prefix, [])
        end = first + count
        if count <= 0:
            return []
        if not spans or spans[-1][1] <= first:
            if spans and spans[-1][1] == first:
                spans[-1][1] = end
            else:
                spans.append([first, end])
            return [(first, end)]
        new: list[tuple[int, int]] = []
        at = first
        for start, stop in spans:
            if stop <= at:
                continue
            if start >= end:
                break
            if start > at:
                new.append((at, start))
            at = max(at, stop)
            if at >= end:
                break
        if at < end:
            new.append((at, end))
        merged = sorted([*map(tuple, spans), *new])
        spans[:] = []
        for start, stop in merged:
            if spans and spans[-1][1] >= start:
                spans[-1][1] = max(spans[-1][1], stop)
            else:
                spans.append([start, stop])
        return new

    def update(self, other: LineIds) -> None:
        self.ids |= other.ids
        for prefix, spans in other.ranges.items():
            for start, end in spans:
                self.add_range(prefix, start, end - start)

    def add_entry(self, uid: str, count: int) -> None:
        """An entry of the ledger: one id, or ``count`` sequential ids from ``uid`` on."""
        split = split_sequential(uid) if count > 1 else None
        if split is not None:
            self.add_range(split[0], split[1], count)
        elif count == 1:
            self.ids.add(uid)


def _safe(parts: Sequence[str]) -> bool:
    return all(p and p not in (".", "..") and "/" not in p and "\0" not in p for p in parts)


def ledger_path(folder: str, pathspec: str, attempt: int) -> str | None:
    parts = pathspec.split("/")
    if len(parts) != 4 or not _safe(parts):
        return None
    return os.path.join(folder, *parts, f"{int(attempt)}.uids")


def note_run_trace(folder: str, flow: str, run_id: str, trace_id: bytes) -> None:
    """Remember which trace a run's telemetry went to (never raises)."""
    if not _safe((flow, run_id)):
        return
    path = os.path.join(folder, flow, run_id, "trace")
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="ascii") as handle:
            handle.write(trace_id.hex() + "\n")
    except OSError:
        pass


def run_trace(folder: str, flow: str, run_id: str) -> bytes | None:
    """The trace id the live path used for this run, or None when it did not trace it here."""
    if not _safe((flow, run_id)):
        return None
    try:
        with open(os.path.join(folder, flow, run_id, "trace"), encoding="ascii") as handle:
            trace_id = bytes.fromhex(handle.read().strip())
    except (OSError, ValueError):
        return None
    return trace_id if len(trace_id) == 16 and any(trace_id) else None


def entries_of(batches: Iterable[ResourceLogs]) -> list[Entry]:
    """The ledger entries of an encoded request's records and blocks (those of tasks)."""
    out: list[Entry] = []
    for batch in batches:
        for record in batch.records:
            attrs = record.attributes
            pathspec = attrs.get("metaflow.task.pathspec")
            uid = attrs.get("log.record.uid")
            if isinstance(pathspec, str) and isinstance(uid, str):
                attempt = attrs.get("metaflow.task.attempt")
                out.append((pathspec, attempt if isinstance(attempt, int) else 0, uid, 1))
        for block in batch.blocks:
            if block.attempt is None:
                continue
            pathspec, number = block.attempt
            if isinstance(block.uids, tuple):
                if block.texts:
                    first = sequential_id(*block.uids)
                    out.append((pathspec, number, first, len(block.texts)))
            else:
                out.extend((pathspec, number, uid, 1) for uid in block.uids)
    return out


def _ledger_lines(data: bytes) -> Iterator[tuple[str, int]]:
    """(id, count) of each line of a ledger file: an id, or ``<first id>+<count>``."""
    for raw in data.split(b"\n"):
        line = raw.decode("utf-8", "replace")
        if not line:
            continue
        uid, plus, count = line.rpartition("+")
        if plus and count.isdigit():
            yield uid, int(count)
        else:
            yield line, 1


def entries_in_file(pathspec: str, attempt: int, data: bytes) -> list[Entry]:
    """A ledger file's lines as entries of that attempt."""
    return [(pathspec, attempt, uid, count) for uid, count in _ledger_lines(data)]


def _compact(items: list[tuple[str, int]]) -> list[str]:
    """Ledger lines: runs of sequential ids (one stream's consecutive lines) as one range."""
    lines: list[str] = []
    run_prefix, run_first, run_end, run_uid = "", -1, -1, ""
    for uid, count in items:
        prefix, seq = split_sequential(uid) or ("", -1)
        if seq >= 0 and prefix == run_prefix and seq == run_end:
            run_end += count
            continue
        if run_uid:
            n = run_end - run_first
            lines.append(run_uid if n == 1 else f"{run_uid}+{n}")
        if seq >= 0:
            run_prefix, run_first, run_end, run_uid = prefix, seq, seq + count, uid
        else:
            lines.append(uid)
            run_prefix, run_first, run_end, run_uid = "", -1, -1, ""
    if run_uid:
        n = run_end - run_first
        lines.append(run_uid if n == 1 else f"{run_uid}+{n}")
    return lines


def record(folder: str, entries: Iterable[Entry]) -> None:
    """Append ``entries`` to their attempts' files. Never raises: the ledger is an
    optimisation for backfill, and losing it costs duplicates, never lost lines."""
    grouped: dict[tuple[str, int], list[tuple[str, int]]] = {}
    for pathspec, attempt, uid, count in entries:
        grouped.setdefault((pathspec, attempt), []).append((uid, count))
    for (pathspec, attempt), items in grouped.items():
        path = ledger_path(folder, pathspec, attempt)
        if path is None:
            continue
        data = ("\n".join(_compact(items)) + "\n").encode("utf-8", "replace")
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
        except OSError:
            pass


def parse_ids(data: bytes, into: LineIds | None = None) -> LineIds:
    """A ledger file's ids: one a line, or ``<first id>+<count>`` for sequential ones."""
    ids = LineIds() if into is None else into
    for uid, count in _ledger_lines(data):
        ids.add_entry(uid, count)
    return ids


def delivered(folder: str, pathspec: str, attempt: int) -> LineIds:
    """The line ids of this attempt that a collector accepted live (empty if none known)."""
    path = ledger_path(folder, pathspec, attempt)
    if path is None:
        return LineIds()
    try:
        with open(path, "rb") as handle:
            return parse_ids(handle.read())
    except OSError:
        return LineIds()


REMOTE_PREFIX = ".mfotel/delivered"


def load_remote(
    store: Any, flow: str, run_id: str
) -> tuple[dict[tuple[str, int], LineIds], bytes | None]:
    """What containers of this run handed to the datastore (see ``handoff``): the ids their
    collectors accepted, per (task pathspec, attempt), and the run's trace id if they noted
    one. Several files may name one attempt (the container's, a replay's): their union."""
    found: dict[tuple[str, int], LineIds] = {}
    trace_id: bytes | None = None
    if not _safe((flow, run_id)):
        return found, None
    prefix = f"{REMOTE_PREFIX}/{flow}/{run_id}/"
    for info in store.list(prefix):
        rest = info.key[len(prefix) :].split("/")
        data = b"".join(store.read(info.key, 0))
        if rest == ["trace"]:
            try:
                trace_id = bytes.fromhex(data.decode("ascii").strip()) or None
            except ValueError:
                pass
            continue
        if len(rest) != 3 or not rest[2].endswith(".uids"):
            continue
        attempt_text = rest[2].split(".", 1)[0]
        if not attempt_text.isdigit():
            continue
        key = (f"{flow}/{run_id}/{rest[0]}/{rest[1]}", int(attempt_text))
        parse_ids(data, found.setdefault(key, LineIds()))
    return found, trace_id


def entries_in_request(payload: bytes) -> list[Entry]:
    """Ledger entries of an encoded ExportLogsServiceRequest (for spooled requests, whose
    records are gone by the time they are sent). Malformed input gives what was readable."""
    from mfotel._internal.otlp.wire import fields

    out: list[Entry] = []
    try:
        for number, _, resource_logs in fields(payload):
            if number != 1 or not isinstance(resource_logs, bytes):
                continue
            for sub, _, scope_logs in fields(resource_logs):
                if sub != 2 or not isinstance(scope_logs, bytes):
                    continue
                for item, _, log in fields(scope_logs):
                    if item == 2 and isinstance(log, bytes):
                        entry = _entry_of_log(log)
                        if entry is not None:
                            out.append(entry)
    except ValueError:
        pass
    return out


def _entry_of_log(log: bytes) -> Entry | None:
    from mfotel._internal.otlp.wire import fields

    wanted: dict[str, str | int] = {}
    for number, _, value in fields(log):
        if number != 6 or not isinstance(value, bytes):  # LogRecord.attributes
            continue
        key = ""
        any_value: bytes = b""
        for kv_number, _, kv_value in fields(value):
            if kv_number == 1 and isinstance(kv_value, bytes):
                key = kv_value.decode("utf-8", "replace")
            elif kv_number == 2 and isinstance(kv_value, bytes):
                any_value = kv_value
        if key not in ("metaflow.task.pathspec", "log.record.uid", "metaflow.task.attempt"):
            continue
        for v_number, _, v in fields(any_value):
            if v_number == 1 and isinstance(v, bytes):
                wanted[key] = v.decode("utf-8", "replace")
            elif v_number == 3 and isinstance(v, int):
                wanted[key] = v
    pathspec, uid = wanted.get("metaflow.task.pathspec"), wanted.get("log.record.uid")
    if not isinstance(pathspec, str) or not isinstance(uid, str):
        return None
    attempt = wanted.get("metaflow.task.attempt", 0)
    return pathspec, attempt if isinstance(attempt, int) else 0, uid, 1
