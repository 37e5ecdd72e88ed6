"""The rendered configs in the real collector: every golden loads, and a real run arrives."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from mfotel.cli import main
from mfotel.collector import validate
from mfotel.collector._build import NOT_IN_SLIM_BUILD
from mfotel.collector._process import missing_env
from mfotel.testing import CollectorProcess
from tests.conftest import run_route_flow
from tests.goldens import cases

pytestmark = pytest.mark.flow


@pytest.mark.parametrize("case", cases(), ids=lambda c: c.id)
def test_every_golden_config_loads_in_the_real_collector(  # type: ignore[no-untyped-def]
    case, collector_binary: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # The secrets a user exports; placeholders here (the collector checks they are set).
    for name in missing_env(case.path.read_text()):
        monkeypatch.setenv(name, "us-east-1" if name == "AWS_REGION" else "0123456789abcdef")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    verdict = validate(case.path, collector_binary)
    lacking = [c for c in NOT_IN_SLIM_BUILD if f'unknown type: "{c}"' in verdict.output]
    if lacking and not verdict.ok:
        # The slim build cannot include these (the module proxy refuses them): check everything
        # else in the config (receivers, processors and their OTTL, the other exporters,
        # pipelines) by putting a debug exporter where each such exporter was.
        stand_in = tmp_path / case.path.name
        stand_in.write_text(_without(case.path.read_text(), lacking))
        verdict = validate(stand_in, collector_binary)
    assert verdict.ok, f"{case.path}:\n{verdict.output}"


def _without(text: str, kinds: list[str]) -> str:
    config = yaml.safe_load(text)
    renamed = {}
    for name in list(config["exporters"]):
        if name.split("/")[0] in kinds:
            del config["exporters"][name]
            renamed[name] = "debug/" + name.replace("/", "_")
            config["exporters"][renamed[name]] = {"verbosity": "basic"}
    assert renamed, "nothing to stand in for"
    for pipe in config["service"]["pipelines"].values():
        pipe["exporters"] = [renamed.get(e, e) for e in pipe["exporters"]]
    return yaml.safe_dump(config, sort_keys=False)


def test_validate_config_reports_the_collectors_own_words(
    tmp_path: Path, collector_binary: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MFOTEL_COLLECTOR_BIN", str(collector_binary))
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "receivers: {otlp: {protocols: {grpc: {}}}}\n"
        "exporters: {debug: {verbosity: loud}}\n"
        "service: {pipelines: {logs: {receivers: [otlp], exporters: [debug]}}}\n"
    )
    result = CliRunner().invoke(main, ["validate-config", str(bad)])
    assert result.exit_code == 1
    assert "loud" in result.output  # the collector's own message about the bad value
    assert "is not valid (the collector's words above)" in result.output
    good = tmp_path / "good.yaml"
    CliRunner().invoke(main, ["render-config", "-t", "debug", "-o", str(good)])
    ok = CliRunner().invoke(main, ["validate-config", str(good)])
    assert ok.exit_code == 0 and "is valid" in ok.output, ok.output
    dd = tmp_path / "dd.yaml"
    CliRunner().invoke(main, ["render-config", "-t", "datadog", "-o", str(dd)])
    monkeypatch.delenv("DD_API_KEY", raising=False)
    unset = CliRunner().invoke(main, ["validate-config", str(dd)])
    assert unset.exit_code == 1 and "api.key is not set" in unset.output
    assert "hint: DD_API_KEY is not set" in unset.output
    missing = CliRunner().invoke(main, ["validate-config", str(tmp_path / "none.yaml")])
    assert missing.exit_code == 2 and "no such file" in missing.output


def _jsonl_logs(path: Path) -> list[dict[str, Any]]:
    """Log records from the file exporter's OTLP/JSON lines, each with its resource attributes."""
    out = []
    for line in path.read_text().splitlines():
        for rl in json.loads(line).get("resourceLogs", []):
            resource = {a["key"]: a["value"] for a in rl["resource"].get("attributes", [])}
            for sl in rl.get("scopeLogs", []):
                for rec in sl.get("logRecords", []):
                    attrs = {a["key"]: a["value"] for a in rec.get("attributes", [])}
                    out.append({"resource": resource, "attrs": attrs, **rec})
    return out


def _text(value: dict[str, Any]) -> str:
    return str(value.get("stringValue", value.get("intValue", "")))


def test_a_real_run_through_the_debug_config_arrives_once_redacted(
    tmp_path: Path, collector_binary: Path
) -> None:
    prefix = tmp_path / "telemetry"
    with CollectorProcess(collector_binary, tmp_path) as col:
        col.render_for(["debug"], "dev", [f"path={prefix}", "environment=ci"])
        col.start()
        run = run_route_flow(col.http_endpoint, tmp_path, METAFLOW_DEFAULT_DATASTORE="local")
        assert col.stop() == 0, col.output()
    logs = _jsonl_logs(Path(f"{prefix}-logs.jsonl"))
    bodies = [_text(r["body"]) for r in logs]
    expected = [f"route start line {i}" for i in range(12)] + [
        f"route end line {i}" for i in range(5)
    ]
    for line in [*expected, "route start err"]:
        assert bodies.count(line) == 1, (line, bodies)
    secret = [b for b in bodies if b.startswith("route secret")]
    assert len(secret) == 1 and "AKIAIOSFODNN7EXAMPLE" not in secret[0], secret
    assert "end" in secret[0]
    one = next(r for r in logs if _text(r["body"]) == "route end line 3")
    identity = {**one["resource"], **one["attrs"]}
    assert _text(identity["metaflow.flow.name"]) == "RouteFlow"
    assert _text(identity["metaflow.run.id"]) == run.run_id
    assert _text(identity["metaflow.step.name"]) == "end"
    # the kit already sent one (its profile, "dev"): the environment setting only fills gaps
    assert _text(identity["deployment.environment.name"]) == "dev"
    assert one.get("traceId") and one.get("spanId")
    assert '"resourceSpans"' in Path(f"{prefix}-traces.jsonl").read_text()
    assert '"resourceMetrics"' in Path(f"{prefix}-metrics.jsonl").read_text()
