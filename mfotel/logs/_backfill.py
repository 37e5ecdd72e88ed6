"""``mfotel backfill``: the logs Metaflow persisted, sent as log records, each line once.

Each persisted line becomes the record the live path would have made of it: its mflog
timestamp, ``log.record.uid`` = its mflog id, the task's identity, and the trace context of
its attempt's span when mfotel traced the run. What is skipped, and why:

* bytes below a file's checkpoint (a previous backfill sent them; see ``_checkpoint``);
* lines whose id the live path recorded as delivered (see ``_ledger``);
* lines that are not mflog lines (corrupt or truncated): counted, and the first one named.

Files are read as streams from their checkpoint, in chunks, by a few worker threads (object
stores are latency-bound), each with its own bounded batch and its own connection, so memory
does not grow with the size of a log or of a run. A batch's checkpoints advance only once the
collector has accepted it; when it does not, the backfill stops there and says so, and the
next backfill goes on from the checkpoints: the persisted logs are their own spool.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from mfotel._internal import identity
from mfotel._internal.agent.pipeline import SCOPE
from mfotel._internal.model import LogBlock, ResourceLogs
from mfotel._internal.otlp.config import ConfigError, resolve_target
from mfotel._internal.otlp.encode import encode_logs
from mfotel._internal.otlp.transport import Transport, make_transport, send_with_retries
from mfotel._internal.paths import checkpoint_dir, delivered_dir, find_local_root
from mfotel.logs import _ledger
from mfotel.logs._checkpoint import Checkpoints
from mfotel.logs._layout import LogFile, Pathspec, find_logs
from mfotel.logs._mflog import parse, uuid_text
from mfotel.logs._records import make_block, shared_attributes
from mfotel.logs._stores import LocalStore, LogStore, StoreError
from mfotel.traces._ids import attempt_span_id, root_context

BATCH_RECORDS = 2000
BATCH_BYTES = 2 << 20
SEND_TIMEOUT_S = 30.0
STALE_S = 600.0  # a log unchanged this long belongs to an attempt that is over
TRACE_MODES = ("auto", "derived", "none")


class BackfillError(Exception):
    """Bad input or an unusable setting; the message is one line naming the fix."""


@dataclass
class BackfillResult:
    ok: bool = True
    error: str = ""
    runs: int = 0
    tasks: int = 0
    files: int = 0
    lines: int = 0
    bytes_read: int = 0
    requests: int = 0
    skipped_checkpoint_bytes: int = 0
    skipped_live: int = 0
    corrupt: int = 0
    repaired: int = 0
    legacy: int = 0
    first_corrupt: str = ""
    seconds: float = 0.0
    uncorrelated_runs: list[str] = field(default_factory=list)

    def summary(self) -> str:
        rate = self.lines / self.seconds if self.seconds > 0 else 0.0
        mb = self.bytes_read / 1e6
        parts = [
            f"{self.tasks} task(s), {self.files} file(s): sent {self.lines} line(s) "
            f"({mb:.1f} MB read) in {self.seconds:.1f} s ({rate:,.0f} lines/s)"
        ]
        skipped = []
        if self.skipped_checkpoint_bytes:
            skipped.append(
                f"{self.skipped_checkpoint_bytes / 1e6:.1f} MB already sent (checkpoint)"
            )
        if self.skipped_live:
            skipped.append(f"{self.skipped_live} line(s) already delivered live")
        if skipped:
            parts.append("skipped " + " and ".join(skipped))
        if self.corrupt:
            parts.append(f"{self.corrupt} corrupt line(s) not sent (first: {self.first_corrupt})")
        if self.repaired:
            parts.append(f"{self.repaired} line(s) not UTF-8, sent with U+FFFD")
        if self.legacy:
            parts.append(f"{self.legacy} line(s) from pre-mflog logs, without timestamps")
        return "mfotel backfill: " + "; ".join(parts)


@dataclass
class _Run:
    flow: str
    run: str
    resource: Mapping[str, Any]
    trace_id: bytes  # b"" when the records are not correlated
    # Line ids its containers' collectors accepted, from the datastore (see handoff).
    delivered: Mapping[tuple[str, int], _ledger.LineIds] = field(default_factory=dict)


@dataclass
class _Batch:
    """One worker's records of one task attempt (so of one run), not yet sent."""

    run: _Run
    blocks: list[LogBlock] = field(default_factory=list)
    lines: int = 0
    size: int = 0
    commits: dict[tuple[str, str, str], int] = field(default_factory=dict)
    # The block being filled: what its lines share, and the lines.
    key: tuple[bytes, int, bytes, str, tuple[str, int]] | None = None
    texts: list[bytes] = field(default_factory=list)
    times: list[int] = field(default_factory=list)
    uids: list[str] = field(default_factory=list)

    def add(
        self,
        key: tuple[bytes, int, bytes, str, tuple[str, int]],
        text: bytes,
        time_ns: int,
        uid: str,
    ) -> None:
        if key != self.key:
            self.close()
            self.key = key
        self.texts.append(text)
        self.times.append(time_ns)
        self.uids.append(uid)
        self.lines += 1

    def close(self) -> None:
        """The lines added so far become a block (the one record shaper's, see _records)."""
        if self.texts and self.key is not None:
            shared, observed, span_id, stream, attempt = self.key
            self.blocks.append(
                make_block(
                    shared,
                    self.run.trace_id,
                    span_id,
                    observed,
                    self.texts,
                    self.times,
                    self.uids,
                    attempt,
                    stream,
                )
            )
        self.key = None
        self.texts, self.times, self.uids = [], [], []


