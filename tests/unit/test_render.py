"""Rendering collector configs: goldens, settings, secrets and bad input."""

from __future__ import annotations

import pytest
import yaml
from click.testing import CliRunner

from mfotel.cli import main
from mfotel.collector import RenderError, render, targets
from tests.goldens import cases


@pytest.mark.parametrize("case", cases(), ids=lambda c: c.id)
def test_each_golden_is_what_the_template_renders(case) -> None:  # type: ignore[no-untyped-def]
    assert case.path.exists(), f"missing golden {case.path}: run python tests/goldens.py"
    assert case.render() == case.path.read_text(), (
        f"{case.path} differs from the template's output: review, then python tests/goldens.py"
    )


def test_every_target_has_a_readme_and_golden_cases() -> None:
    names = {c.target for c in cases()}
    for name, target in targets().items():
        assert target.readme.is_file(), f"{name} has no README.md"
        assert name in names, f"{name} has no cases.yaml"
        for key in target.settings:
            assert f"`{key}`" in target.readme.read_text(), f"{name}'s README omits `{key}`"


@pytest.mark.parametrize("name", sorted(targets()))
def test_every_config_has_the_common_steps(name: str) -> None:
    for profile in ("dev", "prod"):
        config = yaml.safe_load(render([name], profile))
        assert set(config["receivers"]["otlp"]["protocols"]) == {"grpc", "http"}
        assert "health_check" in config["service"]["extensions"]
        pipelines = config["service"]["pipelines"]
        assert {p.split("/")[0] for p in pipelines} >= {"traces", "metrics", "logs"}
        for pipe_name, pipe in pipelines.items():
            assert pipe["receivers"] == ["otlp"], pipe_name
            procs = pipe["processors"]
            assert procs[0] == "memory_limiter", pipe_name
            assert "redaction/secrets" in procs, pipe_name
            assert procs[-1] == "batch", pipe_name
        network = [
            e for e in config["exporters"].values() if isinstance(e, dict) and "sending_queue" in e
        ]
        for exporter in network:
            queued = exporter["sending_queue"].get("storage") == "file_storage/queue"
            assert queued == (profile == "prod")
        if profile == "prod" and network:
            assert "file_storage/queue" in config["service"]["extensions"]


def test_fan_out_shares_the_receiver_and_names_pipelines_per_target() -> None:
    every = sorted(targets())
    config = yaml.safe_load(render(every))
    assert list(config["receivers"]) == ["otlp"]
    pipelines = set(config["service"]["pipelines"])
    for name in every:
        assert f"logs/{name}" in pipelines


def test_a_target_named_twice_renders_once() -> None:
    assert render(["debug", "debug"]) == render(["debug"]).replace(
        "--target debug --profile", "--target debug --target debug --profile"
    )


def test_settings_reach_the_config_and_qualified_keys_work() -> None:
    config = yaml.safe_load(
        render(["debug"], "dev", ["debug.verbosity=detailed", "environment=staging"])
    )
    assert config["exporters"]["debug/debug"]["verbosity"] == "detailed"
    env = config["processors"]["resource/environment"]["attributes"][0]
    assert env == {"key": "deployment.environment.name", "value": "staging", "action": "insert"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--target", "nope"], "--target 'nope' is unknown: choose one of"),
        ([], "no --target given: choose one or more of"),
        (
            ["-t", "debug", "--profile", "live"],
            "--profile 'live' is unknown: choose one of dev, prod",
        ),
        (
            ["-t", "debug", "--set", "colour=red"],
            "--set colour: unknown setting; valid settings are",
        ),
        (
            ["-t", "debug", "--set", "verbosity=loud"],
            "verbosity='loud' is not valid: choose one of",
        ),
        (["-t", "debug", "--set", "memory_limit_mib=lots"], "memory_limit_mib='lots' is not valid"),
        (["-t", "debug", "--set", "novalue"], "--set 'novalue' is not KEY=VALUE"),
        (["-t", "debug", "--set", "datadog.site=x"], "'datadog' is not a chosen target"),
    ],
)
def test_bad_input_is_one_line_naming_it_and_exits_non_zero(args: list[str], message: str) -> None:
    result = CliRunner().invoke(main, ["render-config", *args])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.output
    if "unknown: choose one of" in message and "profile" not in message:
        assert all(name in lines[0] for name in targets())


def test_render_config_writes_a_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "otelcol.yaml"
    result = CliRunner().invoke(main, ["render-config", "-t", "debug", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_text() == render(["debug"])


def test_unknown_setting_error_is_a_render_error() -> None:
    with pytest.raises(RenderError):
        render(["debug"], "dev", ["nope=1"])
