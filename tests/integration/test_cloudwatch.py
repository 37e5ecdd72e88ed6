"""CloudWatch end to end: a real run -> the real collector, SigV4-signed OTLP -> a local endpoint.

The endpoint stands in for CloudWatch Logs' and X-Ray's OTLP endpoints: it verifies every
request's SigV4 signature as AWS does (region, service, signed body) and the log group and
stream headers, and decodes the OTLP it receives.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mfotel.testing import CollectorProcess
from tests.conftest import aws_env, cloudwatch_settings, cloudwatch_stand_in, run_route_flow

pytestmark = pytest.mark.flow

REGION = "eu-west-1"
LINES = [f"route start line {i}" for i in range(12)] + [f"route end line {i}" for i in range(5)]


def test_a_real_run_arrives_signed_in_the_log_group_with_its_identity(
    tmp_path: Path, collector_binary: Path
) -> None:
    stand_in, verifier = cloudwatch_stand_in(REGION)
    with stand_in as aws, CollectorProcess(collector_binary, tmp_path) as col:
        col.render_for(
            ["cloudwatch"],
            "dev",
            [*cloudwatch_settings(aws), "log_group=/metaflow/ci", "log_stream=route"],
        )
        col.start(env=aws_env(REGION))
        run = run_route_flow(col.http_endpoint, tmp_path)
        aws.wait_for(lambda r: len(r.logs()) >= len(LINES) and bool(r.spans()), 30)
        assert col.stop() == 0, col.output()
    assert not aws.refused, aws.refused
    assert verifier.verified >= 2
    log_requests = [r for r in aws.requests if r.signal == "logs"]
    assert log_requests and all(
        (r.headers.get("x-aws-log-group"), r.headers.get("x-aws-log-stream"))
        == ("/metaflow/ci", "route")
        for r in log_requests
    )
    bodies = [rec.body for rec in aws.logs()]
    for line in LINES:
        assert bodies.count(line) == 1, (line, bodies)
    one = next(rec for rec in aws.logs() if rec.body == "route end line 1")
    identity = one.identity
    assert identity["metaflow.flow.name"] == "RouteFlow"
    assert identity["metaflow.run.id"] == run.run_id
    assert identity["metaflow.step.name"] == "end"
    assert not any("AKIAIOSFODNN7EXAMPLE" in str(b) for b in bodies)
    names = {s.name for s in aws.spans()}
    assert {"RUN RouteFlow", "start", "end"} <= names
    # Metrics: per flow and step, never per task (CloudWatch bills each dimension combination).
    durations = [p for p in aws.points() if p.name == "metaflow.task.duration"]
    assert durations
    for point in durations:
        assert "metaflow.task.id" not in point.identity and "metaflow.run.id" not in point.identity
        assert point.identity["metaflow.step.name"] in ("start", "end")
