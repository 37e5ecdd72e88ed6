"""Where the pipeline's batches go: OTLP (encoded, via the exporter) or the console."""

from __future__ import annotations

import sys
from typing import Any, TextIO

from mfotel._internal.agent.exporter import Exporter
from mfotel._internal.model import (
    Histogram,
    ResourceLogs,
    ResourceMetrics,
    ResourceSpans,
    Sum,
)
from mfotel._internal.otlp.encode import encode_logs, encode_metrics, encode_traces
from mfotel.logs._ledger import entries_of


class OtlpSink:
    def __init__(self, exporter: Exporter) -> None:
        self.exporter = exporter

    def spans(self, batches: list[ResourceSpans]) -> None:
        count = sum(len(b.spans) for b in batches)
        self.exporter.submit("traces", encode_traces(batches), count)

    def logs(self, batches: list[ResourceLogs]) -> None:
        count = sum(b.count() for b in batches)
        self.exporter.submit("logs", encode_logs(batches), count, entries_of(batches))

    def metrics(self, batches: list[ResourceMetrics]) -> None:
        count = sum(len(m.data.points) for b in batches for m in b.metrics)
        self.exporter.submit("metrics", encode_metrics(batches), count)

    def settle(self, timeout_s: float) -> None:
        self.exporter.wait_idle(timeout_s)

    def close(self, timeout_s: float) -> None:
        self.exporter.shutdown(timeout_s)


class ConsoleSink:
    """``MF_TRACING=console``: the same signals, one readable line each, on stderr."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr

    def _print(self, line: str) -> None:
        try:
            self.stream.write(line + "\n")
            self.stream.flush()
        except (OSError, ValueError):
            pass

    @staticmethod
    def _where(attrs: Any, resource: Any) -> str:
        return str(
            attrs.get("metaflow.task.pathspec")
            or f"{resource.get('metaflow.flow.name', '')}/{resource.get('metaflow.run.id', '')}"
        )

    def spans(self, batches: list[ResourceSpans]) -> None:
        for batch in batches:
            for span in batch.spans:
                status = {0: "UNSET", 1: "OK", 2: "ERROR"}.get(span.status_code, "?")
                self._print(
                    f"[mfotel] span   {span.name:<24} {(span.end_ns - span.start_ns) / 1e9:8.3f}s "
                    f"{status:<5} trace={span.trace_id.hex()} span={span.span_id.hex()} "
                    f"parent={span.parent_span_id.hex() or '-'} "
                    f"{self._where(span.attributes, batch.resource)}"
                )
                for event in span.events:
                    self._print(f"[mfotel] event  {event.name} on {span.name}")

    def logs(self, batches: list[ResourceLogs]) -> None:
        for batch in batches:
            for record in batch.records:
                where = self._where(record.attributes, batch.resource)
                stream = record.attributes.get("log.iostream", "")
                self._print(f"[mfotel] log    {where} {stream}: {record.body!s}")
            for block in batch.blocks:
                where = block.attempt[0] if block.attempt else self._where({}, batch.resource)
                for text in block.texts:
                    line = text.decode("utf-8", "replace")
                    self._print(f"[mfotel] log    {where} {block.stream}: {line}")

    def metrics(self, batches: list[ResourceMetrics]) -> None:
        for batch in batches:
            for metric in batch.metrics:
                data = metric.data
                if isinstance(data, Histogram):
                    total = sum(p.count for p in data.points)
                    seconds = sum(p.sum for p in data.points)
                    text = f"histogram count={total} sum={seconds:.3f}{metric.unit}"
                elif isinstance(data, Sum):
                    text = f"sum={sum(p.value for p in data.points)}"
                else:
                    text = "gauge=" + ",".join(str(p.value) for p in data.points)
                self._print(f"[mfotel] metric {metric.name} {text} ({len(data.points)} series)")

    def settle(self, timeout_s: float) -> None:
        return None

    def close(self, timeout_s: float) -> None:
        return None
