"""``mfotel splunk forwarder-config``: a Splunk Universal Forwarder app for Metaflow's logs."""

from __future__ import annotations

import os

import click

from mfotel.cli._fail import fail
from mfotel.integrations.splunk import (
    DEFAULT_APP,
    WORKER_LOG_DIR,
    ForwarderConfigError,
    ForwarderOptions,
    default_log_dir,
    render,
    write_app,
)


@click.group("splunk")
def splunk() -> None:
    """Splunk without the collector: an app for the Universal Forwarder."""


@splunk.command("forwarder-config")
@click.option(
    "--log-dir",
    "log_dirs",
    multiple=True,
    metavar="PATH",
    help="A folder to monitor; repeat for more (default: the .metaflow folder found from "
    f"here, as Metaflow finds it; with --worker, {WORKER_LOG_DIR}).",
)
@click.option(
    "--worker",
    is_flag=True,
    help="Monitor the logs a task writes on a remote worker ($PWD/.logs/mflog_*) instead of "
    "the local datastore.",
)
@click.option("--index", default=None, help="Default: as `mfotel render-config --target splunk`.")
@click.option(
    "--sourcetype",
    default=None,
    help="Runtime lines get <sourcetype>:runtime (default: as the splunk target).",
)
@click.option("--app", default=DEFAULT_APP, show_default=True, help="The app's folder name.")
@click.option(
    "--output-dir",
    "-o",
    default=None,
    metavar="DIR",
    help="Write DIR/<app>/local/*.conf and DIR/<app>/metadata/local.meta instead of printing.",
)
def forwarder_config(
    log_dirs: tuple[str, ...],
    worker: bool,
    index: str | None,
    sourcetype: str | None,
    app: str,
    output_dir: str | None,
) -> None:
    """Print (or write) inputs, props, transforms and fields for Metaflow's task logs."""
    if not log_dirs:
        log_dirs = (WORKER_LOG_DIR if worker else _default_log_dir(),)
    options = ForwarderOptions(log_dirs, worker, index, sourcetype, app)
    try:
        files = render(options)
        if output_dir is None:
            for relative, text in files.items():
                click.echo(f"# --- {relative} ---\n{text}")
            return
        written = write_app(files, output_dir, app)
    except ForwarderConfigError as err:
        fail(err)
    for path in written:
        click.echo(f"mfotel: wrote {path}", err=True)
    click.echo(
        f"mfotel: copy {os.path.dirname(os.path.dirname(written[0]))} to $SPLUNK_HOME/etc/apps/ "
        "on the forwarder, and without local/inputs.conf to the indexers and search heads",
        err=True,
    )


def _default_log_dir() -> str:
    root = default_log_dir(os.environ)
    if not os.path.isdir(root):
        fail(
            f"no Metaflow datastore here ({root} does not exist): run from the folder your "
            "flows run in, or pass --log-dir"
        )
    return root
