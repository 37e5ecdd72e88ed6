"""``mfotel demo``: run the example flow with telemetry on against an embedded receiver."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from typing import Callable

from mfotel.testing import OTLPReceiver, ReceivedSpan


def span_tree(spans: list[ReceivedSpan]) -> list[str]:
    """The spans as an indented tree, children in start order, with durations."""
    by_parent: dict[str, list[ReceivedSpan]] = {}
    ids = {s.span_id for s in spans}
    for span in spans:
        parent = span.parent_span_id if span.parent_span_id in ids else ""
        by_parent.setdefault(parent, []).append(span)
    lines: list[str] = []

    def walk(parent: str, depth: int) -> None:
        for span in sorted(by_parent.get(parent, []), key=lambda s: s.start_ns):
            seconds = (span.end_ns - span.start_ns) / 1e9
            attrs = span.attributes
            where = attrs.get("metaflow.task.pathspec", "")
            attempt = attrs.get("metaflow.task.attempt")
            label = f"{span.name}"
            if where:
                label += f"  {where}" + (f" attempt {attempt}" if attempt else "")
            status = "  ERROR" if span.status_code == 2 else ""
            lines.append(f"{'  ' * depth}{label}  {seconds:.2f}s{status}")
            walk(span.span_id, depth + 1)

    walk("", 0)
    return lines


def run_demo(echo: Callable[[str], None], keep: str | None = None) -> int:
    source = os.path.join(os.path.dirname(__file__), "..", "demo", "demo_flow.py")
    workdir = keep or tempfile.mkdtemp(prefix="mfotel-demo-")
    os.makedirs(workdir, exist_ok=True)
    flow = os.path.join(workdir, "demo_flow.py")
    shutil.copyfile(source, flow)
    with OTLPReceiver(grpc=False, http=True) as receiver:
        env = dict(os.environ)
        env.update(
            MF_TRACING="otlp",
            OTEL_EXPORTER_OTLP_ENDPOINT=receiver.http_endpoint,
            OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
            MFOTEL_SPOOL_DIR=os.path.join(workdir, "spool"),
        )
        env.setdefault("USER", "demo")
        echo(f"mfotel demo: running DemoFlow in {workdir} with MF_TRACING=otlp")
        echo(f"mfotel demo: an OTLP receiver listens at {receiver.http_endpoint}\n")
        code = subprocess.call(
            [sys.executable, flow, "run", "--max-workers", "2"], cwd=workdir, env=env
        )
        spans, logs, points = receiver.spans(), receiver.logs(), receiver.points()
    echo("\nWhat arrived at the receiver:\n")
    if spans:
        echo(f"Trace {spans[0].trace_id}  ({len(spans)} spans)")
        for line in span_tree(spans):
            echo("  " + line)
    events = sum(len(s.events) for s in spans)
    sources = Counter(str(r.attributes.get("log.iostream", "?")) for r in logs)
    echo(
        f"\nLog records: {len(logs)} ({', '.join(f'{n} {s}' for s, n in sorted(sources.items()))})"
    )
    structured = sum(1 for r in logs if isinstance(r.body, dict))
    echo(f"  of which structured (JSON lines): {structured}")
    names = Counter(p.name for p in points)
    echo(
        f"Metric points: {len(points)} ({', '.join(f'{k} x{v}' for k, v in sorted(names.items()))})"
    )
    echo(f"Span events: {events}")
    structured_records = [r for r in logs if isinstance(r.body, dict)]
    if structured_records:
        sample = structured_records[0]
        echo("\nOne log record, as a backend receives it:")
        echo(f"  body: {sample.body}")
        echo(f"  severity: {sample.severity_text or sample.severity_number}")
        echo(f"  trace_id/span_id: {sample.trace_id}/{sample.span_id}")
        for key, value in sorted(sample.identity.items()):
            if key.startswith(("metaflow.", "log.", "service.", "deployment.")):
                echo(f"  {key}: {value}")
    if not keep:
        shutil.rmtree(workdir, ignore_errors=True)
    ok = code == 0 and spans and logs and points
    return 0 if ok else 1
