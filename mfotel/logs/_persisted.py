"""Reading back the logs Metaflow persisted for a task attempt (local datastore).

In a local run the runtime itself writes a few lines into a task's log (``Task failed.``,
``[KILLED BY ORCHESTRATOR]``, anything printed before mfotel took over the task's output).
After an attempt ends the agent reads the attempt's persisted files and exports the lines it
has not seen, so every persisted line becomes exactly one record.
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


def read_lines(
    folder: str, attempt: int, skip: Container[str] = ()
) -> Iterator[tuple[str, int, str, str, str]]:
    """(uid, time_ns, stream, source, text) of every valid mflog line of the attempt's logs,
    except those whose id is in ``skip`` (their timestamps are never parsed)."""
    for prefix, stream in LOG_FILES:
        path = os.path.join(folder, f"{attempt}.{prefix}_{stream}.log")
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
    folder: str
    attempt: int
    first_try: float
    give_up: float
    sizes: tuple[int, int] | None = None


class Sweeper:
    """Schedules reading an attempt's persisted logs once the runtime has written them."""

    def __init__(self) -> None:
        self._pending: dict[str, _Pending] = {}
        self._roots: dict[str, str] = {}

    def remember_root(self, sid: str, datastore: Any) -> None:
        if isinstance(datastore, list) and len(datastore) == 2 and datastore[0] == "local":
            self._roots[sid] = str(datastore[1])

    def schedule(self, ctx: Mapping[str, Any]) -> None:
        sid = str(ctx.get("sid"))
        root = self._roots.get(sid)
        folder = attempt_folder(root, ctx) if root else None
        if folder is None or sid in self._pending:
            return
        attempt = int((ctx.get("attrs") or {}).get("metaflow.task.attempt", 0))
        now = time.monotonic()
        self._pending[sid] = _Pending(ctx, folder, attempt, now + FIRST_TRY_S, now + GIVE_UP_S)

    def due(
        self, final: bool = False, seen: Any = None
    ) -> Iterator[tuple[Mapping[str, Any], list[Any]]]:
        now = time.monotonic()
        for sid, pending in list(self._pending.items()):
            if not final and now < pending.first_try:
                continue
            stdout = os.path.join(pending.folder, f"{pending.attempt}.runtime_stdout.log")
            stderr = os.path.join(pending.folder, f"{pending.attempt}.runtime_stderr.log")
            try:
                sizes: tuple[int, int] | None = (os.path.getsize(stdout), os.path.getsize(stderr))
            except OSError:
                sizes = None
            # Written, and no longer growing since the last look: the runtime is done with it.
            settled = sizes is not None and sizes == pending.sizes
            pending.sizes = sizes
            if settled or final or now >= pending.give_up:
                del self._pending[sid]
                skip = seen(pending.ctx) if seen is not None else ()
                yield pending.ctx, list(read_lines(pending.folder, pending.attempt, skip))
