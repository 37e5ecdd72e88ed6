"""``mfotel replay``: send what the spool holds."""

from __future__ import annotations

import os

import click

from mfotel._internal import replay as replaying


@click.command()
@click.option(
    "--spool-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="The spool to send (default: .metaflow/.mfotel/spool as a run here uses).",
)
def replay(spool_dir: str | None) -> None:
    """Send spooled telemetry to the configured collector; each item at most once."""
    result = replaying.replay(os.environ, spool_dir)
    for warning in result.warnings:
        click.echo(f"mfotel replay: {warning}", err=True)
    click.echo(result.summary)
    raise SystemExit(0 if result.ok else 1)
