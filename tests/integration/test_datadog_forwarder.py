"""`mfotel datadog forwarder-setup` against moto's server, run as a user runs it.

Each test gets its own AWS region of the session's moto server, holding what a team that
installed the Datadog Forwarder has: an IAM role, the Forwarder (a Lambda function), the
CloudFormation stack whose ``DatadogForwarderArn`` output names it, and the log group
``/aws/batch/job`` with streams named as AWS Batch names Metaflow's. Tests never see each
other's resources, and what the command did is checked with boto3 against the same server.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from click.testing import CliRunner

from mfotel.integrations import datadog as dd
from mfotel.integrations.datadog import _forwarder
from tests.emulators import MotoServer

COMMAND = [sys.executable, "-m", "mfotel.cli", "datadog", "forwarder-setup"]
GROUP = dd.DEFAULT_LOG_GROUP
STACK_SID = "datadog-forwarder-CloudWatchLogsInvokePermission-1X2Y3Z"  # as CloudFormation names it
REPO = Path(__file__).resolve().parents[2]

# Every region moto serves CloudWatch Logs in, but us-east-1, which other tests' S3 uses.
_REGIONS = iter(
    r for r in boto3.session.Session().get_available_regions("logs") if r != "us-east-1"
)
_names = itertools.count()


def _fresh_region() -> str:
    region = next(_REGIONS, None)
    if region is None:
        pytest.fail("more tests here than AWS regions to isolate them in: share a world")
    return region


def _metaflow_stream(seed: str) -> str:
    """A stream named as AWS Batch names one of a Metaflow job's attempts."""
    job_definition = "metaflow_" + hashlib.sha224(seed.encode()).hexdigest()
    return f"{job_definition}/default/{hashlib.md5(seed.encode()).hexdigest()}"


@dataclass
class World:
    """One region of the moto server with a Forwarder, its stack and the Batch log group."""

    moto: MotoServer
    region: str
    tmp: Path
    forwarder_arn: str = ""
    role_arn: str = ""
    account: str = ""

    def client(self, service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.moto.endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name=self.region,
        )

    def env(self, drop: Sequence[str] = (), **extra: str) -> dict[str, str]:
        """The environment of a user whose AWS settings point at this world's region."""
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("AWS_", "OTEL_", "MF_", "MFOTEL_"))
        }
        env.update(self.moto.env)
        env.update(
            AWS_DEFAULT_REGION=self.region,
            AWS_EC2_METADATA_DISABLED="true",  # no instance-metadata lookups off loopback
            AWS_CONFIG_FILE=str(self.tmp / "no-aws-config"),
            AWS_SHARED_CREDENTIALS_FILE=str(self.tmp / "no-aws-credentials"),
        )
        for name in drop:
            env.pop(name, None)
        env.update(extra)
        return env

    def run(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*COMMAND, *args],
            env=self.env() if env is None else env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def make_function(self, name: str) -> str:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr("forwarder.py", "def handler(event, context):\n    return None\n")
        created = self.client("lambda").create_function(
            FunctionName=name,
            Runtime="python3.11",
            Role=self.role_arn,
            Handler="forwarder.handler",
            Code={"ZipFile": buf.getvalue()},
        )
        return str(created["FunctionArn"])

    def make_stack(self, name: str, outputs: dict[str, str]) -> None:
        template = {
            "Resources": {"Handle": {"Type": "AWS::CloudFormation::WaitConditionHandle"}},
            "Outputs": {key: {"Value": value} for key, value in outputs.items()},
        }
        self.client("cloudformation").create_stack(
            StackName=name, TemplateBody=json.dumps(template)
        )

    def filters(self, group: str = GROUP) -> dict[str, dict[str, Any]]:
        answer = self.client("logs").describe_subscription_filters(logGroupName=group)
        return {f["filterName"]: f for f in answer["subscriptionFilters"]}

    def statements(self, function: str | None = None) -> dict[str, dict[str, Any]]:
        try:
            answer = self.client("lambda").get_policy(FunctionName=function or self.forwarder_arn)
        except ClientError as err:
            assert err.response["Error"]["Code"] == "ResourceNotFoundException"
            return {}
        return {s["Sid"]: s for s in json.loads(answer["Policy"])["Statement"]}

    @property
    def source_arn(self) -> str:
        return dd.log_group_arn("aws", self.region, self.account, GROUP)

    @property
    def sid(self) -> str:
        return dd.statement_id(self.source_arn)

    def assert_untouched(self) -> None:
        assert self.filters() == {}
        assert self.statements() == {}


