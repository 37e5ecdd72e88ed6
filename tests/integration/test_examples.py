"""The examples in examples/, run as their READMEs say, end to end through the real collector.

Each example's otelcol.yaml must be what its README's `mfotel render-config` line writes, and
its flow, run for real with MF_TRACING=otlp, must arrive at a local stand-in for the backend:
Datadog's intake (decoded as the datadog exporter sends it), AWS's OTLP endpoints (SigV4
checked as AWS does), Splunk Observability's OTLP ingest (X-SF-Token checked).
"""

from __future__ import annotations

import json
import shlex
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from metaflow.mflog.mflog import parse as metaflow_parse

from mfotel.collector import render
from mfotel.testing import CollectorProcess, DatadogIntake, OTLPReceiver
from tests.conftest import (
    DD_TEST_API_KEY,
    REPO,
    FlowRun,
    aws_env,
    cloudwatch_settings,
    cloudwatch_stand_in,
    datadog_settings,
    replace_splunk_hec,
    run_flow,
)

pytestmark = pytest.mark.flow

EXAMPLES = REPO / "examples"


def render_command(example: str) -> tuple[list[str], str, list[str]]:
    """(targets, profile, assignments) of the `mfotel render-config` line in the README."""
    readme = (EXAMPLES / example / "README.md").read_text()
    (line,) = [ln for ln in readme.splitlines() if ln.startswith("mfotel render-config ")]
    words = shlex.split(line)[2:]
    targets, assignments, profile = [], [], "dev"
    while words:
        flag, value = words.pop(0), words.pop(0)
        if flag in ("--target", "-t"):
            targets.append(value)
        elif flag == "--set":
            assignments.append(value)
        elif flag == "--profile":
            profile = value
        else:
            assert (flag, value) == ("-o", "otelcol.yaml"), line
    return targets, profile, assignments


@pytest.mark.parametrize("example", ["datadog", "splunk", "cloudwatch"])
def test_the_shipped_config_is_what_the_readme_renders(example: str) -> None:
    """examples/<x>/otelcol.yaml is exactly the output of the README's render-config command."""
    targets, profile, assignments = render_command(example)
    assert (
        render(targets, profile, assignments) == (EXAMPLES / example / "otelcol.yaml").read_text()
    )


def persisted(run: FlowRun, flow: str) -> Counter[str]:
    """The text of every line the run persisted, by Metaflow's own parser."""
    texts: Counter[str] = Counter()
    for path in (run.workdir / ".metaflow" / flow / run.run_id).glob("*/*/*.log"):
        for raw in path.read_bytes().splitlines():
            parsed = metaflow_parse(raw)
            assert parsed is not None
            texts[parsed.msg.decode()] += 1
    return texts


def run_example(example: str, workdir: Path, collector: CollectorProcess) -> FlowRun:
    """The README's `MF_TRACING=otlp … python flow.py run` line, sent to ``collector``."""
    readme = (EXAMPLES / example / "README.md").read_text()
    (line,) = [ln for ln in readme.splitlines() if ln.startswith("MF_TRACING=")]
    words = shlex.split(line)
    at = words.index("python")
    assert words[at : at + 3] == ["python", "flow.py", "run"], line
    env = dict(word.split("=", 1) for word in words[:at])
    env["OTEL_EXPORTER_OTLP_ENDPOINT"] = collector.http_endpoint
    run = run_flow(str(EXAMPLES / example / "flow.py"), workdir, *words[at + 3 :], env=env)
    assert run.returncode == 0, run.output
    return run


def test_datadog_example_end_to_end(tmp_path: Path, collector_binary: Path) -> None:
    """TrainFlow's lines, trace and durations reach Datadog's intake as the README says."""
    targets, profile, assignments = render_command("datadog")
    with DatadogIntake(DD_TEST_API_KEY) as dd, CollectorProcess(collector_binary, tmp_path) as col:
        col.render_for(targets, profile, [*assignments, *datadog_settings(dd)])
        col.start(env={"DD_API_KEY": DD_TEST_API_KEY})
        run = run_example("datadog", tmp_path, col)
        expected = persisted(run, "TrainFlow")
        dd.wait_for(
            lambda d: bool(d.spans and d.sketches) and len(d.logs) >= sum(expected.values()), 30
        )
        assert col.stop() == 0, col.output()
    assert not dd.rejected, dd.rejected
    entries = [{**e, **json.loads(e["message"])} for e in dd.logs]
    plain = Counter(e["message"] for e in entries if isinstance(e.get("message"), str))
    assert len(entries) == sum(expected.values())
    for text, count in expected.items():
        if not text.startswith("{"):
            assert plain[text] == count, (text, plain)
    # A JSON line's map body goes out as a JSON message, which Datadog parses into attributes.
    epochs = [e for e in entries if e["message"].startswith("{")]
    assert len(epochs) == 6 and {e["step_name"] for e in epochs} == {"train"}
    assert sorted(json.loads(e["message"])["epoch"] for e in epochs) == [0, 0, 1, 1, 2, 2]
    assert {e["status"] for e in epochs} == {"INFO"}
    assert all(e["flow_name"] == "TrainFlow" and e["run_id"] == run.run_id for e in entries)
    assert all("team:ml" in e["ddtags"].split(",") for e in entries)  # the README's --tag
    warned = [e for e in entries if "converges slowly" in str(e.get("message"))]
    assert len(warned) == 1 and warned[0]["status"].lower() == "warn", warned
    resources = Counter(s["resource"] for s in dd.spans)
    assert resources["RUN TrainFlow"] == 1 and resources["train"] == 2, resources
    steps = {t for s in dd.sketches if s["metric"] == "metaflow.task.duration" for t in s["tags"]}
    assert {"step_name:start", "step_name:train", "step_name:join", "step_name:end"} <= steps
    assert "team:ml" in steps  # metric_tag_keys=team


