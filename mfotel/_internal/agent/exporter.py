"""Sending encoded OTLP requests, off everyone's critical path, spooling what cannot go.

The exporter owns one worker thread and a bounded queue of encoded requests. A request that
fails (after a few quick retries, honouring Retry-After) goes to the spool, and the
exporter backs off: while the collector is down, requests go straight to the spool without
a network attempt, and after the back-off one request probes again. Once a probe succeeds the
requests this process spooled are sent too. One warning line says when telemetry starts
being spooled; ``mfotel replay`` sends the rest.
"""

from __future__ import annotations

import os
import queue
import sys
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Callable

from mfotel._internal.agent.spool import Spool
from mfotel._internal.otlp.config import ConfigError, resolve_target
from mfotel._internal.otlp.transport import (
    SendResult,
    Transport,
    make_transport,
    send_with_retries,
)
from mfotel.logs import _ledger
from mfotel.logs._ledger import Entry

MAX_BACKOFF_S = 30.0
QUEUE_LIMIT = 2048
# Encoded requests waiting for the collector: beyond this many bytes a request goes straight
# to the spool (and is sent from there once the collector keeps up again), so a task that
# prints faster than its collector accepts costs the agent bounded memory and never waits.
QUEUE_BYTES = 4 * 1024 * 1024
# How long the agent waits for room in that queue before it spools a request instead: the
# agent may wait (what reaches it meanwhile waits in its socket, or in a carrier's inbox, and
# a followed file is simply read later), tasks never do.
ROOM_WAIT_S = 1.0


@dataclass
class Request:
    signal: str
    payload: bytes
    records: int
    delivered: list[Entry] | None = None  # log line ids, for the ledger once accepted


