"""``mfotel datadog forwarder-setup``: forward Metaflow's AWS Batch logs with the Datadog Forwarder.

Exit codes: 0 done (or nothing to do); 1 a change failed and what this run had changed was rolled
back; 2 bad input, found before anything was changed.
"""

from __future__ import annotations

import json

import click

from mfotel.cli._fail import fail
from mfotel.integrations import datadog as dd


@click.group("datadog")
def datadog() -> None:
    """Send Metaflow's logs to Datadog by routes other than the collector."""


@datadog.command("forwarder-setup")
@click.option(
    "--log-group",
    default=dd.DEFAULT_LOG_GROUP,
    show_default=True,
    help="The CloudWatch Logs group your Metaflow Batch jobs log to.",
)
@click.option(
    "--forwarder-arn",
    default=None,
    metavar="ARN",
    help="The Datadog Forwarder Lambda function (ARN or name); default: the stack's output.",
)
@click.option(
    "--stack-name",
    default=dd.DEFAULT_STACK_NAME,
    show_default=True,
    help=f"The CloudFormation stack that installed the Forwarder (its {dd.STACK_OUTPUT} output).",
)
@click.option(
    "--filter-pattern",
    default=dd.DEFAULT_FILTER_PATTERN,
    show_default="'': every event",
    help="CloudWatch Logs filter pattern for the events to send (default: every event).",
)
@click.option("--region", default=None, help="AWS region (default: AWS_REGION, boto3's own).")
@click.option(
    "--dry-run", is_flag=True, help="Print the API calls a run would make; change nothing."
)
@click.option("--remove", is_flag=True, help="Remove mfotel's subscription filter and permission.")
def forwarder_setup(
    log_group: str,
    forwarder_arn: str | None,
    stack_name: str,
    filter_pattern: str,
    region: str | None,
    dry_run: bool,
    remove: bool,
) -> None:
    """Subscribe the Datadog Forwarder to the log group of Metaflow's AWS Batch tasks.

    Idempotent: a second run changes nothing. Prints the Datadog log pipeline that turns each
    line's stream name into attributes (Metaflow job definition, ECS task).
    """
    options = dd.ForwarderOptions(log_group, forwarder_arn, stack_name, filter_pattern)
    try:
        aws = dd.connect(region)
        plan = dd.plan_remove(aws, options) if remove else dd.plan_setup(aws, options)
    except dd.SetupError as err:
        fail(err)
    _say(f"Forwarder {plan.forwarder_arn} ({plan.forwarder_source})")
    _say(f"log group {plan.log_group} in {plan.region}, account {plan.account}")
    for note in plan.notes:
        _say(note)
    if dry_run:
        for call in plan.reads:
            click.echo(f"read  {call}")
        for change in plan.changes:
            click.echo(f"write {change.call}")
        if plan.changes_nothing:
            _say("dry run: nothing to change; a real run would make only the `read` calls above")
        else:
            n = len(plan.changes)
            _say(f"dry run: nothing changed; a real run would also make the {n} `write` call(s)")
        return
    try:
        result = dd.apply(aws, plan)
    except dd.ApplyError as err:
        click.echo(f"mfotel: {err}", err=True)
        raise SystemExit(1) from None
    for change in result.made:
        _say(f"done: {change.summary}")
    if remove:
        _say(
            f"removed {len(result.made)} change(s)"
            if result.changed
            else "nothing to remove, nothing changed"
        )
        return
    _say(
        f"set up: {len(result.made)} change(s) made"
        if result.changed
        else "already set up, nothing changed"
    )
    if plan.filter_pattern == "":
        _say(
            f"the filter pattern is empty: every event of {plan.log_group} goes to Datadog, "
            "from Metaflow's jobs and any other (CloudWatch cannot filter on stream names; see "
            f"{dd.README})"
        )
    facets = ", ".join(f"@{name}" for name in dd.FACETS)
    _say(
        "in Datadog, POST this pipeline to /api/v1/logs/config/pipelines (or build its four "
        f"processors in Logs > Pipelines), then make facets of {facets}:"
    )
    click.echo(json.dumps(dd.datadog_pipeline(plan.log_group), indent=2))


def _say(line: str) -> None:
    click.echo(f"mfotel: {line}", err=True)