class Backfill:
    def __init__(
        self,
        store: LogStore,
        state_dir: str,
        environ: Mapping[str, str],
        jobs: int = 4,
        trace: str = "auto",
        progress: Callable[[int], None] | None = None,
        final_partial: bool = True,
    ) -> None:
        if trace not in TRACE_MODES:
            raise BackfillError(f"--trace {trace!r} is not one of {', '.join(TRACE_MODES)}")
        self.store = store
        self.environ = environ
        self.jobs = max(1, jobs)
        self.trace = trace
        self.progress = progress
        self.final_partial = final_partial  # False while the logs may still grow (tail)
        self.ledger_dir = delivered_dir(state_dir)
        self.checkpoints = Checkpoints(checkpoint_dir(state_dir))
        try:
            self.target = resolve_target("logs", environ)
        except ConfigError as exc:
            raise BackfillError(str(exc)) from None
        self.result = BackfillResult()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._local = threading.local()
        self._transports: list[Transport] = []
        self._runs: dict[tuple[str, str], _Run] = {}
        self.done: set[str] = set()  # "pathspec/attempt" of attempts Metaflow marked done

    # -- what to send ---------------------------------------------------------------------

    def plan(self, specs: Sequence[Pathspec], since: float | None = None) -> list[LogFile]:
        """Every persisted log the pathspecs name; BackfillError naming one that has none."""
        logs: dict[str, LogFile] = {}
        for spec in specs:
            found = list(find_logs(self.store, spec, since, self.done))
            if not found:
                when = " modified since then" if since is not None else ""
                raise BackfillError(
                    f"no persisted logs{when} for {spec} in {self.store.root}: check the "
                    "pathspec, --datastore and --datastore-root"
                )
            for log in found:
                logs.setdefault(log.key, log)
        return list(logs.values())

    def run(self, logs: Sequence[LogFile]) -> BackfillResult:
        started = time.monotonic()
        result = self.result = BackfillResult()
        self._stop.clear()
        runs = {(log.flow, log.run): self._run_of(log.flow, log.run) for log in logs}
        result.runs = len(runs)
        result.tasks = len({log.pathspec for log in logs})
        result.files = len(logs)
        units: dict[tuple[str, int], list[LogFile]] = {}
        for log in logs:
            units.setdefault((log.pathspec, log.attempt), []).append(log)
        try:
            with ThreadPoolExecutor(self.jobs, thread_name_prefix="mfotel-backfill") as pool:
                for _ in pool.map(lambda unit: self._attempt(unit, runs), units.values()):
                    pass
        finally:
            self.checkpoints.save()
        result.seconds = time.monotonic() - started
        result.uncorrelated_runs = sorted(
            f"{r.flow}/{r.run}" for r in runs.values() if not r.trace_id
        )
        return result

    # -- machinery ------------------------------------------------------------------------

    def _run_of(self, flow: str, run_id: str) -> _Run:
        known = self._runs.get((flow, run_id))
        if known is not None:
            return known
        delivered: Mapping[tuple[str, int], _ledger.LineIds] = {}
        noted: bytes | None = None
        if not isinstance(self.store, LocalStore):  # a local one's is the local ledger itself
            delivered, noted = _ledger.load_remote(self.store, flow, run_id)
        trace_id = b""
        if self.trace == "derived":
            trace_id = root_context(flow, run_id).trace_id
        elif self.trace == "auto":
            trace_id = _ledger.run_trace(self.ledger_dir, flow, run_id) or noted or b""
        run = _Run(flow, run_id, run_resource(flow, run_id, self.environ), trace_id, delivered)
        self._runs[(flow, run_id)] = run
        return run

    def _attempt(self, files: list[LogFile], runs: Mapping[tuple[str, str], _Run]) -> None:
        if self._stop.is_set():
            return
        first = files[0]
        run = runs[(first.flow, first.run)]
        delivered = _ledger.delivered(self.ledger_dir, first.pathspec, first.attempt)
        remote = run.delivered.get((first.pathspec, first.attempt))
        if remote is not None:
            delivered.update(remote)
        attrs = identity.task_attributes(
            first.flow, first.run, first.step, first.task, first.attempt
        )
        del attrs["process.pid"]  # the task's, which a persisted log does not record
        span_id = (
            attempt_span_id(run.trace_id, first.pathspec, first.attempt) if run.trace_id else b""
        )
        batch = _Batch(run)
        try:
            for log in files:
                if self._stop.is_set():
                    return
                self._file(log, run, attrs, span_id, delivered, batch)
            self._flush(batch)
        except StoreError as exc:  # the store went away mid-way: stop, keep what was sent
            self._fail(str(exc))

    def _file(
        self,
        log: LogFile,
        run: _Run,
        attrs: Mapping[str, Any],
        span_id: bytes,
        delivered: _ledger.LineIds,
        batch: _Batch,
    ) -> None:
        url = self.store.url(log.key)
        start = self.checkpoints.offset(log.flow, log.run, url)
        if start > log.size:  # rewritten shorter than before: it is another log now
            start = 0
        self._count(skipped_checkpoint_bytes=start)
        if start >= log.size:
            return
        commit_key = (log.flow, log.run, url)
        observed = time.time_ns()
        corrupt = repaired = legacy = live = 0
        first_corrupt = ""
        read = 0
        # A last line without its newline is still being written, unless the attempt is over
        # (then it was cut short, and is counted as corrupt if it does not parse).
        ended = f"{log.pathspec}/{log.attempt}" in self.done or time.time() - log.mtime > STALE_S
        lines = read_lines(self.store, log.key, start, log.size, self.final_partial and ended)
        commits, mtime_ns = batch.commits, int(log.mtime * 1e9) or observed
        shared: dict[str, bytes] = {}  # metaflow.log.source → the attributes all lines share
        attempt = (log.pathspec, log.attempt)
        end = start
        for begin, end, raw in lines:
            text: bytes
            if not raw or raw.isspace():
                continue
            if log.legacy:
                uid = _legacy_uid(url, begin)
                time_ns, source, text = 0, "task", raw
                legacy += 1
            else:
                parsed = parse(raw)
                if parsed is None:
                    corrupt += 1
                    if not first_corrupt:
                        first_corrupt = f"{url} at byte {begin}"
                    continue
                uid, time_ns, source, text = (
                    parsed.uid,
                    parsed.time_ns,
                    parsed.source,
                    parsed.text,
                )
                if uid in delivered:
                    live += 1
                    continue
            if text.endswith(b"\r"):
                text = text[:-1]
            try:
                text.decode("utf-8")
            except UnicodeDecodeError:
                text = text.decode("utf-8", "replace").encode("utf-8")
                repaired += 1
            block = shared.get(source)
            if block is None:
                block = shared[source] = shared_attributes(attrs, log.stream, source)
            batch.add(
                (block, observed if time_ns else mtime_ns, span_id, log.stream, attempt),
                text,
                time_ns,
                uid,
            )
            batch.size += len(raw) + len(block) + 60
            if batch.lines >= BATCH_RECORDS or batch.size >= BATCH_BYTES:
                commits[commit_key] = end
                self._flush(batch)
                if self._stop.is_set():
                    break
        else:  # every line read: the checkpoint may move past the skipped ones too
            commits[commit_key] = end
        read = end - start
        with self._lock:
            r = self.result
            r.bytes_read += read
            r.corrupt += corrupt
            r.repaired += repaired
            r.legacy += legacy
            r.skipped_live += live
            if first_corrupt and not r.first_corrupt:
                r.first_corrupt = first_corrupt
        if self.progress is not None:
            self.progress(read)

    def _flush(self, batch: _Batch) -> None:
        if self._stop.is_set():
            return
        batch.close()
        if batch.blocks:
            payload = encode_logs([ResourceLogs(batch.run.resource, SCOPE, [], batch.blocks)])
            problem = self._send(payload)
            if problem:
                self._fail(problem)
                return
            self._count(lines=batch.lines, requests=1)
        for (flow, run_id, url), offset in batch.commits.items():
            self.checkpoints.advance(flow, run_id, url, offset)
        batch.blocks.clear()
        batch.lines = 0
        batch.commits.clear()
        batch.size = 0

    def _fail(self, problem: str) -> None:
        with self._lock:
            if not self.result.error:
                self.result.ok = False
                self.result.error = problem
        self._stop.set()

    def close(self) -> None:
        for transport in self._transports:
            transport.close()
        self._transports.clear()

    def _send(self, payload: bytes) -> str:
        transport: Transport | None = getattr(self._local, "transport", None)
        if transport is None:
            transport = make_transport(self.target)
            self._local.transport = transport
            with self._lock:
                self._transports.append(transport)
        result = send_with_retries(transport, payload, SEND_TIMEOUT_S)
        if result.ok:
            return ""
        return f"the collector at {self.target.endpoint} did not take the logs: {result.detail}"

    def _count(self, **amounts: int) -> None:
        with self._lock:
            for name, amount in amounts.items():
                setattr(self.result, name, getattr(self.result, name) + amount)


