"""``mfotel replay``: turn inbox messages into requests, then send every spooled request once."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

from mfotel import settings
from mfotel._internal.agent.pipeline import Pipeline
from mfotel._internal.agent.spool import Spool
from mfotel._internal.ipc import read_inbox
from mfotel._internal.model import ResourceLogs, ResourceMetrics, ResourceSpans
from mfotel._internal.otlp.config import ConfigError, resolve_target
from mfotel._internal.otlp.encode import encode_logs, encode_metrics, encode_traces
from mfotel._internal.otlp.transport import Transport, make_transport, send_with_retries
from mfotel._internal.paths import delivered_dir, state_dir
from mfotel._internal.paths import spool_dir as default_spool_dir
from mfotel.logs import _ledger
from mfotel.logs._stores import LogStore

SEND_TIMEOUT_S = 30.0


@dataclass
class ReplayResult:
    ok: bool
    summary: str
    sent: Counter[str] = field(default_factory=Counter)
    left: Counter[str] = field(default_factory=Counter)
    warnings: list[str] = field(default_factory=list)
    dropped: int = 0  # records the spool could not keep (full, or not writable)


class _SpoolSink:
    """Inbox messages become spooled requests, sent below like every other one."""

    def __init__(self, spool: Spool) -> None:
        self.spool = spool

    def spans(self, batches: list[ResourceSpans]) -> None:
        self.spool.put("traces", encode_traces(batches), sum(len(b.spans) for b in batches))

    def logs(self, batches: list[ResourceLogs]) -> None:
        self.spool.put("logs", encode_logs(batches), sum(b.count() for b in batches))

    def metrics(self, batches: list[ResourceMetrics]) -> None:
        points = sum(len(m.data.points) for b in batches for m in b.metrics)
        self.spool.put("metrics", encode_metrics(batches), points)

    def settle(self, timeout_s: float) -> None:
        return None

    def close(self, timeout_s: float) -> None:
        return None


def ingest_inbox(spool: Spool) -> int:
    pipeline = Pipeline(_SpoolSink(spool))
    files = 0
    for path in spool.claim_inbox():
        for message in read_inbox(path):
            pipeline.handle(message, 0)
        files += 1
        os.unlink(path)
    pipeline.finish()
    return files


def replay(environ: Mapping[str, str], folder: str | None = None) -> ReplayResult:
    folder = os.path.abspath(folder) if folder else default_spool_dir(environ)
    spool = Spool(folder, settings.MFOTEL_SPOOL_MAX_MB.get_int(environ) * 1024 * 1024)
    spool.recover_stale_claims()
    ingest_inbox(spool)
    dropped = spool.dropped_records
    ledger = delivered_dir(state_dir(environ))
    result = ReplayResult(ok=True, summary="", dropped=dropped)
    transports: dict[str, Transport] = {}
    failure = ""
    for claimed in spool.claim_all():
        if failure:
            claimed.release()
            result.left[claimed.signal] += 1
            continue
        transport = transports.get(claimed.signal)
        if transport is None:
            try:
                target = resolve_target(claimed.signal, environ)  # type: ignore[arg-type]
                transport = transports[claimed.signal] = make_transport(target)
                result.warnings.extend(w for w in target.warnings if w not in result.warnings)
            except ConfigError as exc:
                failure = str(exc)
                claimed.release()
                result.left[claimed.signal] += 1
                continue
        with open(claimed.path, "rb") as handle:
            payload = handle.read()
        sent = send_with_retries(transport, payload, SEND_TIMEOUT_S)
        if sent.ok:
            if claimed.signal == "logs":
                _ledger.record(ledger, _ledger.entries_in_request(payload))
            claimed.done()
            result.sent[claimed.signal] += spool.records_in(claimed.original)
        else:
            claimed.release()
            result.left[claimed.signal] += 1
            failure = sent.detail
    for transport in transports.values():
        transport.close()
    nouns = {"traces": "spans", "logs": "log records", "metrics": "metric points"}
    sent_text = ", ".join(f"{n} {nouns[s]}" for s, n in sorted(result.sent.items())) or "nothing"
    if failure:
        result.ok = False
        left = sum(result.left.values())
        result.summary = (
            f"mfotel replay: sent {sent_text}; {left} request(s) stay in {folder}: {failure}"
        )
    else:
        result.summary = f"mfotel replay: sent {sent_text} from {folder}"
    return result


def replay_from_store(store: LogStore, environ: Mapping[str, str]) -> ReplayResult:
    """``mfotel replay --datastore …``: send what containers handed to the datastore
    (``.mfotel/spool/``, see :mod:`mfotel._internal.handoff`); an object is deleted once its
    request was accepted, and the ids of the lines sent join the run's ledger there."""
    import tempfile
    import time

    from mfotel._internal.handoff import PREFIX, SPOOL_FOLDERS

    prefix = f"{PREFIX}/spool/"
    with tempfile.TemporaryDirectory(prefix="mfotel-replay-") as work:
        folder = os.path.join(work, "spool")
        origin: dict[str, str] = {}
        for info in store.list(prefix):
            parts = info.key[len(prefix) :].split("/")
            if len(parts) < 2 or parts[-2] not in SPOOL_FOLDERS or parts[-1].startswith("."):
                continue
            local = os.path.join(folder, parts[-2], parts[-1])
            os.makedirs(os.path.dirname(local), exist_ok=True)
            with open(local, "wb") as handle:
                for chunk in store.read(info.key, 0):
                    handle.write(chunk)
            origin[local] = info.key
        if not origin:
            return ReplayResult(True, f"mfotel replay: nothing to send in {store.url(prefix)}")
        state = os.path.join(work, "state")
        # No bound here: these are the datastore's requests, not this machine's to drop.
        unbounded = {**environ, "MFOTEL_STATE_DIR": state, "MFOTEL_SPOOL_MAX_MB": str(1 << 30)}
        result = replay(unbounded, folder)
        stamp = time.time_ns()
        # Requests made here from inbox messages and not sent go back first...
        for signal in SPOOL_FOLDERS:
            sub = os.path.join(folder, signal)
            for name in sorted(os.listdir(sub)) if os.path.isdir(sub) else ():
                local = os.path.join(sub, name)
                if local not in origin and name.endswith(".pb") and not name.startswith("."):
                    with open(local, "rb") as handle:
                        store.write(f"{prefix}replayed/{stamp}/{signal}/{name}", handle.read())
        # ... then what was sent (or made into one of those) leaves the datastore; an inbox
        # whose messages could not all be kept stays.
        for local, key in origin.items():
            inbox = os.path.basename(os.path.dirname(local)) == "inbox"
            if not os.path.exists(local) and not (inbox and result.dropped):
                store.delete(key)
        ledger = delivered_dir(state)
        local_ledger = delivered_dir(state_dir(environ))
        for current, _, names in os.walk(ledger):
            for name in names:
                path = os.path.join(current, name)
                rel = os.path.relpath(path, ledger).replace(os.sep, "/")
                with open(path, "rb") as handle:
                    data = handle.read()
                attempt = name.split(".", 1)[0]
                remote = rel[: -len(name)] + f"{attempt}.replay-{stamp}.uids"
                store.write(f"{_ledger.REMOTE_PREFIX}/{remote}", data)
                pathspec = rel[: -len(name) - 1]
                _ledger.record(local_ledger, _ledger.entries_in_file(pathspec, int(attempt), data))
        result.summary = result.summary.replace(f" from {folder}", f" from {store.url(prefix)}")
        result.summary = result.summary.replace(
            f" stay in {folder}", f" stay in {store.url(prefix)}"
        )
        return result
