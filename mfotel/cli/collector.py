"""``mfotel render-config``, ``mfotel validate-config`` and ``mfotel collector build|run``."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import click

from mfotel import collector as col
from mfotel.cli._fail import fail


def _target_option(f: click.decorators.FC) -> click.decorators.FC:
    opts = [
        click.option(
            "--target",
            "-t",
            "target_names",
            multiple=True,
            help="datadog, splunk, cloudwatch or debug; repeat it to fan out to several.",
        ),
        click.option(
            "--profile",
            default="dev",
            show_default=True,
            help="dev, or prod (persistent sending queue, longer retries).",
        ),
        click.option(
            "--set",
            "assignments",
            multiple=True,
            metavar="KEY=VALUE",
            help="A target setting (see each target's README), e.g. site=datadoghq.eu.",
        ),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def _render(target_names: tuple[str, ...], profile: str, assignments: tuple[str, ...]) -> str:
    try:
        return col.render(list(target_names), profile, list(assignments))
    except col.RenderError as err:
        fail(err)


@click.command("render-config")
@_target_option
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write here instead of printing.",
)
def render_config(
    target_names: tuple[str, ...], profile: str, assignments: tuple[str, ...], output: str | None
) -> None:
    """Print an OpenTelemetry Collector config that routes mfotel's telemetry to TARGETs."""
    text = _render(target_names, profile, assignments)
    if output is None:
        click.echo(text, nl=False)
        return
    Path(output).write_text(text)
    click.echo(f"mfotel: wrote {output}; check it with `mfotel validate-config {output}`", err=True)


@click.command("validate-config")
@click.argument("config", type=click.Path(dir_okay=False))
def validate_config(config: str) -> None:
    """Load CONFIG in a real collector (otelcol validate) and report its verdict."""
    try:
        verdict = col.validate(Path(config))
    except col.CollectorError as err:
        fail(err)
    if verdict.output:
        click.echo(verdict.output, err=not verdict.ok)
    if not verdict.ok:
        click.echo(f"mfotel: {config} is not valid (the collector's words above)", err=True)
        raise SystemExit(1)
    click.echo(f"mfotel: {config} is valid for {verdict.binary}")


@click.group("collector")
def collector() -> None:
    """Build and run mfotel's slim OpenTelemetry Collector."""


@collector.command("build")
@click.option("--force", is_flag=True, help="Rebuild even if the binary is cached.")
def build(force: bool) -> None:
    """Build the slim collector with the OpenTelemetry Collector Builder (cached by manifest)."""
    try:
        path = col.build(force=force, log=lambda line: click.echo(line, err=True))
    except col.CollectorError as err:
        fail(err)
    click.echo(str(path))


@collector.command("run")
@_target_option
def run(target_names: tuple[str, ...], profile: str, assignments: tuple[str, ...]) -> None:
    """Render a config for TARGETs and run the collector with it in the foreground."""
    text = _render(target_names, profile, assignments)
    with tempfile.TemporaryDirectory(prefix="mfotel-collector-") as tmp:
        config = Path(tmp) / "otelcol.yaml"
        config.write_text(text)
        try:
            code = col.run(config)
        except col.CollectorError as err:
            fail(err)
    sys.exit(code)
