"""Metaflow tags in each backend's own shape, checked in the real collector.

Telemetry with awkward tags goes through each target's rendered config to a local stand-in
(Datadog: the intake that decodes what the datadog exporter sends; Splunk and CloudWatch: OTLP
receivers in place of splunk_hec / the SigV4 endpoints), and what arrives is compared with
``tests/tag_shapes.py``, written from the vendors' rules. A real flow run checks the same on
``--tag``s given to Metaflow.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from mfotel.testing import CollectorProcess, DatadogIntake, OTLPReceiver
from tests import tag_shapes
from tests.conftest import (
    DD_TEST_API_KEY,
    REPO,
    aws_env,
    cloudwatch_settings,
    cloudwatch_stand_in,
    datadog_settings,
    replace_splunk_hec,
    run_route_flow,
)

pytestmark = pytest.mark.flow

SPLUNK_METRIC_KEYS = ["team", "Team", "re", "k2", "url", "note", "dup", "region"]

# Tags Metaflow accepts (any non-empty UTF-8 string up to 500 characters).
TAGS = [
    "team:ml",
    "Team:Data",
    "Team:ML",
    "cost center:r&d",
    "nightly run",
    "env:prod",
    "service:etl",
    "2024-q3",
    "a,b",
    'note:say "hi"',
    "back\\slash",
    "<b>&c",
    "x" * 300,
    "ünïcode:Ωmega",
    "trailing___",
    "a__b",
    "emoji🚀tag",
    "123",
    "url:http://x.y/z?q=1",
    "tab\there",
    ":colon",
    "dup:1",
    "dup:2",
    "it's:ok",
    "k:v:w",
    "key:",
    "cost center:r&d <eu>",
    "region:eu west ",
    "project:demo",
    "user:alice",
    "re:\\u003cx",  # a literal backslash-u003c, not a <
    "k2:\\u0026",
    "env:" + "y" * 300,  # prefixed, then cut to 200
    "ΟΔΟΣ:Σ",
    "service.name:evil",  # Datadog's own span keys: never span tags
    "operation.name:hijack",
    "resource.name:rsrc",
    "deployment.environment.name:staging",
    "_dd.measured:1",
]


def _str_list(values: list[str]) -> AnyValue:
    value = AnyValue()
    for item in values:
        value.array_value.values.add().string_value = item
    return value


def _resource(target: Any, tags: list[str]) -> None:
    for key, value in (
        ("service.name", AnyValue(string_value="metaflow")),
        ("metaflow.flow.name", AnyValue(string_value="TagFlow")),
        ("metaflow.run.id", AnyValue(string_value="7")),
        ("metaflow.tags", _str_list(tags)),
    ):
        target.attributes.append(KeyValue(key=key, value=value))


def _send(endpoint: str, tags: list[str]) -> None:
    """One log record, one span and one counter point, from a resource carrying ``tags``."""
    now = 1_764_000_000_000_000_000
    logs = ExportLogsServiceRequest()
    rl = logs.resource_logs.add()
    _resource(rl.resource, tags)
    record = rl.scope_logs.add().log_records.add()
    record.time_unix_nano = now
    record.body.string_value = "tagged line"
    traces = ExportTraceServiceRequest()
    rs = traces.resource_spans.add()
    _resource(rs.resource, tags)
    scope_spans = rs.scope_spans.add()
    scope_spans.scope.name = "mfotel"
    span = scope_spans.spans.add()
    span.trace_id, span.span_id, span.name = bytes(range(1, 17)), bytes(range(1, 9)), "train"
    span.start_time_unix_nano, span.end_time_unix_nano = now, now + 1_000_000
    span.attributes.append(KeyValue(key="team", value=AnyValue(string_value="span-own")))
    metrics = ExportMetricsServiceRequest()
    rm = metrics.resource_metrics.add()
    _resource(rm.resource, tags)
    metric = rm.scope_metrics.add().metrics.add()
    metric.name = "metaflow.task.start"
    metric.sum.is_monotonic = True
    metric.sum.aggregation_temporality = 1  # delta
    point = metric.sum.data_points.add()
    point.start_time_unix_nano, point.time_unix_nano, point.as_int = now, now + 1, 1
    for path, request in (("logs", logs), ("traces", traces), ("metrics", metrics)):
        urllib.request.urlopen(
            urllib.request.Request(
                f"{endpoint}/v1/{path}",
                data=request.SerializeToString(),
                headers={"Content-Type": "application/x-protobuf"},
            ),
            timeout=10,
        ).read()


def test_datadog_gets_tags_shaped_by_datadogs_rules(tmp_path: Path, collector_binary: Path) -> None:
    with DatadogIntake(DD_TEST_API_KEY) as dd, CollectorProcess(collector_binary, tmp_path) as col:
        col.render_for(["datadog"], "dev", [*datadog_settings(dd), "metric_tag_keys=team,dup"])
        col.start(env={"DD_API_KEY": DD_TEST_API_KEY})
        _send(col.http_endpoint, TAGS)
        dd.wait_for(lambda d: bool(d.logs and d.spans and d.series), 30)
        assert col.stop() == 0, col.output()
    assert not dd.rejected, dd.rejected

    expected = tag_shapes.datadog_tags(TAGS)
    assert "metaflow_env:prod" in expected and "x" * 200 in expected  # the oracle's own sense
    (log,) = dd.logs
    attributes = json.loads(log["message"])  # the exporter sends attributes in the message
    got = log["ddtags"].split(",")
    exporters_own = ("service:metaflow", "otel_source:datadog_exporter")
    assert [t for t in got if t not in exporters_own] == expected, log["ddtags"]
    assert "env:prod" not in got and "ddtags" not in attributes
    assert not any(key.startswith("mfotel.") for key in attributes)  # working attributes: gone

    (span,) = [s for s in dd.spans if s["resource"] == "train"]
    span_tags = tag_shapes.datadog_span_tags(TAGS)
    for key, value in span_tags.items():
        if key != "team":  # the span's own attribute wins over a tag
            assert span["meta"].get(key) == value, (key, span["meta"])
    assert span["meta"]["team"] == "span-own"
    assert not any(key.startswith("mfotel.") for key in span["meta"])
    # Tags never take over what Datadog reads from the span: service, operation, resource, env.
    assert (span["service"], span["name"], span["resource"]) == (
        "metaflow",
        "metaflow.task",
        "train",
    ), span
    assert span["meta"].get("env") in (None, "dev") and span["meta"].get("_dd.measured") is None

    (series,) = [s for s in dd.series if s["metric"] == "metaflow.task.start"]
    tag_keys = {t.partition(":")[0] for t in series["tags"]}
    assert f"team:{span_tags['team']}" in series["tags"] and "dup:2" in series["tags"]
    assert not tag_keys & {"user", "project", "url", "metaflow_env", "nightly_run"}, series


def _splunk_collector(col: CollectorProcess, hec: OTLPReceiver, *assignments: str) -> None:
    col.render_for(["splunk"], "dev", ["traces_to=hec", "metrics_to=hec", *assignments])
    replace_splunk_hec(col.config_path, hec.http_endpoint)
    col.start(
        env={
            "SPLUNK_HEC_TOKEN": "x",
            "SPLUNK_HEC_ENDPOINT": "http://127.0.0.1:9/services/collector",
        }
    )


def test_splunk_gets_the_tag_list_and_a_field_per_key(
    tmp_path: Path, collector_binary: Path
) -> None:
    with (
        OTLPReceiver(grpc=False) as hec,
        CollectorProcess(collector_binary, tmp_path) as col,
    ):
        _splunk_collector(col, hec, f"metric_tag_keys={','.join(SPLUNK_METRIC_KEYS)}")
        _send(col.http_endpoint, TAGS)
        hec.wait_for(lambda r: bool(r.logs()) and bool(r.points()), 30)
        assert col.stop() == 0, col.output()
    (log,) = hec.logs()
    # splunk_hec sends every resource attribute as an indexed field: a flat list as a
    # multi-value field, a map flattened with dots (metaflow_tag.team).
    assert log.resource["metaflow.tags"] == TAGS
    assert log.resource["metaflow_tag"] == tag_shapes.splunk_fields(TAGS)
    assert not any(key.startswith("mfotel.") for key in log.resource)
    (point,) = hec.points()
    # Splunk field names are case-sensitive: team:ml and Team:Data are two keys.
    assert (point.attributes.get("team"), point.attributes.get("Team")) == ("ml", "ML")
    named = {k: v for k, v in point.attributes.items() if k in SPLUNK_METRIC_KEYS}
    assert named == tag_shapes.splunk_dimensions(TAGS, SPLUNK_METRIC_KEYS), point.attributes
    assert "metaflow.tags" not in point.resource and "metaflow_tag" not in point.resource
    assert "metaflow.run.id" not in point.identity  # a run is not a metric dimension


def test_cloudwatch_metrics_get_only_the_named_tags_as_dimensions(
    tmp_path: Path, collector_binary: Path
) -> None:
    named = ["region", "url", "dup"]
    stand_in, _ = cloudwatch_stand_in("eu-west-1")
    with stand_in as aws, CollectorProcess(collector_binary, tmp_path) as col:
        col.render_for(
            ["cloudwatch"],
            "dev",
            [*cloudwatch_settings(aws), f"metric_tag_keys={','.join(named)}"],
        )
        col.start(env=aws_env("eu-west-1"))
        _send(col.http_endpoint, TAGS)
        aws.wait_for(lambda r: bool(r.logs()) and bool(r.points()), 30)
        assert col.stop() == 0, col.output()
    assert not aws.refused, aws.refused
    (point,) = aws.points()
    dimensions = {k: v for k, v in point.identity.items() if not k.startswith("service.")}
    assert dimensions == {
        "metaflow.flow.name": "TagFlow",
        **tag_shapes.cloudwatch_dimensions(TAGS, named),
    }, dimensions
    assert dimensions["region"] == "eu west" and dimensions["dup"] == "2"
    (log,) = aws.logs()
    assert log.resource["metaflow.tags"] == TAGS  # logs keep the list, for Logs Insights


def test_tags_given_to_metaflow_reach_datadog(tmp_path: Path, collector_binary: Path) -> None:
    with DatadogIntake(DD_TEST_API_KEY) as dd, CollectorProcess(collector_binary, tmp_path) as col:
        col.render_for(["datadog"], "dev", datadog_settings(dd))
        col.start(env={"DD_API_KEY": DD_TEST_API_KEY})
        run_route_flow(
            col.http_endpoint,
            tmp_path,
            MFOTEL_TAGS="Team:ML,nightly run,env:prod",
            OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE="delta",
        )
        dd.wait_for(lambda d: len(d.logs) >= 17 and bool(d.spans), 30)
        assert col.stop() == 0, col.output()
    for log in dd.logs:
        tags = log["ddtags"].split(",")
        assert {"team:ml", "nightly_run", "metaflow_env:prod", "env:dev"} <= set(tags), tags
        assert any(t.startswith("user:") for t in tags)  # Metaflow's own system tags too
        attributes = json.loads(log["message"])
        assert {"Team:ML", "nightly run", "env:prod"} <= set(
            json.loads(attributes["metaflow.tags"])
        )
    end = next(s for s in dd.spans if s["resource"] == "end")
    assert end["meta"]["team"] == "ml" and end["meta"]["metaflow_env"] == "prod"


def test_the_splunk_stand_in_swap_keeps_every_pipeline_whole(tmp_path: Path) -> None:
    """replace_splunk_hec (used above) leaves no pipeline pointing at a missing exporter."""
    from mfotel.collector import render

    path = tmp_path / "otelcol.yaml"
    path.write_text(render(["splunk"], "dev", ["traces_to=hec"]))
    replace_splunk_hec(path, "http://127.0.0.1:1")
    config = yaml.safe_load(path.read_text())
    assert not any(name.startswith("splunk_hec") for name in config["exporters"])
    for pipe in config["service"]["pipelines"].values():
        assert set(pipe["exporters"]) <= set(config["exporters"]), pipe


def _readme_rows() -> list[list[str | None]]:
    text = (REPO / "README.md").read_text()
    section = text.split("## Metaflow tags in Datadog, Splunk and CloudWatch", 1)[1]
    rows = [line for line in section.split("\n## ", 1)[0].splitlines() if line.startswith("| `")]
    cells = [[c.strip() for c in row.strip().strip("|").split("|")] for row in rows]
    return [[None if c == "—" else c.strip("`") for c in row] for row in cells]


def _pair(cell: str | None, prefix: str = "") -> dict[str, str]:
    if cell is None:
        return {}
    key, _, value = cell.removeprefix(prefix).partition("=")
    return {key: value}


def test_the_readme_tag_table_is_what_the_collector_sends() -> None:
    """Each row, by the rules the collector tests above hold the real collector to."""
    rows = _readme_rows()
    assert len(rows) >= 8
    for tag, dd_log, dd_span, splunk, dimension in rows:
        assert tag is not None and tag in TAGS, f"{tag!r}: add it to TAGS so it is measured"
        assert tag_shapes.datadog_tags([tag]) == ([dd_log] if dd_log else []), tag
        assert tag_shapes.datadog_span_tags([tag]) == _pair(dd_span), tag
        assert tag_shapes.splunk_fields([tag]) == _pair(splunk, "metaflow_tag."), tag
        key = tag.partition(":")[0]
        assert tag_shapes.cloudwatch_dimensions([tag], [key]) == _pair(dimension), tag
        assert tag_shapes.splunk_dimensions([tag], [key]) == _pair(dimension), tag
