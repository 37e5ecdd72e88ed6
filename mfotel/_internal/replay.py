"""``mfotel replay``: turn inbox messages into requests, then send every spooled request once."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

from mfotel import settings
from mfotel._internal.agent.pipeline import Pipeline
from mfotel._internal.agent.spool import Spool
from mfotel._internal.model import ResourceLogs, ResourceMetrics, ResourceSpans
from mfotel._internal.otlp.config import ConfigError, resolve_target
from mfotel._internal.otlp.encode import encode_logs, encode_metrics, encode_traces
from mfotel._internal.otlp.transport import Transport, make_transport
from mfotel._internal.paths import delivered_dir, state_dir
from mfotel._internal.paths import spool_dir as default_spool_dir
from mfotel.logs import _ledger

SEND_TIMEOUT_S = 30.0


@dataclass
class ReplayResult:
    ok: bool
    summary: str
    sent: Counter[str] = field(default_factory=Counter)
    left: Counter[str] = field(default_factory=Counter)
    warnings: list[str] = field(default_factory=list)


class _SpoolSink:
    """Inbox messages become spooled requests, sent below like every other one."""

    def __init__(self, spool: Spool) -> None:
        self.spool = spool

    def spans(self, batches: list[ResourceSpans]) -> None:
        self.spool.put("traces", encode_traces(batches), sum(len(b.spans) for b in batches))

    def logs(self, batches: list[ResourceLogs]) -> None:
        self.spool.put("logs", encode_logs(batches), sum(len(b.records) for b in batches))

    def metrics(self, batches: list[ResourceMetrics]) -> None:
        points = sum(len(m.data.points) for b in batches for m in b.metrics)
        self.spool.put("metrics", encode_metrics(batches), points)

    def settle(self, timeout_s: float) -> None:
        return None

    def close(self, timeout_s: float) -> None:
        return None


def ingest_inbox(spool: Spool) -> int:
    import json

    pipeline = Pipeline(_SpoolSink(spool))
    files = 0
    for path in spool.claim_inbox():
        with open(path, "rb") as handle:
            for line in handle:
                try:
                    message = json.loads(line)
                except ValueError:
                    continue
                if isinstance(message, dict):
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
    ledger = delivered_dir(state_dir(environ))
    result = ReplayResult(ok=True, summary="")
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
        import time

        sent = transport.send(payload, time.monotonic() + SEND_TIMEOUT_S)
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
