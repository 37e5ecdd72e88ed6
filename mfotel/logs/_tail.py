"""``mfotel tail``: follow a task's logs in its datastore as Metaflow persists them.

Remote tasks upload their logs every few seconds (locally the runtime writes them when the
task ends); the tail reads each log from where it stopped, prints whole lines as
``python flow.py logs`` does, and, with export on, sends them the way ``mfotel backfill``
does (same checkpoints, so a later backfill sends nothing twice). It follows the newest
attempt, moves on to a retry when one appears, and ends once the attempt's ``DONE.lock`` is
there and its logs stopped growing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from mfotel.logs._backfill import Backfill, read_lines
from mfotel.logs._layout import LogFile, Pathspec, find_logs
from mfotel.logs._mflog import parse
from mfotel.logs._stores import LogStore

Echo = Callable[[str, str, int], None]  # (text, stream, time_ns)


class TailError(Exception):
    """Nothing to follow; the message names the fix."""


@dataclass
class TailResult:
    attempt: int = 0
    lines: int = 0
    exported: int = 0
    errors: list[str] = field(default_factory=list)


def tail(
    store: LogStore,
    spec: Pathspec,
    echo: Echo,
    interval_s: float = 1.0,
    wait_s: float = 60.0,
    follow: bool = True,
    exporter: Backfill | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> TailResult:
    if spec.task is None:
        raise TailError(f"pathspec {spec} names no task: use Flow/run/step/task")
    result = TailResult()
    offsets: dict[str, int] = {}
    deadline = time.monotonic() + wait_s
    last_sizes: dict[str, int] | None = None
    while True:
        done_attempts: set[str] = set()
        logs = list(find_logs(store, spec, done=done_attempts))
        if not logs:
            if not follow or time.monotonic() >= deadline:
                raise TailError(
                    f"no persisted logs for {spec} in {store.root}: check the pathspec and "
                    "--datastore-root (a task that has not started yet has none)"
                )
            sleep(interval_s)
            continue
        attempt = max(log.attempt for log in logs)
        current = [log for log in logs if log.attempt == attempt]
        result.attempt = attempt
        done = f"{spec}/{attempt}" in done_attempts
        sizes = {log.key: log.size for log in current}
        settled = done and sizes == last_sizes
        final = settled or not follow
        for log in current:
            result.lines += _print_new(store, log, offsets, echo, final)
        if exporter is not None:
            exporter.final_partial = final
            exporter.done = done_attempts
            sent = exporter.run(current)
            result.exported += sent.lines
            if not sent.ok:
                result.errors.append(sent.error)
        if final:
            return result
        last_sizes = sizes
        sleep(interval_s)


def _print_new(
    store: LogStore, log: LogFile, offsets: dict[str, int], echo: Echo, final: bool
) -> int:
    start = offsets.get(log.key, 0)
    if start > log.size:
        start = 0
    printed = 0
    for _, end, raw in read_lines(store, log.key, start, log.size, final_partial=final):
        offsets[log.key] = end
        parsed = None if log.legacy else parse(raw)
        text = parsed.text if parsed is not None else raw
        echo(
            text.decode("utf-8", "replace").rstrip("\r"),
            log.stream,
            parsed.time_ns if parsed else 0,
        )
        printed += 1
    return printed
