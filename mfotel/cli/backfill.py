"""``mfotel backfill``: send the logs Metaflow persisted, each line once."""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import click

from mfotel.cli._datastore import datastore_options, open_datastore, pathspecs, state_folder
from mfotel.cli._fail import fail
from mfotel.logs._backfill import Backfill, BackfillError, parse_since
from mfotel.logs._checkpoint import CheckpointError
from mfotel.logs._stores import StoreError


@click.command()
@click.argument("pathspec", nargs=-1, required=True)
@datastore_options
@click.option(
    "--since",
    default=None,
    metavar="WHEN",
    help="Only logs persisted since then: 30m, 12h, 7d, or a date such as 2026-11-30. "
    "Needed for a whole flow.",
)
@click.option(
    "--jobs",
    "-j",
    type=click.IntRange(1, 64),
    default=4,
    show_default=True,
    help="Files read and sent at once.",
)
@click.option(
    "--trace",
    type=click.Choice(["auto", "derived", "none"]),
    default="auto",
    show_default=True,
    help="Correlate records with the run's trace: auto when mfotel traced the run here, "
    "derived to assume it traced the run elsewhere, none to leave records uncorrelated.",
)
@click.option("--reset", is_flag=True, help="Forget the checkpoints of these pathspecs first.")
@click.option(
    "--progress/--no-progress", default=None, help="A progress bar (default: on a terminal)."
)
def backfill(
    pathspec: tuple[str, ...],
    datastore: str | None,
    datastore_root: str | None,
    state_dir: str | None,
    since: str | None,
    jobs: int,
    trace: str,
    reset: bool,
    progress: bool | None,
) -> None:
    """Send the logs Metaflow persisted for PATHSPEC (Flow/run[/step[/task]], or a Flow with
    --since) as OTLP log records with their original timestamps; a second run sends nothing
    twice. Exit 0 when everything was sent, 1 when the collector stopped taking them (run it
    again to go on), 2 for bad input."""
    specs = pathspecs(pathspec)
    try:
        since_s = parse_since(since, time.time()) if since else None
    except BackfillError as err:
        fail(err)
    for spec in specs:
        if spec.run is None and since_s is None:
            fail(
                f"pathspec {spec} is a whole flow: add --since (e.g. --since 7d), or name a run "
                f"({spec}/RUN_ID)"
            )
    store = open_datastore(datastore, datastore_root)
    state = state_folder(state_dir)
    _warn_about_spool()
    bar: Any = None
    try:
        engine = Backfill(store, state, os.environ, jobs, trace)
        logs = engine.plan(specs, since_s)
        if reset:
            for flow, run in {(log.flow, log.run) for log in logs}:
                for spec in specs:
                    if spec.flow == flow and spec.run in (None, run):
                        under = None if spec.step is None else f"/{spec}/"
                        engine.checkpoints.reset(flow, run, under)
        show = sys.stderr.isatty() if progress is None else progress
        if show:
            bar = click.progressbar(
                length=sum(log.size for log in logs), label="backfill", file=sys.stderr
            )
            bar.__enter__()
            engine.progress = bar.update
        try:
            result = engine.run(logs)
        finally:
            engine.close()
    except (BackfillError, CheckpointError, StoreError) as err:
        fail(err)
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)
    click.echo(result.summary())
    if result.uncorrelated_runs and trace == "auto":
        click.echo(
            "mfotel backfill: not correlated with a trace (mfotel did not trace them here; "
            f"--trace derived if it did elsewhere): {', '.join(result.uncorrelated_runs)}",
            err=True,
        )
    if not result.ok:
        click.echo(
            f"mfotel backfill: stopped: {result.error}; nothing is lost: run the same command "
            "again to go on from the checkpoint",
            err=True,
        )
        raise SystemExit(1)


def _warn_about_spool() -> None:
    """Spooled live log records are not in the ledger yet: replayed after a backfill, the
    lines they hold would arrive twice."""
    from mfotel._internal.agent.spool import Spool
    from mfotel._internal.paths import spool_dir

    pending = Spool(spool_dir(os.environ), 0).pending()
    if pending["logs"] or pending["inbox"]:
        click.echo(
            f"mfotel backfill: the spool holds {pending['logs']} log request(s) and "
            f"{pending['inbox']} inbox file(s) not sent yet; run `mfotel replay` first, or "
            "those lines may arrive twice",
            err=True,
        )
