"""Span assembly in the agent: end messages become spans, events join their span.

Every ``end`` message is self-contained (name, times, parent, attributes), so a span can be
built from it alone, even from a spool inbox long after its process died. ``start`` messages
only serve to notice a process that died without ending its span: such a span is ended
with status ERROR when its connection has been closed for a grace period.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mfotel._internal.model import (
    STATUS_ERROR,
    Span,
    SpanEvent,
    SpanLink,
)
from mfotel.events._attributes import event_attributes

MAX_REMEMBERED_ENDED = 100_000


@dataclass
class OpenSpan:
    ctx: Mapping[str, Any]
    start: Mapping[str, Any]
    conn: int
    orphaned_at: int | None = None


@dataclass
class Assembler:
    open: dict[str, OpenSpan] = field(default_factory=dict)
    events: dict[str, list[SpanEvent]] = field(default_factory=dict)
    ended: OrderedDict[str, None] = field(default_factory=OrderedDict)

    def started(self, ctx: Mapping[str, Any], body: Mapping[str, Any], conn: int) -> None:
        sid = str(body["sid"])
        if sid not in self.ended:
            self.open[sid] = OpenSpan(ctx, body, conn)

    def event(self, ctx: Mapping[str, Any], body: Mapping[str, Any]) -> bool:
        """Attach an event to its span; False when that span has already been exported."""
        sid = str(ctx.get("sid", ""))
        if sid in self.ended:
            return False
        attributes = event_attributes(body)
        self.events.setdefault(sid, []).append(
            SpanEvent(str(body.get("name", "event")), int(body.get("time_ns", 0)), attributes)
        )
        return True

    def ended_span(self, ctx: Mapping[str, Any], body: Mapping[str, Any]) -> Span | None:
        sid = str(body["sid"])
        if sid in self.ended:
            return None
        self._remember(sid)
        self.open.pop(sid, None)
        events = self.events.pop(sid, [])
        attributes: dict[str, Any] = dict(ctx.get("attrs") or {})
        attributes.update(body.get("attrs") or {})
        span = Span(
            trace_id=bytes.fromhex(str(ctx["tid"])),
            span_id=bytes.fromhex(sid),
            parent_span_id=bytes.fromhex(str(body.get("psid") or "")),
            name=str(body.get("name", "")),
            kind=int(body.get("kind", 1)),
            start_ns=int(body.get("start_ns", 0)),
            end_ns=int(body.get("end_ns", 0)),
            attributes=attributes,
            events=events,
            status_code=int(body.get("status", 0)),
            status_message=str(body.get("msg", "")),
        )
        exc = body.get("exc")
        if isinstance(exc, Mapping):
            span.events.append(
                SpanEvent(
                    "exception",
                    span.end_ns,
                    {
                        "exception.type": str(exc.get("type", "")),
                        "exception.message": str(exc.get("message", "")),
                        "exception.stacktrace": str(exc.get("stacktrace", "")),
                    },
                )
            )
        for link in body.get("links") or ():
            extra = {k: v for k, v in link.items() if k not in ("tid", "sid")}
            span.links.append(
                SpanLink(bytes.fromhex(link["tid"]), bytes.fromhex(link["sid"]), extra)
            )
        if body.get("sampled") is False:
            return None
        return span

    def ended_by_eof(self, conn: int, now_ns: int) -> list[tuple[Mapping[str, Any], Span]]:
        """Spans whose process ends with ``os._exit`` (parallel_map children) end at its EOF."""
        ended: list[tuple[Mapping[str, Any], Span]] = []
        for sid, span in list(self.open.items()):
            if span.conn != conn or not span.start.get("eof_ends"):
                continue
            body = dict(span.start)
            body["end_ns"] = now_ns
            built = self.ended_span(span.ctx, body)
            if built is not None:
                ended.append((span.ctx, built))
            self.open.pop(sid, None)
        return ended

    def orphan(self, conn: int, now_ns: int) -> None:
        for span in self.open.values():
            if span.conn == conn and span.orphaned_at is None:
                span.orphaned_at = now_ns

    def reap_orphans(self, older_than_ns: int, now_ns: int) -> list[tuple[Mapping[str, Any], Span]]:
        """End, with status ERROR, spans whose process went away before ending them."""
        reaped: list[tuple[Mapping[str, Any], Span]] = []
        for sid, span in list(self.open.items()):
            if span.orphaned_at is None or span.orphaned_at > older_than_ns:
                continue
            body = dict(span.start)
            body.update(
                end_ns=span.orphaned_at,
                status=STATUS_ERROR,
                msg="the process ended without ending this span (killed or crashed)",
            )
            built = self.ended_span(span.ctx, body)
            if built is not None:
                reaped.append((span.ctx, built))
            self.open.pop(sid, None)
        return reaped

    def leftover_events(self) -> list[tuple[str, SpanEvent]]:
        left = [(sid, event) for sid, events in self.events.items() for event in events]
        self.events.clear()
        return left

    def _remember(self, sid: str) -> None:
        self.ended[sid] = None
        if len(self.ended) > MAX_REMEMBERED_ENDED:
            self.ended.popitem(last=False)
