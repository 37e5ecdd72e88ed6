"""Datadog end to end: a real run -> the real collector's datadog exporter -> a local intake."""

from __future__ import annotations

from pathlib import Path

import pytest

from mfotel.testing import CollectorProcess, DatadogIntake
from tests.conftest import DD_TEST_API_KEY, datadog_settings, run_route_flow

pytestmark = pytest.mark.flow

API_KEY = DD_TEST_API_KEY
LINES = [f"route start line {i}" for i in range(12)] + [f"route end line {i}" for i in range(5)]


def test_a_real_run_arrives_in_datadog_tagged_and_correlated(
    tmp_path: Path, collector_binary: Path
) -> None:
    with DatadogIntake(API_KEY) as dd, CollectorProcess(collector_binary, tmp_path) as col:
        col.render_for(["datadog"], "dev", datadog_settings(dd))
        col.start(env={"DD_API_KEY": API_KEY})
        run = run_route_flow(
            col.http_endpoint, tmp_path, OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE="delta"
        )
        # The collector runs on in real life; here, wait until each signal is in before stopping.
        dd.wait_for(lambda d: bool(d.spans and d.sketches and len(d.logs) >= len(LINES)), 30)
        assert col.stop() == 0, col.output()
    assert not dd.rejected, dd.rejected

    # Logs: every line once, identity as attributes, unified service tags, trace correlation.
    import json

    parsed = [{**entry, **json.loads(entry["message"])} for entry in dd.logs]
    messages = [p["message"] for p in parsed]
    for line in LINES:
        assert messages.count(line) == 1, (line, messages)
    one = next(p for p in parsed if p["message"] == "route end line 2")
    assert one["service"] == "metaflow" and "env:dev" in one["ddtags"]
    assert (one["flow_name"], one["run_id"], one["step_name"]) == ("RouteFlow", run.run_id, "end")
    assert one["hostname"] == one["host.name"]  # the task's host; the setting is a fallback
    secret = next(m for m in messages if m.startswith("route secret"))
    assert "AKIAIOSFODNN7EXAMPLE" not in secret

    # Traces: one span per task attempt, in the logs' trace, tagged with the identity.
    by_resource = {s["resource"]: s for s in dd.spans}
    assert {"start", "end", "RUN RouteFlow"} <= set(by_resource), sorted(by_resource)
    assert by_resource["RUN RouteFlow"]["name"] == "metaflow.run"
    end = by_resource["end"]
    assert end["name"] == "metaflow.task"
    assert end["service"] == "metaflow" and end["meta"]["env"] == "dev"
    assert end["meta"]["flow_name"] == "RouteFlow" and end["meta"]["run_id"] == run.run_id
    assert str(end["span_id"]) == one["dd.span_id"] and str(end["trace_id"]) == one["dd.trace_id"]

    # Metrics: task durations as distributions, low-cardinality tags only.
    durations = [s for s in dd.sketches if s["metric"] == "metaflow.task.duration"]
    assert {t for s in durations for t in s["tags"] if t.startswith("step_name:")} >= {
        "step_name:start",
        "step_name:end",
    }, dd.sketches
    for sketch in durations:
        assert "flow_name:RouteFlow" in sketch["tags"]
        assert not any(
            t.startswith(("metaflow.task.", "run_id", "process.pid")) for t in sketch["tags"]
        )
        assert sum(d["cnt"] for d in sketch["dogsketches"]) >= 1
    counters = [s for s in dd.series if s["metric"] == "metaflow.task.start"]
    assert sum(p["value"] for s in counters for p in s["points"]) == 2  # start and end tasks


def test_the_otlp_intake_route_sends_otlp_with_the_api_key(
    tmp_path: Path, collector_binary: Path
) -> None:
    from mfotel.testing import OTLPReceiver

    def key_check(method: str, path: str, headers: dict[str, str], body: bytes) -> str | None:
        return None if headers.get("dd-api-key") == API_KEY else "missing or wrong dd-api-key"

    with (
        OTLPReceiver(grpc=False, authorize=key_check) as dd,
        CollectorProcess(collector_binary, tmp_path) as col,
    ):
        col.render_for(
            ["datadog"],
            "dev",
            ["route=otlp"]
            + [f"{s}_endpoint={dd.http_endpoint}/v1/{s}" for s in ("metrics", "traces", "logs")],
        )
        col.start(env={"DD_API_KEY": API_KEY})
        run_route_flow(col.http_endpoint, tmp_path)
        dd.wait_for(lambda r: len(r.logs()) >= len(LINES) and bool(r.spans()), 30)
        assert col.stop() == 0, col.output()
    assert not dd.refused, dd.refused
    bodies = [rec.body for rec in dd.logs()]
    for line in LINES:
        assert bodies.count(line) == 1, (line, bodies)
    one = next(rec for rec in dd.logs() if rec.body == "route end line 0")
    assert one.attributes["flow_name"] == "RouteFlow" and one.attributes["step_name"] == "end"
    assert {r.headers.get("content-encoding") for r in dd.requests} == {"gzip"}