def read_lines(
    store: LogStore, key: str, offset: int, end: int | None = None, final_partial: bool = True
) -> Iterator[tuple[int, int, bytes]]:
    """(start, end, line) of each line of an object from ``offset``, without its newline; a
    last line with no newline comes too unless ``final_partial`` is False (a log still being
    written). Streams: holds one chunk and one partial line at a time."""
    position = offset
    tail = b""
    for chunk in store.read(key, offset, end):
        lines = (tail + chunk).split(b"\n") if tail else chunk.split(b"\n")
        tail = lines.pop()
        for line in lines:
            stop = position + len(line) + 1
            yield position, stop, line
            position = stop
    if tail and final_partial:
        yield position, position + len(tail), tail


def _legacy_uid(url: str, offset: int) -> str:
    """A pre-mflog line has no id: name it by where it is, the same on every backfill."""
    return uuid_text(hashlib.sha256(f"{url}\0{offset}".encode()).hexdigest())


def run_resource(flow: str, run_id: str, environ: Mapping[str, str]) -> dict[str, Any]:
    """The run's resource as the live path builds it: user and tags from Metaflow's metadata
    when its client can see the run, the flow and run ids in any case."""
    user, tags = _run_metadata(flow, run_id)
    resource = identity.resource_attributes(flow, run_id, user, tags, environ)
    resource.pop("host.name", None)  # this host is not the one that ran the tasks
    resource["metaflow.version"] = next(
        (t.split(":", 1)[1] for t in tags if t.startswith("metaflow_version:")),
        resource.get("metaflow.version", ""),
    )
    runtime = next((t.split(":", 1)[1] for t in tags if t.startswith("runtime:")), None)
    if runtime:
        resource["metaflow.runtime"] = "local" if runtime == "dev" else runtime
    return resource