class Exporter:
    def __init__(
        self,
        spool: Spool,
        environ: Mapping[str, str] | None = None,
        warn: Callable[[str], None] | None = None,
        ledger_dir: str | None = None,
    ) -> None:
        self._spool = spool
        self._ledger_dir = ledger_dir
        self._environ = dict(os.environ if environ is None else environ)
        self._warn = warn or (lambda line: print(line, file=sys.stderr, flush=True))
        self._queue: queue.Queue[Request | None] = queue.Queue(QUEUE_LIMIT)
        self._transports: dict[str, Transport] = {}
        self._down_until = 0.0
        self._backoff = 1.0
        # A process of this task already said its one line (see hooks.warn_once).
        self._warned = bool(self._environ.get("MFOTEL_WARNED"))
        # Where the spool ends up and how to send it, when that is not the local folder (a
        # container hands it to the datastore); set by the agent once it knows.
        self.spool_hint: str | None = None
        self._spooled = False
        self._config_errors: dict[str, str] = {}
        self._said: set[str] = set()
        self._inflight: Request | None = None
        self._deadline: float | None = None
        self.counts: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()
        self._room = threading.Condition()  # guards _queued_bytes
        self._queued_bytes = 0
        self._thread = threading.Thread(target=self._work, name="mfotel-exporter", daemon=True)
        self._thread.start()

    def submit(
        self, signal: str, payload: bytes, records: int, delivered: list[Entry] | None = None
    ) -> None:
        request = Request(signal, payload, records, delivered)
        with self._room:
            deadline = time.monotonic() + ROOM_WAIT_S
            while True:
                fits = self._queued_bytes + len(payload) <= QUEUE_BYTES or not self._queued_bytes
                remaining = deadline - time.monotonic()
                if fits or remaining <= 0 or self._deadline is not None:
                    break
                self._room.wait(remaining)
            if fits:
                self._queued_bytes += len(payload)
        if not fits:
            self._to_spool(request, "the collector does not keep up")
            return
        try:
            self._queue.put_nowait(request)
        except queue.Full:
            with self._room:
                self._queued_bytes -= len(payload)
            self._to_spool(request, "the export queue is full")

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until every submitted request has been sent or spooled."""
        deadline = time.monotonic() + timeout_s
        with self._queue.all_tasks_done:
            while self._queue.unfinished_tasks:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._queue.all_tasks_done.wait(remaining)
        return True

    def shutdown(self, timeout_s: float) -> None:
        """Send what is queued until ``timeout_s`` has passed, then spool the rest."""
        self._deadline = time.monotonic() + timeout_s
        self._queue.put(None)
        self._thread.join(timeout_s + 1.0)
        stuck = self._inflight
        if self._thread.is_alive() and stuck is not None:
            # Still waiting on the collector: spool that request too. If the collector does
            # take it after all, it arrives twice, never not at all.
            self._to_spool(stuck, "the collector did not answer before the end of the run")
        while True:
            try:
                request = self._queue.get_nowait()
            except queue.Empty:
                break
            if request is not None:
                self._to_spool(request, "time ran out at the end of the run")
        for transport in self._transports.values():
            transport.close()

    # -- worker ---------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            request = self._queue.get()
            if request is None:
                self._queue.task_done()
                return
            with self._room:
                self._queued_bytes -= len(request.payload)
                self._room.notify_all()
            self._inflight = request
            try:
                self._send(request)
            except Exception as exc:  # never let the worker die
                self._to_spool(request, f"unexpected error: {exc}")
            finally:
                self._inflight = None
                self._queue.task_done()

    def _send(self, request: Request) -> None:
        now = time.monotonic()
        if self._deadline is not None and now >= self._deadline:
            self._to_spool(request, "time ran out at the end of the run")
            return
        if now < self._down_until:
            self._to_spool(request, None)
            return
        transport = self._transport(request.signal)
        if transport is None:
            self._to_spool(request, self._config_errors[request.signal])
            return
        result = self._attempt(transport, request.payload)
        if result.ok:
            self._count(request.signal, "exported", request.records)
            if request.delivered and self._ledger_dir:
                _ledger.record(self._ledger_dir, request.delivered)
            if self._down_until or self._spooled:
                self._recovered()
            return
        self._down_until = time.monotonic() + self._backoff
        self._backoff = min(self._backoff * 2, MAX_BACKOFF_S)
        self._to_spool(request, result.detail)

    def _attempt(self, transport: Transport, payload: bytes) -> SendResult:
        deadline = self._send_deadline()
        return send_with_retries(transport, payload, deadline - time.monotonic(), deadline)

    def _send_deadline(self) -> float:
        far = time.monotonic() + 3600.0
        return far if self._deadline is None else min(far, self._deadline)

    def _transport(self, signal: str) -> Transport | None:
        if signal in self._config_errors:
            return None
        transport = self._transports.get(signal)
        if transport is None:
            try:
                target = resolve_target(signal, self._environ)  # type: ignore[arg-type]
                for warning in getattr(target, "warnings", ()):
                    if warning not in self._said:  # the same variable serves several signals
                        self._said.add(warning)
                        self._warn(f"mfotel: {warning}")
                transport = make_transport(target)
            except ConfigError as exc:
                # Said once, with the spooling that follows from it (see _to_spool).
                self._config_errors[signal] = str(exc)
                return None
            self._transports[signal] = transport
        return transport

    def _recovered(self) -> None:
        self._down_until = 0.0
        self._backoff = 1.0
        for claimed in self._spool.claim_all(owner_pid=os.getpid()):
            with open(claimed.path, "rb") as handle:
                payload = handle.read()
            transport = self._transport(claimed.signal)
            if transport is None or not transport.send(payload, self._send_deadline()).ok:
                claimed.release()
                return
            if claimed.signal == "logs" and self._ledger_dir:
                _ledger.record(self._ledger_dir, _ledger.entries_in_request(payload))
            records = self._spool.records_in(claimed.original)
            self._count(claimed.signal, "spooled", -records)
            self._count(claimed.signal, "exported", records)
            claimed.done()

    def _to_spool(self, request: Request, reason: str | None) -> None:
        if self._spool.put(request.signal, request.payload, request.records):
            self._count(request.signal, "spooled", request.records)
            self._spooled = True
            if not self._warned and reason is not None:
                self._warned = True
                where = self.spool_hint or (
                    f"{self._spool.folder}; run `mfotel replay` once a collector answers"
                )
                self._warn(f"mfotel: telemetry is spooled ({reason}) to {where}")
        else:
            self._count(request.signal, "dropped", request.records)
            if not self._warned or self._spool.dropped_records == request.records:
                self._warned = True
                self._warn(
                    f"mfotel: the spool at {self._spool.folder} is full or not writable; "
                    "telemetry is being dropped (raise MFOTEL_SPOOL_MAX_MB or free the disk)"
                )

    def _count(self, signal: str, outcome: str, records: int) -> None:
        with self._lock:
            self.counts[(signal, outcome)] += records