@pytest.fixture
def world(moto_server: MotoServer, tmp_path: Path) -> Iterator[World]:
    """A fresh region with the Forwarder, its stack and /aws/batch/job with Metaflow streams."""
    w = World(moto_server, _fresh_region(), tmp_path)
    n = next(_names)
    w.account = w.client("sts").get_caller_identity()["Account"]
    w.role_arn = w.client("iam").create_role(
        RoleName=f"datadog-forwarder-role-{n}",
        AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}),
    )["Role"]["Arn"]
    w.forwarder_arn = w.make_function("datadog-forwarder-Forwarder-1A2B3C")
    w.make_stack(dd.DEFAULT_STACK_NAME, {dd.STACK_OUTPUT: w.forwarder_arn})
    logs = w.client("logs")
    logs.create_log_group(logGroupName=GROUP)
    for seed in ("start", "end"):
        logs.create_log_stream(logGroupName=GROUP, logStreamName=_metaflow_stream(seed))
    yield w


def _one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


def _calls(stdout: str, tag: str) -> list[tuple[str, str, dict[str, Any]]]:
    """The ``read``/``write`` lines of a dry run as (service, operation, parameters)."""
    found = []
    for line in stdout.splitlines():
        kind, service, operation, params = line.split(maxsplit=3)
        if kind == tag:
            found.append((service, operation, json.loads(params)))
    return found


# --- Setting up, twice, dry, and removing -----------------------------------------------------


def test_setup_subscribes_the_group_and_lets_cloudwatch_logs_invoke_the_forwarder(
    world: World,
) -> None:
    """A first run adds mfotel's permission statement and filter, and prints the pipeline."""
    result = world.run()
    assert result.returncode == 0, result.stderr
    ours = world.filters()[dd.FILTER_NAME]
    assert ours["destinationArn"] == world.forwarder_arn
    assert ours["filterPattern"] == ""
    statement = world.statements()[world.sid]
    assert statement["Principal"] == {"Service": "logs.amazonaws.com"}
    assert statement["Action"] == "lambda:InvokeFunction"
    assert statement["Condition"]["ArnLike"] == {"AWS:SourceArn": world.source_arn}
    assert statement["Condition"]["StringEquals"] == {"AWS:SourceAccount": world.account}
    assert world.sid.startswith("mfotel-cloudwatch-logs-")
    assert "2 Metaflow log stream(s) in /aws/batch/job" in result.stderr
    assert "set up: 2 change(s) made" in result.stderr
    assert "every event of /aws/batch/job goes to Datadog" in result.stderr
    assert json.loads(result.stdout) == dd.datadog_pipeline(GROUP)


def test_second_run_changes_nothing_and_says_so(world: World) -> None:
    """Run again, the command finds everything in place, changes nothing and says so."""
    assert world.run().returncode == 0
    filters, statements = world.filters(), world.statements()
    again = world.run()
    assert again.returncode == 0, again.stderr
    assert "already set up, nothing changed" in again.stderr
    assert "done:" not in again.stderr
    assert world.filters() == filters  # same creation time: not even re-put
    assert world.statements() == statements


def test_dry_run_prints_the_exact_calls_and_changes_nothing(world: World) -> None:
    """--dry-run prints each call as service, operation and JSON parameters, and makes no write."""
    dry = world.run("--dry-run")
    assert dry.returncode == 0, dry.stderr
    world.assert_untouched()
    reads = _calls(dry.stdout, "read")
    assert reads[0] == ("sts", "GetCallerIdentity", {})
    assert ("cloudformation", "DescribeStacks", {"StackName": "datadog-forwarder"}) in reads
    assert ("lambda", "GetFunction", {"FunctionName": world.forwarder_arn}) in reads
    assert _calls(dry.stdout, "write") == [
        (
            "lambda",
            "AddPermission",
            {
                "FunctionName": world.forwarder_arn,
                "StatementId": world.sid,
                "Action": "lambda:InvokeFunction",
                "Principal": "logs.amazonaws.com",
                "SourceArn": world.source_arn,
                "SourceAccount": world.account,
            },
        ),
        (
            "logs",
            "PutSubscriptionFilter",
            {
                "logGroupName": GROUP,
                "filterName": dd.FILTER_NAME,
                "filterPattern": "",
                "destinationArn": world.forwarder_arn,
            },
        ),
    ]
    assert "nothing changed; a real run would also make the 2 `write` call(s)" in dry.stderr
    assert world.run().returncode == 0
    after = world.run("--dry-run")
    assert after.returncode == 0
    assert _calls(after.stdout, "write") == []
    assert "dry run: nothing to change" in after.stderr


