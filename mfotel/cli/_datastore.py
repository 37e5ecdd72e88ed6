"""Options shared by the commands that read Metaflow's persisted logs."""

from __future__ import annotations

import os

import click

from mfotel._internal import paths
from mfotel.cli._fail import fail
from mfotel.logs._backfill import BackfillError, default_datastore, default_root
from mfotel.logs._layout import Pathspec, PathspecError, parse_pathspec
from mfotel.logs._stores import DATASTORES, LogStore, StoreError, open_store


def datastore_options(f: click.decorators.FC) -> click.decorators.FC:
    opts = [
        click.option(
            "--datastore",
            type=click.Choice(DATASTORES),
            default=None,
            help="Where the runs persisted their logs (default: Metaflow's DEFAULT_DATASTORE).",
        ),
        click.option(
            "--datastore-root",
            default=None,
            metavar="URL",
            help="The datastore's root, e.g. s3://bucket/metaflow (default: Metaflow's "
            "configured DATASTORE_SYSROOT_*; for local, the .metaflow folder found from here).",
        ),
        click.option(
            "--state-dir",
            type=click.Path(file_okay=False),
            default=None,
            help="The kit's state folder with the live ledger and the checkpoints "
            "(default: MFOTEL_STATE_DIR, else .mfotel under the local datastore root).",
        ),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def open_datastore(datastore: str | None, root: str | None) -> LogStore:
    name = datastore or default_datastore()
    try:
        return open_store(name, root or default_root(name))
    except (StoreError, BackfillError) as err:
        fail(err)


def state_folder(state_dir: str | None) -> str:
    return os.path.abspath(state_dir) if state_dir else paths.state_dir(os.environ)


def pathspecs(texts: tuple[str, ...]) -> list[Pathspec]:
    try:
        return [parse_pathspec(text) for text in texts]
    except PathspecError as err:
        fail(err)
