"""``mfotel demo``: the example flow, telemetry on, and what arrived."""

from __future__ import annotations

import click

from mfotel._internal.demo import run_demo


@click.command()
@click.option(
    "--keep",
    type=click.Path(file_okay=False),
    default=None,
    help="Run in this folder and keep it (default: a temporary folder).",
)
def demo(keep: str | None) -> None:
    """Run an example flow with MF_TRACING=otlp against an embedded OTLP receiver."""
    raise SystemExit(run_demo(click.echo, keep))