def test_remove_deletes_only_mfotels_filter_and_statement(world: World) -> None:
    """--remove deletes mfotel's filter and statement, leaves others' alone, and is idempotent."""
    assert world.run().returncode == 0
    other = world.make_function("team-log-archiver")
    world.client("logs").put_subscription_filter(
        logGroupName=GROUP, filterName="archive", filterPattern="ERROR", destinationArn=other
    )
    world.client("lambda").add_permission(
        FunctionName=world.forwarder_arn,
        StatementId="team-s3-invoke",
        Action="lambda:InvokeFunction",
        Principal="s3.amazonaws.com",
    )
    removed = world.run("--remove")
    assert removed.returncode == 0, removed.stderr
    assert "removed 2 change(s)" in removed.stderr
    assert list(world.filters()) == ["archive"]
    assert list(world.statements()) == ["team-s3-invoke"]
    again = world.run("--remove")
    assert again.returncode == 0, again.stderr
    assert "nothing to remove, nothing changed" in again.stderr
    assert list(world.filters()) == ["archive"]
    assert list(world.statements()) == ["team-s3-invoke"]


def test_remove_dry_run_prints_the_deletes_and_keeps_everything(world: World) -> None:
    """--remove --dry-run names both deletions and deletes neither."""
    assert world.run().returncode == 0
    dry = world.run("--remove", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert _calls(dry.stdout, "write") == [
        ("logs", "DeleteSubscriptionFilter", {"logGroupName": GROUP, "filterName": dd.FILTER_NAME}),
        (
            "lambda",
            "RemovePermission",
            {"FunctionName": world.forwarder_arn, "StatementId": world.sid},
        ),
    ]
    assert dd.FILTER_NAME in world.filters()
    assert world.sid in world.statements()


# --- Options and what is already there ---------------------------------------------------------


def test_filter_pattern_option_is_used_and_changed_in_place(world: World) -> None:
    """--filter-pattern sets the filter's pattern; a later run with another one updates it."""
    first = world.run("--filter-pattern", "?ERROR ?Traceback")
    assert first.returncode == 0, first.stderr
    assert world.filters()[dd.FILTER_NAME]["filterPattern"] == "?ERROR ?Traceback"
    assert "every event" not in first.stderr
    # CloudWatch's verdict on the pattern; moto does not implement TestMetricFilter (it answers
    # 500), and then the command says it could not check the pattern, on one line.
    checked = "a task's line such as 'epoch 3: loss 0.412' and"
    unchecked = "could not check --filter-pattern '?ERROR ?Traceback' with logs TestMetricFilter"
    verdicts = [line for line in first.stderr.splitlines() if checked in line or unchecked in line]
    assert len(verdicts) == 1, first.stderr
    second = world.run()
    assert second.returncode == 0, second.stderr
    assert "now sends pattern '' to the Forwarder (was '?ERROR ?Traceback'" in second.stderr
    assert world.filters()[dd.FILTER_NAME]["filterPattern"] == ""
    assert list(world.statements()) == [world.sid]


def test_forwarder_arn_option_and_aws_region_need_no_stack(world: World) -> None:
    """--forwarder-arn skips CloudFormation, and AWS_REGION alone gives the region."""
    env = world.env(drop=["AWS_DEFAULT_REGION"], AWS_REGION=world.region)
    result = world.run(
        "--forwarder-arn", world.forwarder_arn, "--stack-name", "no-such-stack", env=env
    )
    assert result.returncode == 0, result.stderr
    assert "(--forwarder-arn)" in result.stderr
    assert world.filters()[dd.FILTER_NAME]["destinationArn"] == world.forwarder_arn


def test_region_option_gives_the_region(world: World) -> None:
    """--region is enough when no region is configured anywhere."""
    env = world.env(drop=["AWS_DEFAULT_REGION", "AWS_REGION"])
    result = world.run("--region", world.region, env=env)
    assert result.returncode == 0, result.stderr
    assert dd.FILTER_NAME in world.filters()


@pytest.mark.parametrize(
    ("statement", "reused"),
    [
        # What the Forwarder's own CloudFormation template adds (CloudWatchLogsInvokePermission).
        pytest.param(
            {
                "SourceAccount": "ACCOUNT",
                "SourceArn": "arn:aws:logs:REGION:ACCOUNT:log-group:*:*",
            },
            True,
            id="forwarder-stack-account-wide",
        ),
        pytest.param(
            {"SourceArn": "arn:aws:logs:REGION:ACCOUNT:log-group:/aws/batch/*"},
            True,
            id="wildcard-over-the-group",
        ),
        pytest.param(
            {"SourceArn": "arn:aws:logs:REGION:ACCOUNT:log-group:/aws/lambda/other:*"},
            False,
            id="another-group",
        ),
    ],
)
def test_an_existing_statement_is_reused_only_when_it_covers_the_group(
    world: World, statement: dict[str, str], reused: bool
) -> None:
    """A statement that already lets CloudWatch Logs invoke for the group is used, not copied."""
    params = {
        k: v.replace("REGION", world.region).replace("ACCOUNT", world.account)
        for k, v in statement.items()
    }
    world.client("lambda").add_permission(
        FunctionName=world.forwarder_arn,
        StatementId=STACK_SID,
        Action="lambda:InvokeFunction",
        Principal="logs.amazonaws.com",
        **params,
    )
    result = world.run()
    assert result.returncode == 0, result.stderr
    assert dd.FILTER_NAME in world.filters()
    if reused:
        assert list(world.statements()) == [STACK_SID]
        assert "may already invoke the Forwarder" in result.stderr
        assert f"(statement {STACK_SID})" in result.stderr
    else:
        assert sorted(world.statements()) == sorted([STACK_SID, world.sid])


def test_a_filter_already_sending_the_group_to_the_forwarder_is_not_doubled(world: World) -> None:
    """When another filter already feeds the Forwarder, no second one is added (no duplicates)."""
    world.client("logs").put_subscription_filter(
        logGroupName=GROUP,
        filterName="datadog-auto-trigger",
        filterPattern="",
        destinationArn=world.forwarder_arn,
    )
    result = world.run()
    assert result.returncode == 0, result.stderr
    assert "filter 'datadog-auto-trigger' already sends /aws/batch/job" in result.stderr
    assert "already set up, nothing changed" in result.stderr
    assert list(world.filters()) == ["datadog-auto-trigger"]
    assert world.statements() == {}


def test_two_other_filters_fail_naming_them_and_the_fix(world: World) -> None:
    """At the limit of two filters the command names them, says how to free one, and exits 2."""
    other = world.make_function("team-log-archiver")
    for name in ("archive", "alerts"):
        world.client("logs").put_subscription_filter(
            logGroupName=GROUP, filterName=name, filterPattern="", destinationArn=other
        )
    result = world.run()
    assert result.returncode == 2
    line = _one_line(result.stderr)
    assert line.startswith("mfotel: /aws/batch/job already has 2 subscription filters")
    assert "'archive'" in line and "'alerts'" in line
    assert "aws logs delete-subscription-filter --log-group-name /aws/batch/job" in line
    assert sorted(world.filters()) == ["alerts", "archive"]
    assert world.statements() == {}


# --- Bad input: one line, exit 2, nothing created ----------------------------------------------


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("no-credentials", "no AWS credentials found: set AWS_PROFILE"),
        ("no-region", "no AWS region: set AWS_REGION or pass --region"),
        ("wrong-region", "no CloudFormation stack 'datadog-forwarder' in "),
        ("no-such-stack", "no CloudFormation stack 'forwarder-prod' in "),
        ("stack-without-output", "stack 'not-the-forwarder' has no output DatadogForwarderArn"),
        ("no-such-forwarder", "does not exist in "),
        ("forwarder-in-another-region", "CloudWatch Logs subscribes only a Lambda function of"),
        ("no-such-log-group", "log group /aws/batch/jobs does not exist in "),
    ],
)
def test_bad_input_says_what_and_how_to_fix_in_one_line_and_changes_nothing(
    world: World, case: str, expected: str
) -> None:
    """Each bad input gives one stderr line naming the problem and the fix, exit 2, no change."""
    args: list[str] = []
    env = world.env()
    if case == "no-credentials":
        env = world.env(drop=["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"])
    elif case == "no-region":
        env = world.env(drop=["AWS_DEFAULT_REGION"])
    elif case == "wrong-region":
        args = ["--region", _fresh_region()]  # a region where nothing was ever created
    elif case == "no-such-stack":
        args = ["--stack-name", "forwarder-prod"]
    elif case == "stack-without-output":
        world.make_stack("not-the-forwarder", {"BucketName": "logs"})
        args = ["--stack-name", "not-the-forwarder"]
    elif case == "no-such-forwarder":
        args = ["--forwarder-arn", world.forwarder_arn.replace("Forwarder-1A2B3C", "Gone")]
    elif case == "forwarder-in-another-region":
        args = ["--forwarder-arn", world.forwarder_arn.replace(world.region, "us-east-1")]
    elif case == "no-such-log-group":
        args = ["--log-group", "/aws/batch/jobs"]
    result = world.run(*args, env=env)
    assert result.returncode == 2, result.stdout + result.stderr
    line = _one_line(result.stderr)
    assert line.startswith("mfotel: ") and expected in line, line
    assert result.stdout == ""
    world.assert_untouched()


