"""``mfotel tail``: follow a running task's logs from its datastore."""

from __future__ import annotations

import os
import time

import click

from mfotel.cli._datastore import datastore_options, open_datastore, pathspecs, state_folder
from mfotel.cli._fail import fail
from mfotel.logs._backfill import Backfill, BackfillError
from mfotel.logs._stores import StoreError
from mfotel.logs._tail import TailError
from mfotel.logs._tail import tail as follow_task


@click.command()
@click.argument("pathspec")
@datastore_options
@click.option("--export", is_flag=True, help="Also send the lines over OTLP, as backfill does.")
@click.option("--timestamps", is_flag=True, help="Prefix each line with its mflog timestamp.")
@click.option(
    "--interval",
    type=click.FloatRange(0.05),
    default=1.0,
    show_default=True,
    help="Seconds between looks at the datastore.",
)
@click.option(
    "--wait",
    type=click.FloatRange(0),
    default=60.0,
    show_default=True,
    help="How long to wait for a task that has no logs yet.",
)
@click.option("--follow/--no-follow", default=True, help="Keep following until the task ends.")
def tail(
    pathspec: str,
    datastore: str | None,
    datastore_root: str | None,
    state_dir: str | None,
    export: bool,
    timestamps: bool,
    interval: float,
    wait: float,
    follow: bool,
) -> None:
    """Print a task's logs (Flow/run/step/task) as Metaflow persists them, until it ends."""
    (spec,) = pathspecs((pathspec,))
    store = open_datastore(datastore, datastore_root)
    exporter = None
    if export:
        try:
            exporter = Backfill(store, state_folder(state_dir), os.environ, jobs=1)
        except BackfillError as err:
            fail(err)

    def echo(text: str, stream: str, time_ns: int) -> None:
        if timestamps and time_ns:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(time_ns / 1e9))
            text = f"{stamp}.{time_ns // 1_000_000 % 1000:03d} {text}"
        click.echo(text, err=stream == "stderr")

    try:
        result = follow_task(store, spec, echo, interval, wait, follow, exporter)
    except (TailError, StoreError) as err:
        fail(err)
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    finally:
        if exporter is not None:
            exporter.close()
    for error in dict.fromkeys(result.errors):
        click.echo(f"mfotel tail: {error}; run `mfotel backfill {spec}` later", err=True)
    raise SystemExit(1 if result.errors else 0)
