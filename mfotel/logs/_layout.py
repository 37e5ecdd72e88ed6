"""Where Metaflow puts a task's logs in its datastore, and which ones a pathspec names.

Every attempt of a task has up to four logs below the datastore root, in the task's folder
``<Flow>/<run>/<step>/<task>/``: ``<attempt>.runtime_stdout.log``, ``…runtime_stderr.log``
(what the runtime wrote; on a local run, everything), and ``<attempt>.task_stdout.log``,
``…task_stderr.log`` (what the task wrote itself, on remote runs). Metaflow before mflog
(< 2.2) wrote one plain-text ``<attempt>.stdout.log`` / ``<attempt>.stderr.log`` instead.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from mfotel.logs._stores import LogStore

_NAME = re.compile(
    r"^(?P<attempt>\d+)\.(?:(?P<source>runtime|task)_)?(?P<stream>stdout|stderr)\.log$"
)
_FLOW = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PART = re.compile(r"^[^/\s]+$")


class PathspecError(ValueError):
    """A pathspec that is not ``Flow[/run[/step[/task]]]``; the message names the fix."""


@dataclass(frozen=True)
class Pathspec:
    flow: str
    run: str | None = None
    step: str | None = None
    task: str | None = None

    def __str__(self) -> str:
        return "/".join(p for p in (self.flow, self.run, self.step, self.task) if p)

    @property
    def prefix(self) -> str:
        """The folder below the datastore root that holds everything this pathspec names."""
        return str(self) + "/"


def parse_pathspec(text: str) -> Pathspec:
    parts = text.strip().strip("/").split("/")
    if not parts or len(parts) > 4 or not all(parts):
        raise PathspecError(
            f"pathspec {text!r} is not Flow/run, Flow/run/step or Flow/run/step/task "
            "(for example ProbeFlow/1795347341629497/fan/3)"
        )
    if not _FLOW.match(parts[0]):
        raise PathspecError(
            f"pathspec {text!r}: {parts[0]!r} is not a flow name (a Python class name, "
            "e.g. ProbeFlow)"
        )
    for part in parts[1:]:
        if not _PART.match(part) or part in (".", ".."):
            raise PathspecError(f"pathspec {text!r}: {part!r} is not a run id, step or task id")
    padded = [*parts, None, None, None]
    return Pathspec(padded[0] or "", padded[1], padded[2], padded[3])


@dataclass(frozen=True)
class LogFile:
    """One persisted log: a stream of one attempt of one task."""

    key: str
    size: int
    mtime: float
    flow: str
    run: str
    step: str
    task: str
    attempt: int
    stream: str  # stdout | stderr
    prefix: str  # runtime | task | legacy

    @property
    def pathspec(self) -> str:
        return f"{self.flow}/{self.run}/{self.step}/{self.task}"

    @property
    def legacy(self) -> bool:
        return self.prefix == "legacy"


def log_file(key: str, size: int, mtime: float = 0.0) -> LogFile | None:
    """The log a datastore key names, or None when the key is no task log."""
    parts = key.split("/")
    if len(parts) != 5:
        return None
    match = _NAME.match(parts[4])
    if match is None:
        return None
    return LogFile(
        key,
        size,
        mtime,
        parts[0],
        parts[1],
        parts[2],
        parts[3],
        int(match["attempt"]),
        match["stream"],
        match["source"] or "legacy",
    )


def find_logs(
    store: LogStore, spec: Pathspec, since: float | None = None, done: set[str] | None = None
) -> Iterator[LogFile]:
    """Every persisted log under ``spec`` (modified at or after ``since``, when given), in
    pathspec order: runs, steps, tasks, attempts, then runtime, task, legacy; stdout first.
    ``done`` collects ``pathspec/attempt`` of the attempts whose ``DONE.lock`` is there."""
    found = []
    for info in store.list(spec.prefix):
        if done is not None and info.key.endswith(".DONE.lock"):
            folder, _, name = info.key.rpartition("/")
            done.add(f"{folder}/{name.split('.', 1)[0]}")
            continue
        log = log_file(info.key, info.size, info.mtime)
        if log is None or (since is not None and info.mtime < since):
            continue
        found.append(log)
    yield from sorted(found, key=_order)


def _order(log: LogFile) -> tuple[str, str, str, int, int, int]:
    task = int(log.task) if log.task.isdigit() else -1
    return (
        log.run,
        log.step,
        log.task if task < 0 else "",
        task,
        log.attempt,
        ("runtime", "task", "legacy").index(log.prefix) * 2 + (log.stream == "stderr"),
    )


def runs_of(logs: Iterable[LogFile]) -> list[tuple[str, str]]:
    seen: dict[tuple[str, str], None] = {}
    for log in logs:
        seen.setdefault((log.flow, log.run), None)
    return list(seen)
