"""``mfotel logs locate``: where a task's logs live, and the search that finds them."""

from __future__ import annotations

import os

import click

from mfotel.cli._datastore import open_datastore, pathspecs
from mfotel.cli._fail import fail
from mfotel.logs._locate import (
    BACKENDS,
    LocateError,
    Options,
    as_aws_commands,
    as_json,
    as_text,
    batch_streams,
    datastore_of,
    detect_backends,
    locate,
)
from mfotel.logs._stores import DATASTORES, StoreError


@click.group()
def logs() -> None:
    """Metaflow's persisted task logs."""


@logs.command("locate")
@click.argument("pathspec")
@click.option(
    "--datastore",
    type=click.Choice(DATASTORES),
    default=None,
    help="Default: what the task's metadata says (ds-type), else Metaflow's default.",
)
@click.option(
    "--datastore-root",
    default=None,
    metavar="URL",
    help="Default: what the task's metadata says (ds-root).",
)
@click.option(
    "--backend",
    "backends",
    multiple=True,
    type=click.Choice(BACKENDS),
    help="Queries for this backend (repeatable). Default: the ones this environment "
    "is set up for (DD_*, SPLUNK_HEC_*, AWS_REGION), else all.",
)
@click.option("--datadog-site", default=None, help="Default: DD_SITE, else datadoghq.com.")
@click.option("--splunk-index", default="metaflow", show_default=True)
@click.option(
    "--cloudwatch-log-group",
    default="/metaflow/mfotel",
    show_default=True,
    help="The group the kit's cloudwatch target writes to.",
)
@click.option(
    "--batch",
    "batch_only",
    is_flag=True,
    help="Only the AWS Batch CloudWatch streams, as `aws logs get-log-events` commands; "
    "fails when an attempt did not run on Batch.",
)
@click.option("--json", "as_json_output", is_flag=True, help="One JSON document, for scripts.")
def locate_command(
    pathspec: str,
    datastore: str | None,
    datastore_root: str | None,
    backends: tuple[str, ...],
    datadog_site: str | None,
    splunk_index: str,
    cloudwatch_log_group: str,
    batch_only: bool,
    as_json_output: bool,
) -> None:
    """Print where each attempt of PATHSPEC's tasks logged (datastore, CloudWatch, pod), with a
    ready-to-paste search for Datadog, Splunk and CloudWatch."""
    (spec,) = pathspecs((pathspec,))
    if datastore is None and datastore_root is None:
        recorded = datastore_of(spec)
        if recorded is not None:
            datastore, datastore_root = recorded
    options = Options(
        backends=backends or detect_backends(os.environ),
        datadog_site=datadog_site or os.environ.get("DD_SITE") or "datadoghq.com",
        splunk_index=splunk_index,
        cloudwatch_group=cloudwatch_log_group,
    )
    try:
        store = open_datastore(datastore, datastore_root) if spec.run else None
        found = locate(spec, store, options)
        if batch_only:
            found = batch_streams(found)
    except (LocateError, StoreError) as err:
        fail(err)
    if as_json_output:
        click.echo(as_json(found))
    else:
        click.echo(as_aws_commands(found) if batch_only else as_text(found))