# --- A change that fails part-way is rolled back ------------------------------------------------


@pytest.fixture
def aws_env(world: World, monkeypatch: pytest.MonkeyPatch) -> World:
    """This process's boto3 pointed at the world's region of the moto server."""
    for name, value in world.env().items():
        if name.startswith("AWS_"):
            monkeypatch.setenv(name, value)
    return world


def test_a_failed_change_rolls_back_what_the_run_changed(aws_env: World) -> None:
    """When the filter cannot be put (the group went away after planning), the permission goes."""
    aws = dd.connect()
    plan = dd.plan_setup(aws, dd.ForwarderOptions())
    assert [c.call.operation for c in plan.changes] == ["AddPermission", "PutSubscriptionFilter"]
    aws_env.client("logs").delete_log_group(logGroupName=GROUP)
    with pytest.raises(dd.ApplyError) as failed:
        dd.apply(aws, plan)
    assert str(failed.value).startswith("logs PutSubscriptionFilter failed (")
    assert "rolled back the 1 change(s) before it, nothing changed" in str(failed.value)
    assert aws_env.statements() == {}


def test_an_undo_that_fails_is_named_with_the_call_that_undoes_it(aws_env: World) -> None:
    """If rolling back fails too, the message names what is left and the exact call to undo it."""

    class UndoRefused(_forwarder.Aws):
        def call(self, call: dd.Call) -> dict[str, Any]:
            if call.operation == "RemovePermission":
                raise _forwarder.AwsError(call, "ServiceException", "injected for this test")
            return super().call(call)

    aws = dd.connect()
    plan = dd.plan_setup(aws, dd.ForwarderOptions())
    aws_env.client("logs").delete_log_group(logGroupName=GROUP)
    with pytest.raises(dd.ApplyError) as failed:
        dd.apply(UndoRefused(aws.session, aws.region), plan)
    message = str(failed.value)
    assert "rolled back 0 change(s), but could not undo: CloudWatch Logs may now invoke" in message
    assert f'undo it with: lambda RemovePermission {{"FunctionName": "{aws_env.forwarder_arn}"' in (
        message
    )
    assert "\n" not in message