def test_cloudwatch_example_end_to_end(tmp_path: Path, collector_binary: Path) -> None:
    """TrainFlow's lines reach the README's log group signed, and its trace reaches X-Ray."""
    targets, profile, assignments = render_command("cloudwatch")
    stand_in, _ = cloudwatch_stand_in("us-west-2")
    with stand_in as aws, CollectorProcess(collector_binary, tmp_path) as col:
        col.render_for(targets, profile, [*assignments, *cloudwatch_settings(aws)])
        col.start(env=aws_env("us-west-2"))
        run = run_example("cloudwatch", tmp_path, col)
        expected = persisted(run, "TrainFlow")
        aws.wait_for(lambda r: len(r.logs()) >= sum(expected.values()) and bool(r.spans()), 30)
        assert col.stop() == 0, col.output()
    assert not aws.refused, aws.refused
    groups = {r.headers.get("x-aws-log-group") for r in aws.requests if r.signal == "logs"}
    assert groups == {"/metaflow/examples"}
    texts = Counter(_text(log.body) for log in aws.logs())
    assert texts == expected
    assert all(log.identity["metaflow.flow.name"] == "TrainFlow" for log in aws.logs())
    assert all("team:ml" in log.resource["metaflow.tags"] for log in aws.logs())
    assert Counter(s.name for s in aws.spans())["train"] == 2


def test_splunk_example_end_to_end(tmp_path: Path, collector_binary: Path) -> None:
    """Traces reach Observability with the token; the log pipeline yields HEC's fields."""
    token = "sf-token-0123456789"
    targets, profile, assignments = render_command("splunk")

    def token_check(method: str, path: str, headers: dict[str, str], body: bytes) -> str | None:
        return None if headers.get("x-sf-token") == token else "missing or wrong X-SF-Token"

    with (
        OTLPReceiver(
            grpc=False,
            authorize=token_check,
            paths={"/v2/trace/otlp": "traces", "/v2/datapoint/otlp": "metrics"},
        ) as observability,
        OTLPReceiver(grpc=False) as hec_stand_in,
        CollectorProcess(collector_binary, tmp_path) as col,
    ):
        col.render_for(
            targets,
            profile,
            [*assignments, f"observability_endpoint={observability.http_endpoint}"],
        )
        replace_splunk_hec(col.config_path, hec_stand_in.http_endpoint)
        col.start(
            env={
                "SPLUNK_ACCESS_TOKEN": token,
                "SPLUNK_HEC_TOKEN": "x",
                "SPLUNK_HEC_ENDPOINT": "http://127.0.0.1:9/services/collector",
            }
        )
        run = run_example("splunk", tmp_path, col)
        expected = persisted(run, "TrainFlow")
        observability.wait_for(lambda r: bool(r.spans()) and bool(r.points()), 30)
        hec_stand_in.wait_for(lambda r: len(r.logs()) >= sum(expected.values()), 30)
        assert col.stop() == 0, col.output()
    assert not observability.refused, observability.refused
    assert Counter(s.name for s in observability.spans())["train"] == 2
    assert any(p.name == "metaflow.task.duration" for p in observability.points())
    logs = hec_stand_in.logs()
    assert Counter(_text(log.body) for log in logs) == expected
    for log in logs:
        fields = log.attributes
        assert fields["flow"] == "TrainFlow" and fields["run_id"] == run.run_id
        assert log.resource["metaflow_tag"]["team"] == "ml"  # HEC field metaflow_tag.team
        assert fields["pathspec"] == f"TrainFlow/{run.run_id}/{fields['step']}/{fields['task_id']}"
        runtime = log.attributes.get("metaflow.log.source") == "runtime"
        assert (
            fields.get("com.splunk.sourcetype") == ("metaflow:log:runtime" if runtime else None)
            or not runtime
        )


def _text(body: Any) -> str:
    """A record's body as the line's text (a JSON line's map body back to its JSON)."""
    return body if isinstance(body, str) else json.dumps(body)
