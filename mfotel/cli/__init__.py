"""The ``mfotel`` command. Each subcommand lives in its own module and stays thin."""

from __future__ import annotations

import click

from mfotel import __version__
from mfotel.cli.backfill import backfill
from mfotel.cli.collector import collector, render_config, validate_config
from mfotel.cli.datadog import datadog
from mfotel.cli.demo import demo
from mfotel.cli.doctor import doctor
from mfotel.cli.logs import logs
from mfotel.cli.replay import replay
from mfotel.cli.splunk import splunk
from mfotel.cli.tail import tail

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mfotel")
def main() -> None:
    """OpenTelemetry for Metaflow: set MF_TRACING=otlp and run your flow as usual."""


main.add_command(doctor)
main.add_command(replay)
main.add_command(demo)
main.add_command(render_config)
main.add_command(validate_config)
main.add_command(collector)
main.add_command(backfill)
main.add_command(tail)
main.add_command(logs)
main.add_command(datadog)
main.add_command(splunk)