def test_the_command_exits_1_with_one_line_when_a_change_is_rolled_back(
    aws_env: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CLI maps a rolled-back change to exit code 1 and one stderr line."""
    from mfotel.cli.datadog import datadog

    real_plan = dd.plan_setup

    def plan_then_lose_the_group(aws: dd.Aws, options: dd.ForwarderOptions) -> dd.Plan:
        plan = real_plan(aws, options)
        aws_env.client("logs").delete_log_group(logGroupName=GROUP)
        return plan

    monkeypatch.setattr(dd, "plan_setup", plan_then_lose_the_group)
    result = CliRunner().invoke(datadog, ["forwarder-setup"])
    assert result.exit_code == 1, result.output
    assert result.stderr.splitlines()[-1].startswith("mfotel: logs PutSubscriptionFilter failed")
    assert "nothing changed" in result.stderr.splitlines()[-1]
    assert result.stdout == ""
    assert aws_env.statements() == {}


# --- The Datadog pipeline ---------------------------------------------------------------------


def test_pipeline_sample_is_a_batch_stream_name_as_metaflow_makes_it() -> None:
    """The grok sample is a stream name of Metaflow's job definitions (metaflow_<sha224>)."""
    job_definition, container, task = _forwarder.SAMPLE_STREAM.split("/")
    assert job_definition.startswith("metaflow_") and len(job_definition) == len("metaflow_") + 56
    assert container == "default" and len(task) == 32
    (parser,) = dd.datadog_pipeline(GROUP)["processors"]
    assert parser["source"] == "aws.awslogs.logStream"
    assert parser["samples"] == [_forwarder.SAMPLE_STREAM]


def test_readme_shows_the_pipeline_the_command_prints() -> None:
    """The README's pipeline JSON is exactly what the command prints for /aws/batch/job."""
    readme = (REPO / "mfotel" / "integrations" / "datadog" / "README.md").read_text()
    assert json.dumps(dd.datadog_pipeline(GROUP), indent=2) in readme