def _run_metadata(flow: str, run_id: str) -> tuple[str | None, list[str]]:
    try:
        from metaflow import Run, namespace

        namespace(None)
        run = Run(f"{flow}/{run_id}", _namespace_check=False)
        user_tags = sorted(run.user_tags)
        system_tags = sorted(run.system_tags)
        user = next((t[5:] for t in system_tags if t.startswith("user:")), None)
        return user, identity.clean_tags(user_tags + system_tags)
    except Exception:  # not in this metadata provider, or no client: ids only
        return None, []


def default_root(datastore: str, environ: Mapping[str, str] | None = None) -> str:
    """Metaflow's own configured root for ``datastore``."""
    env = os.environ if environ is None else environ
    if datastore == "local":
        return env.get("METAFLOW_DATASTORE_SYSROOT_LOCAL") or find_local_root(".")
    name = {"s3": "S3", "gs": "GS", "azure": "AZURE"}[datastore]
    value = env.get(f"METAFLOW_DATASTORE_SYSROOT_{name}")
    if not value:
        try:
            from metaflow import metaflow_config

            value = getattr(metaflow_config, f"DATASTORE_SYSROOT_{name}", None)
        except Exception:
            value = None
    if not value:
        raise BackfillError(
            f"no datastore root for --datastore {datastore}: pass --datastore-root or set "
            f"METAFLOW_DATASTORE_SYSROOT_{name}"
        )
    return str(value)


def default_datastore(environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    value = env.get("METAFLOW_DEFAULT_DATASTORE")
    if not value:
        try:
            from metaflow import metaflow_config

            value = metaflow_config.DEFAULT_DATASTORE
        except Exception:
            value = "local"
    return str(value)


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_since(text: str, now: float) -> float:
    """``30m``, ``12h``, ``7d``, ``2w`` ago, or an ISO date or time (UTC when it has no
    offset), as seconds since the epoch."""
    value = text.strip()
    if value[:-1].isdigit() and value[-1:].lower() in _UNITS:
        return now - int(value[:-1]) * _UNITS[value[-1].lower()]
    from datetime import datetime, timezone

    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BackfillError(
            f"--since {text!r} is neither a duration (30m, 12h, 7d) nor a date (2026-11-30)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp()
