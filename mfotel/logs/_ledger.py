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
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the runtime imports this module; it needs no dataclasses
    from mfotel._internal.model import ResourceLogs

Entry = tuple[str, int, str]  # (task pathspec, attempt, line id)


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
    """The ledger entries of an encoded request's records (those of tasks, with an id)."""
    out: list[Entry] = []
    for batch in batches:
        for record in batch.records:
            attrs = record.attributes
            pathspec = attrs.get("metaflow.task.pathspec")
            uid = attrs.get("log.record.uid")
            if isinstance(pathspec, str) and isinstance(uid, str):
                attempt = attrs.get("metaflow.task.attempt")
                out.append((pathspec, attempt if isinstance(attempt, int) else 0, uid))
    return out


def record(folder: str, entries: Iterable[Entry]) -> None:
    """Append ``entries`` to their attempts' files. Never raises: the ledger is an
    optimisation for backfill, and losing it costs duplicates, never lost lines."""
    grouped: dict[tuple[str, int], list[str]] = {}
    for pathspec, attempt, uid in entries:
        grouped.setdefault((pathspec, attempt), []).append(uid)
    for (pathspec, attempt), uids in grouped.items():
        path = ledger_path(folder, pathspec, attempt)
        if path is None:
            continue
        data = ("\n".join(uids) + "\n").encode("utf-8", "replace")
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
        except OSError:
            pass


def delivered(folder: str, pathspec: str, attempt: int) -> set[str]:
    """The line ids of this attempt that a collector accepted live (empty if none known)."""
    path = ledger_path(folder, pathspec, attempt)
    if path is None:
        return set()
    try:
        with open(path, "rb") as handle:
            return {line.decode("utf-8", "replace") for line in handle.read().split(b"\n") if line}
    except OSError:
        return set()


REMOTE_PREFIX = ".mfotel/delivered"


def load_remote(
    store: Any, flow: str, run_id: str
) -> tuple[dict[tuple[str, int], set[str]], bytes | None]:
    """What containers of this run handed to the datastore (see ``handoff``): the ids their
    collectors accepted, per (task pathspec, attempt), and the run's trace id if they noted
    one. Several files may name one attempt (the container's, a replay's): their union."""
    found: dict[tuple[str, int], set[str]] = {}
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
        ids = found.setdefault(key, set())
        ids.update(line.decode("utf-8", "replace") for line in data.split(b"\n") if line)
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
    return pathspec, attempt if isinstance(attempt, int) else 0, uid
