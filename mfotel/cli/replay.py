"""``mfotel replay``: send what the spool holds, here or in the datastore."""

from __future__ import annotations

import os

import click

from mfotel._internal import replay as replaying
from mfotel.cli._datastore import open_datastore
from mfotel.cli._fail import fail
from mfotel.logs._stores import DATASTORES, StoreError


@click.command()
@click.option(
    "--spool-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="The spool to send (default: .metaflow/.mfotel/spool as a run here uses).",
)
@click.option(
    "--datastore",
    type=click.Choice(DATASTORES),
    default=None,
    help="Send what tasks in containers left in this datastore instead (.mfotel/spool/ "
    "beside Metaflow's folders).",
)
@click.option(
    "--datastore-root",
    default=None,
    metavar="URL",
    help="That datastore's root, e.g. s3://bucket/metaflow (default: Metaflow's configured "
    "DATASTORE_SYSROOT_*).",
)
def replay(spool_dir: str | None, datastore: str | None, datastore_root: str | None) -> None:
    """Send spooled telemetry to the configured collector; each item at most once."""
    if datastore is not None or datastore_root is not None:
        if spool_dir is not None:
            fail("--spool-dir and --datastore name two spools: give one of them")
        store = open_datastore(datastore, datastore_root)
        try:
            result = replaying.replay_from_store(store, os.environ)
        except StoreError as err:
            fail(err)
    else:
        result = replaying.replay(os.environ, spool_dir)
    for warning in result.warnings:
        click.echo(f"mfotel replay: {warning}", err=True)
    click.echo(result.summary)
    raise SystemExit(0 if result.ok else 1)
