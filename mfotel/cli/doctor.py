"""``mfotel doctor``: resolved settings with their sources, extension state, endpoints."""

from __future__ import annotations

import os

import click

from mfotel._internal import diagnose


@click.command()
@click.option(
    "--spool-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="The spool to inspect (default: as a run from this folder would use).",
)
def doctor(spool_dir: str | None) -> None:
    """Show what mfotel would do for a run started here, and whether it can."""
    report = diagnose.run(os.environ, spool_dir)
    click.echo(report.text)
    raise SystemExit(0 if report.ok else 1)
