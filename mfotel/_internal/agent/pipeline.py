"""The agent's core: messages in, batches of spans, log records and metrics out.

Messages are the JSON objects processes send (see :mod:`mfotel._internal.hooks`); each
carries a ``ctx`` naming its trace, its span (the task attempt's, or the run's) and the
identity to stamp on what it produced. The pipeline keeps no more state than it must: open
spans and their events, log records waiting for the next batch, the metric aggregates, and
the line ids already handled per attempt (so a line is never exported twice, whichever way
it arrives: live, from the spool inbox, or from Metaflow's persisted log).
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from mfotel import __version__
from mfotel._internal.model import (
    LogBlock,
    LogRecord,
    ResourceLogs,
    ResourceMetrics,
    ResourceSpans,
    Scope,
    Span,
)
from mfotel.logs._ledger import LineIds
from mfotel.logs._records import make_block, shared_attributes
from mfotel.metrics._aggregate import Aggregator
from mfotel.traces._spans import Assembler

SCOPE = Scope("mfotel", __version__)
MAX_BATCH = 1024  # spans and records (events) a request
MAX_BATCH_LINES = 4096  # log lines a request
ORPHAN_GRACE_NS = 2_000_000_000
MAX_TRACKED_ATTEMPTS = 10_000


class Sink(Protocol):
    def spans(self, batches: list[ResourceSpans]) -> None: ...
    def logs(self, batches: list[ResourceLogs]) -> None: ...
    def metrics(self, batches: list[ResourceMetrics]) -> None: ...
    def settle(self, timeout_s: float) -> None: ...
    def close(self, timeout_s: float) -> None: ...


@dataclass
class _Context:
    resource_key: Hashable
    resource: Mapping[str, Any]
    attrs: Mapping[str, Any]
    trace_id: bytes
    span_id: bytes
    attempt: tuple[str, int] | None = None
    # The attributes every line of one (stream, source) carries, encoded once an attempt.
    shared: dict[tuple[str, str], bytes] | None = None

    def shared_for(self, stream: str, source: str) -> bytes:
        if self.shared is None:
            self.shared = {}
        found = self.shared.get((stream, source))
        if found is None:
            found = self.shared[(stream, source)] = shared_attributes(self.attrs, stream, source)
        return found


class Pipeline:
    def __init__(
        self,
        sink: Sink,
        export_interval_s: float = 0.2,
        metric_interval_s: float = 10.0,
        extra_metrics: Callable[[], list[tuple[str, str, float, Mapping[str, Any]]]] | None = None,
        temporality: str = "cumulative",
    ) -> None:
        self.sink = sink
        # What the agent found out about where it runs (see detect.py); a task's own win.
        self.resource_extra: dict[str, Any] = {}
        self.export_interval_s = export_interval_s
        self.metric_interval_s = metric_interval_s
        self.extra_metrics = extra_metrics
        self.assembler = Assembler()
        self.aggregator = Aggregator(temporality)
        self._contexts: OrderedDict[str, _Context] = OrderedDict()
        self._resources: dict[Hashable, Mapping[str, Any]] = {}
        self._spans: list[tuple[Hashable, Span]] = []
        self._logs: list[tuple[Hashable, LogRecord]] = []
        self._blocks: list[tuple[Hashable, LogBlock]] = []
        self._block_lines = 0
        self._seen: OrderedDict[str, LineIds] = OrderedDict()
        self._last_flush = time.monotonic()
        self._last_metrics = time.monotonic()
        self.run_ended = False
        self.logs_closed: list[Mapping[str, Any]] = []

    # -- input ----------------------------------------------------------------------------

    def handle(self, message: Mapping[str, Any], conn: int) -> None:
        kind = message.get("t")
        ctx = message.get("ctx")
        if not isinstance(ctx, Mapping) or "sid" not in ctx:
            return
        if kind == "lines":
            self._chunk(ctx, message)
        elif kind == "log":  # one message a line (mfotel 0.1's log carriers, in a spool)
            self._log_lines(ctx, message.get("lines") or (), "task")
        elif kind == "event":
            if not self.assembler.event(ctx, message):
                self._late_event(ctx, message)
        elif kind == "metric":
            context = self._context(ctx)
            self.aggregator.record(
                str(message.get("kind")),
                str(message.get("name")),
                float(message.get("value", 0)),
                int(message.get("time_ns", 0)),
                context.resource_key,
                context.attrs,
            )
        elif kind == "start":
            self._context(ctx)
            self.assembler.started(ctx, message, conn)
        elif kind == "end":
            context = self._context(ctx)
            span = self.assembler.ended_span(ctx, message)
            if span is not None:
                self._spans.append((context.resource_key, span))
        elif kind == "logs_closed":
            self.logs_closed.append(ctx)
        elif kind == "run_end":
            self.run_ended = True
        if len(self._logs) + len(self._spans) >= MAX_BATCH or self._block_lines >= MAX_BATCH_LINES:
            self.flush()

    def closed(self, conn: int) -> None:
        now = time.time_ns()
        for ctx, span in self.assembler.ended_by_eof(conn, now):
            self._spans.append((self._context(ctx).resource_key, span))
        self.assembler.orphan(conn, now)

    def seen_lines(self, ctx: Mapping[str, Any]) -> LineIds:
        """Line ids already handled for this attempt (the sweep skips them unparsed)."""
        return self._seen_for(str(ctx.get("sid", "")))

    def add_persisted_lines(
        self,
        ctx: Mapping[str, Any],
        lines: list[tuple[str, int, str, str, str]],
        fresh: bool = False,
    ) -> int:
        """Lines read back from Metaflow's persisted log: (uid, time_ns, stream, source, text).
        ``fresh``: lines no other path can have delivered (a container's followed files), so
        their ids need not be remembered."""
        context = self._context(ctx)
        seen = None if fresh else self._seen_for(str(ctx["sid"]))
        observed = time.time_ns()
        added = 0
        group: tuple[str, str] | None = None
        texts: list[bytes] = []
        times: list[int] = []
        uids: list[str] = []
        for uid, time_ns, stream, source, text in lines:
            if seen is not None and not seen.add(uid):
                continue
            if (stream, source) != group:
                if texts:
                    self._add_block(context, group, observed, texts, times, uids)  # type: ignore[arg-type]
                group, texts, times, uids = (stream, source), [], [], []
            texts.append(text.encode("utf-8", "replace"))
            times.append(time_ns)
            uids.append(uid)
            added += 1
        if texts:
            self._add_block(context, group, observed, texts, times, uids)  # type: ignore[arg-type]
        if self._block_lines >= MAX_BATCH_LINES:
            self.flush()  # a long backlog goes out as it is read, not all at the end
        return added

    # -- output ---------------------------------------------------------------------------

    def tick(self) -> None:
        now = time.monotonic()
        for ctx, span in self.assembler.reap_orphans(time.time_ns() - ORPHAN_GRACE_NS, 0):
            self._spans.append((self._context(ctx).resource_key, span))
        if now - self._last_flush >= self.export_interval_s:
            self.flush()
        if now - self._last_metrics >= self.metric_interval_s:
            self.flush_metrics()

    def flush(self) -> None:
        self._last_flush = time.monotonic()
        if self._spans:
            spans, self._spans = self._spans, []
            self.sink.spans(
                [ResourceSpans(self._resources[k], SCOPE, v) for k, v in _group(spans).items()]
            )
        if self._logs or self._blocks:
            logs, self._logs = self._logs, []
            blocks, self._blocks = self._blocks, []
            self._block_lines = 0
            records, grouped = _group(logs), _group(blocks)
            self.sink.logs(
                [
                    ResourceLogs(self._resources[k], SCOPE, records.get(k, []), grouped.get(k, []))
                    for k in {**records, **grouped}
                ]
            )

    def flush_metrics(self) -> None:
        self._last_metrics = time.monotonic()
        if self.extra_metrics is not None:
            for kind, name, value, attrs in self.extra_metrics():
                self.aggregator.record(kind, name, value, time.time_ns(), "_agent", attrs)
            self._resources.setdefault("_agent", self._agent_resource())
        if not len(self.aggregator):
            return
        collected = self.aggregator.collect(time.time_ns())
        self.sink.metrics(
            [ResourceMetrics(self._resources[k], SCOPE, v) for k, v in collected.items()]
        )

    def finish(self, settle_s: float = 2.0) -> None:
        """End of the run: end what was left open, send everything."""
        for ctx, span in self.assembler.reap_orphans(time.time_ns() + 1, 0):
            self._spans.append((self._context(ctx).resource_key, span))
        for sid, event in self.assembler.leftover_events():
            context = self._contexts.get(sid)
            if context is not None:
                self._logs.append((context.resource_key, _event_record(context, event)))
        self.flush()
        # Let what was just flushed go out first, so the exporter's own counts include it.
        self.sink.settle(settle_s)
        self.flush_metrics()

    # -- machinery --------------------------------------------------------------------------

    def _context(self, ctx: Mapping[str, Any]) -> _Context:
        sid = str(ctx["sid"])
        context = self._contexts.get(sid)
        if context is None:
            resource = ctx.get("res") or {}
            if self.resource_extra:
                resource = {**self.resource_extra, **resource}
            key = json.dumps(resource, sort_keys=True, default=str)
            self._resources.setdefault(key, resource)
            attrs = ctx.get("attrs") or {}
            pathspec = attrs.get("metaflow.task.pathspec")
            number = attrs.get("metaflow.task.attempt", 0)
            context = _Context(
                key,
                resource,
                attrs,
                bytes.fromhex(str(ctx.get("tid", ""))),
                bytes.fromhex(sid),
                (pathspec, number if isinstance(number, int) else 0)
                if isinstance(pathspec, str)
                else None,
            )
            self._contexts[sid] = context
            if len(self._contexts) > MAX_TRACKED_ATTEMPTS:
                self._contexts.popitem(last=False)
        return context

    def _seen_for(self, sid: str) -> LineIds:
        seen = self._seen.get(sid)
        if seen is None:
            seen = self._seen[sid] = LineIds()
            if len(self._seen) > MAX_TRACKED_ATTEMPTS:
                self._seen.popitem(last=False)
        return seen

    def _add_block(
        self,
        context: _Context,
        group: tuple[str, str],
        observed: int,
        texts: list[bytes],
        times: int | list[int],
        uids: list[str] | tuple[str, int],
    ) -> None:
        shared = context.shared_for(*group)
        block = make_block(
            shared,
            context.trace_id,
            context.span_id,
            observed,
            texts,
            times,
            uids,
            context.attempt,
            group[0],
        )
        self._blocks.append((context.resource_key, block))
        self._block_lines += len(texts)

    def _chunk(self, ctx: Mapping[str, Any], message: Mapping[str, Any]) -> None:
        """A ``lines`` message: a chunk of one stream's lines (see mfotel._internal.ipc)."""
        prefix, first, text = message["p"], int(message["i"]), message["x"]
        stream, time_ns = str(message["s"]), int(message["ts"])
        if not isinstance(prefix, str) or not isinstance(text, str) or first < 0:
            return
        context = self._context(ctx)
        try:
            data = text.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates: not from our carriers, but repair them
            data = text.encode("utf-8", "replace")
        texts = data.split(b"\n")
        count = len(texts)
        new = self._seen_for(str(ctx["sid"])).add_range(prefix, first, count)
        observed = time.time_ns()
        if new == [(first, first + count)]:
            self._add_block(context, (stream, "task"), observed, texts, time_ns, (prefix, first))
            return
        for start, end in new:  # some of it arrived before (a spool replayed twice)
            part = texts[start - first : end - first]
            self._add_block(context, (stream, "task"), observed, part, time_ns, (prefix, start))

    def _log_lines(self, ctx: Mapping[str, Any], lines: Any, source: str) -> None:
        rows: list[tuple[str, int, str, str, str]] = []
        for line in lines:
            try:
                uid, time_ns, stream, text = str(line[0]), int(line[1]), str(line[2]), line[3]
            except (IndexError, TypeError, ValueError):
                continue
            rows.append((uid, time_ns, stream, source, str(text)))
        self.add_persisted_lines(ctx, rows)

    def _late_event(self, ctx: Mapping[str, Any], message: Mapping[str, Any]) -> None:
        from mfotel._internal.model import SpanEvent
        from mfotel.events._attributes import event_attributes

        context = self._context(ctx)
        event = SpanEvent(
            str(message.get("name", "event")),
            int(message.get("time_ns", 0)),
            event_attributes(message),
        )
        self._logs.append((context.resource_key, _event_record(context, event)))

    @staticmethod
    def _agent_resource() -> Mapping[str, Any]:
        import os
        import socket

        from mfotel._internal.identity import service_name

        return {
            "service.name": service_name(os.environ),
            "telemetry.sdk.name": "mfotel",
            "telemetry.sdk.language": "python",
            "telemetry.sdk.version": __version__,
            "host.name": socket.gethostname(),
        }


def _event_record(context: _Context, event: Any) -> LogRecord:
    """An event whose span is gone travels as a log record with ``event.name``."""
    attributes = dict(context.attrs)
    attributes.update(event.attributes)
    return LogRecord(
        time_ns=event.time_ns,
        observed_ns=time.time_ns(),
        body=event.name,
        attributes=attributes,
        trace_id=context.trace_id,
        span_id=context.span_id,
        flags=1,
        event_name=event.name,
    )


def _group(items: list[tuple[Hashable, Any]]) -> dict[Hashable, list[Any]]:
    grouped: dict[Hashable, list[Any]] = {}
    for key, item in items:
        grouped.setdefault(key, []).append(item)
    return grouped
