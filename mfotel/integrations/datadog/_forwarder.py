"""Subscribe the Datadog Forwarder (a Lambda function) to the log group of Metaflow's Batch tasks.

AWS Batch writes every job's container output to the CloudWatch Logs group ``/aws/batch/job``,
one stream per attempt named ``<job definition>/default/<ECS task id>``; Metaflow names its job
definitions ``metaflow_<sha224 of the definition>``. Forwarding them takes two things: a
statement in the Forwarder's resource policy that lets CloudWatch Logs invoke it for that
group, and a subscription filter on the group whose destination is the Forwarder.

Planning only reads (STS, CloudFormation, Lambda, CloudWatch Logs) and checks all it can; it
returns a :class:`Plan`: the changes a run would make, each with the call that undoes it.
:func:`apply` makes them in order and, when one fails, undoes those it made. Nothing here
prints; ``mfotel datadog forwarder-setup`` does.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

DEFAULT_LOG_GROUP = "/aws/batch/job"
DEFAULT_STACK_NAME = "datadog-forwarder"
STACK_OUTPUT = "DatadogForwarderArn"  # the output the Forwarder's own CloudFormation template has
FILTER_NAME = "mfotel-datadog-forwarder"
STATEMENT_PREFIX = "mfotel-cloudwatch-logs-"
METAFLOW_STREAM_PREFIX = "metaflow_"  # Metaflow's job definitions: metaflow_<sha224>
DEFAULT_FILTER_PATTERN = ""  # every event: CloudWatch cannot filter on the stream's name
MAX_SUBSCRIPTION_FILTERS = 2  # CloudWatch Logs' limit per log group
LOGS_PRINCIPAL = "logs.amazonaws.com"  # logs.amazonaws.com.cn in the aws-cn partition
README = "mfotel/integrations/datadog/README.md"

_LAMBDA_ARN = re.compile(
    r"^arn:(?P<partition>aws[a-z-]*):lambda:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):"
    r"function:(?P<name>[A-Za-z0-9_-]+)(?::(?P<qualifier>[A-Za-z0-9$_-]+))?$"
)
_CREDENTIAL_CODES = frozenset(
    {
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "SignatureDoesNotMatch",
        "InvalidSignatureException",
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidAccessKeyId",
    }
)
_DENIED_CODES = frozenset({"AccessDenied", "AccessDeniedException", "UnauthorizedOperation"})


class SetupError(Exception):
    """Bad input or a state this command will not touch; nothing was changed. One line."""


class DeniedError(SetupError):
    """AWS refused a call for lack of an IAM permission."""


class ApplyError(Exception):
    """A change failed part-way; the message says what was rolled back (and what was not)."""


@dataclass(frozen=True)
class Call:
    """One AWS API call: the service (boto3's name), the operation and its parameters."""

    service: str
    operation: str
    params: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.service} {self.operation} {json.dumps(self.params, sort_keys=True)}"


@dataclass(frozen=True)
class Change:
    """A mutating call, the call that undoes it, and what it does in a few words."""

    call: Call
    undo: Call
    summary: str


@dataclass(frozen=True)
class ForwarderOptions:
    """What to subscribe to what: the command's options."""

    log_group: str = DEFAULT_LOG_GROUP
    forwarder_arn: str | None = None  # else the STACK_OUTPUT of stack_name
    stack_name: str = DEFAULT_STACK_NAME
    filter_pattern: str = DEFAULT_FILTER_PATTERN


@dataclass
class Plan:
    """What a run would change, found by the read-only calls in ``reads``."""

    mode: Literal["setup", "remove"]
    region: str
    account: str
    forwarder_arn: str
    forwarder_source: str  # where the ARN came from, for messages
    log_group: str
    filter_pattern: str
    changes: list[Change]
    notes: list[str]
    reads: list[Call]

    @property
    def changes_nothing(self) -> bool:
        return not self.changes


@dataclass
class Result:
    """The changes :func:`apply` made, in order."""

    made: list[Change]

    @property
    def changed(self) -> bool:
        return bool(self.made)


class AwsError(Exception):
    """An error answer from AWS that planning may expect (a stack or group that is not there)."""

    def __init__(self, call: Call, code: str, message: str) -> None:
        super().__init__(f"{call.service} {call.operation}: {code}: {message}")
        self.call = call
        self.code = code
        self.message = message


class Aws:
    """The boto3 clients of one session and region; every call made is recorded in ``made``."""

    def __init__(self, session: Any, region: str) -> None:
        self.session = session
        self.region = region
        self.made: list[Call] = []
        self._clients: dict[str, Any] = {}

    def _client(self, service: str) -> Any:
        if service not in self._clients:
            from botocore.config import Config

            config = Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=10)
            self._clients[service] = self.session.client(
                service, region_name=self.region, config=config
            )
        return self._clients[service]

    def call(self, call: Call) -> dict[str, Any]:
        """Make ``call``; AWS's error answers become AwsError, SetupError or DeniedError."""
        from botocore import xform_name
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            EndpointConnectionError,
            NoCredentialsError,
            PartialCredentialsError,
        )

        client = self._client(call.service)
        self.made.append(call)
        try:
            response: dict[str, Any] = getattr(client, xform_name(call.operation))(**call.params)
        except ClientError as err:
            error = err.response.get("Error", {})
            code, message = str(error.get("Code", "")), _flat(str(error.get("Message", "")))
            if code in _CREDENTIAL_CODES:
                raise SetupError(
                    f"AWS rejected the credentials ({code}: {message}): check AWS_PROFILE or "
                    "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN"
                ) from None
            if code in _DENIED_CODES:
                raise DeniedError(
                    f"AWS denied {call.service} {call.operation} ({message}): the IAM "
                    f"permissions this command needs are listed in {README}"
                ) from None
            raise AwsError(call, code, message) from None
        except (NoCredentialsError, PartialCredentialsError):
            raise SetupError(
                "no AWS credentials found: set AWS_PROFILE, or AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY (or run `aws configure`)"
            ) from None
        except EndpointConnectionError as err:
            raise SetupError(
                f"cannot reach AWS {call.service} at {err.kwargs.get('endpoint_url')}: check "
                f"the region ({self.region}; --region or AWS_REGION), AWS_ENDPOINT_URL and "
                "the network"
            ) from None
        except BotoCoreError as err:
            raise SetupError(f"{call.service} {call.operation} failed: {_flat(str(err))}") from None
        response.pop("ResponseMetadata", None)
        return response


def _flat(message: str, limit: int = 240) -> str:
    """An error message on one short line (some endpoints answer errors with an HTML page)."""
    text = " ".join(re.sub(r"<[^>]*>", " ", message).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def connect(region: str | None = None, environ: Mapping[str, str] | None = None) -> Aws:
    """A boto3 session: standard credentials, ``region`` or AWS_REGION or boto3's own."""
    env = os.environ if environ is None else environ
    try:
        import boto3
        from botocore.exceptions import BotoCoreError
    except ImportError:
        raise SetupError(
            'this command needs boto3: pip install "mfotel[s3]" (or pip install boto3)'
        ) from None
    try:
        session = boto3.session.Session(region_name=region or env.get("AWS_REGION") or None)
    except BotoCoreError as err:  # e.g. ProfileNotFound
        raise SetupError(f"{err}: check AWS_PROFILE") from None
    if not session.region_name:
        raise SetupError("no AWS region: set AWS_REGION or pass --region")
    return Aws(session, str(session.region_name))


def log_group_arn(partition: str, region: str, account: str, log_group: str) -> str:
    """The source ARN CloudWatch Logs invokes a subscription's Lambda function with."""
    return f"arn:{partition}:logs:{region}:{account}:log-group:{log_group}:*"


def statement_id(source_arn: str) -> str:
    """mfotel's policy statement for one log group: the same id every run, unique per group."""
    return STATEMENT_PREFIX + hashlib.sha256(source_arn.encode()).hexdigest()[:16]


def plan_setup(aws: Aws, options: ForwarderOptions) -> Plan:
    """The changes that subscribe ``options.log_group`` to the Forwarder; none if it already is.

    Every check that can be made without changing anything is made here: credentials, the
    Forwarder and its region, the log group, CloudWatch's two-filter limit.
    """
    account, partition = _caller(aws)
    forwarder, source, _ = _find_forwarder(aws, options, account, must_exist=True)
    group = options.log_group
    filters = _subscription_filters(aws, group)
    notes = [_streams_note(aws, group)]
    changes: list[Change] = []

    def plan() -> Plan:
        return _plan("setup", aws, account, forwarder, source, options, changes, notes)

    ours = next((f for f in filters if f.get("filterName") == FILTER_NAME), None)
    others = [f for f in filters if f.get("filterName") != FILTER_NAME]
    twins = [f for f in others if f.get("destinationArn") == forwarder]
    if ours is None and twins:
        notes.append(
            f"filter {twins[0].get('filterName')!r} already sends {group} to the Forwarder "
            f"(pattern {twins[0].get('filterPattern', '')!r}); mfotel adds no second one, "
            "which would send every event twice"
        )
        return plan()
    if ours is not None and twins:
        notes.append(
            f"filter {twins[0].get('filterName')!r} also sends {group} to the Forwarder, so "
            "every event arrives twice: remove it, or mfotel's with --remove"
        )
    if ours is None and len(others) >= MAX_SUBSCRIPTION_FILTERS:
        named = ", ".join(f"{f.get('filterName')!r} (to {f.get('destinationArn')})" for f in others)
        raise SetupError(
            f"{group} already has {len(others)} subscription filters, CloudWatch's limit: "
            f"{named}; remove one with `aws logs delete-subscription-filter --log-group-name "
            f"{group} --filter-name NAME` and run this again"
        )

    if options.filter_pattern:
        notes.append(_check_pattern(aws, options.filter_pattern))
    source_arn = log_group_arn(partition, aws.region, account, group)
    sid = statement_id(source_arn)
    statements = _policy_statements(aws, forwarder)
    mine = next((s for s in statements if s.get("Sid") == sid), None)
    if mine is not None and not _covers(mine, aws.region, account, source_arn):
        raise SetupError(
            f"the Forwarder's policy statement {sid} is not the one mfotel writes: remove it "
            f"with `aws lambda remove-permission --function-name {forwarder} --statement-id "
            f"{sid}` and run this again"
        )
    covering = next((s for s in statements if _covers(s, aws.region, account, source_arn)), None)
    if covering is None:
        changes.append(
            Change(
                _add_permission(forwarder, sid, source_arn, account, partition),
                Call("lambda", "RemovePermission", {"FunctionName": forwarder, "StatementId": sid}),
                f"CloudWatch Logs may now invoke the Forwarder for {group} (statement {sid})",
            )
        )
    else:
        notes.append(
            f"CloudWatch Logs may already invoke the Forwarder for {group} "
            f"(statement {covering.get('Sid', '(no id)')})"
        )

    put = Call(
        "logs",
        "PutSubscriptionFilter",
        {
            "logGroupName": group,
            "filterName": FILTER_NAME,
            "filterPattern": options.filter_pattern,
            "destinationArn": forwarder,
        },
    )
    if ours is None:
        changes.append(
            Change(
                put,
                Call("logs", "DeleteSubscriptionFilter", _filter_key(group)),
                f"{group} now goes to the Forwarder (filter {FILTER_NAME}, pattern "
                f"{options.filter_pattern!r})",
            )
        )
    elif (ours.get("destinationArn"), ours.get("filterPattern", "")) != (
        forwarder,
        options.filter_pattern,
    ):
        changes.append(
            Change(
                put,
                _restore_filter(ours),
                f"filter {FILTER_NAME} on {group} now sends pattern {options.filter_pattern!r} "
                f"to the Forwarder (was {ours.get('filterPattern', '')!r} to "
                f"{ours.get('destinationArn')})",
            )
        )
    else:
        notes.append(
            f"{group} already goes to the Forwarder (filter {FILTER_NAME}, pattern "
            f"{options.filter_pattern!r})"
        )
    return plan()


def plan_remove(aws: Aws, options: ForwarderOptions) -> Plan:
    """The changes that undo :func:`plan_setup`: mfotel's filter and statement, nothing else."""
    account, partition = _caller(aws)
    forwarder, source, exists = _find_forwarder(aws, options, account, must_exist=False)
    group = options.log_group
    filters = _subscription_filters(aws, group)
    changes: list[Change] = []
    notes: list[str] = []
    ours = next((f for f in filters if f.get("filterName") == FILTER_NAME), None)
    if ours is not None:
        changes.append(
            Change(
                Call("logs", "DeleteSubscriptionFilter", _filter_key(group)),
                _restore_filter(ours),
                f"filter {FILTER_NAME} removed from {group}",
            )
        )
    source_arn = log_group_arn(partition, aws.region, account, group)
    sid = statement_id(source_arn)
    if not exists:
        notes.append(f"the Forwarder {forwarder} does not exist (any more): no policy to clean")
    elif any(s.get("Sid") == sid for s in _policy_statements(aws, forwarder)):
        changes.append(
            Change(
                Call("lambda", "RemovePermission", {"FunctionName": forwarder, "StatementId": sid}),
                _add_permission(forwarder, sid, source_arn, account, partition),
                f"statement {sid} removed from the Forwarder's policy",
            )
        )
    return _plan("remove", aws, account, forwarder, source, options, changes, notes)


def _plan(
    mode: Literal["setup", "remove"],
    aws: Aws,
    account: str,
    forwarder: str,
    source: str,
    options: ForwarderOptions,
    changes: list[Change],
    notes: list[str],
) -> Plan:
    return Plan(
        mode=mode,
        region=aws.region,
        account=account,
        forwarder_arn=forwarder,
        forwarder_source=source,
        log_group=options.log_group,
        filter_pattern=options.filter_pattern,
        changes=changes,
        notes=notes,
        reads=list(aws.made),
    )


def apply(aws: Aws, plan: Plan) -> Result:
    """Make the plan's changes in order; when one fails, undo those made, newest first."""
    made: list[Change] = []
    for change in plan.changes:
        try:
            aws.call(change.call)
        except (AwsError, SetupError) as err:
            undone, left = _roll_back(aws, made)
            what = f"{change.call.service} {change.call.operation} failed ({_reason(err)})"
            if left:
                what += f"; rolled back {len(undone)} change(s), but could not undo: "
                what += "; ".join(left)
            elif undone:
                what += f"; rolled back the {len(undone)} change(s) before it, nothing changed"
            else:
                what += "; nothing changed"
            raise ApplyError(what) from None
        made.append(change)
    return Result(made)


def _roll_back(aws: Aws, made: list[Change]) -> tuple[list[Change], list[str]]:
    undone: list[Change] = []
    left: list[str] = []
    for change in reversed(made):
        try:
            aws.call(change.undo)
            undone.append(change)
        except (AwsError, SetupError) as err:
            left.append(
                f"{change.summary} (undo it with: {change.undo}; it failed: {_reason(err)})"
            )
    return undone, left


def _reason(err: Exception) -> str:
    return f"{err.code}: {err.message}" if isinstance(err, AwsError) else str(err)


def _caller(aws: Aws) -> tuple[str, str]:
    """The credentials' account and partition (``aws``, ``aws-cn``, ``aws-us-gov``)."""
    try:
        identity = aws.call(Call("sts", "GetCallerIdentity"))
    except AwsError as err:
        raise SetupError(f"cannot tell whose the AWS credentials are: {err}") from None
    arn = str(identity.get("Arn", "arn:aws:"))
    return str(identity["Account"]), arn.split(":")[1] or "aws"


def _find_forwarder(
    aws: Aws, options: ForwarderOptions, account: str, must_exist: bool
) -> tuple[str, str, bool]:
    """The Forwarder's ARN, where it came from (--forwarder-arn or the stack's output), and
    whether the function exists (always True when ``must_exist``: else SetupError)."""
    if options.forwarder_arn:
        given, source = options.forwarder_arn, "--forwarder-arn"
    else:
        name = options.stack_name
        try:
            stacks = aws.call(Call("cloudformation", "DescribeStacks", {"StackName": name}))
        except AwsError as err:
            if err.code == "ValidationError" and "does not exist" in err.message:
                raise SetupError(
                    f"no CloudFormation stack {name!r} in {aws.region}: pass --stack-name (the "
                    "stack that installed the Datadog Forwarder), --forwarder-arn, or the "
                    "--region it is in"
                ) from None
            raise SetupError(str(err)) from None
        outputs = {
            str(o.get("OutputKey")): str(o.get("OutputValue"))
            for stack in stacks.get("Stacks", [])[:1]
            for o in stack.get("Outputs", [])
        }
        if STACK_OUTPUT not in outputs:
            raise SetupError(
                f"stack {name!r} has no output {STACK_OUTPUT} (it has: "
                f"{', '.join(sorted(outputs)) or 'none'}): is it the Datadog Forwarder's stack? "
                "Pass --stack-name or --forwarder-arn"
            )
        given, source = outputs[STACK_OUTPUT], f"output {STACK_OUTPUT} of stack {name}"
    parsed = _LAMBDA_ARN.match(given)
    if parsed is None and not options.forwarder_arn:
        raise SetupError(f"{source} is {given!r}, not a Lambda function ARN: pass --forwarder-arn")
    if parsed is not None and parsed["region"] != aws.region:
        raise SetupError(
            f"the Forwarder {given} is in {parsed['region']}, the log group is looked for in "
            f"{aws.region}: CloudWatch Logs subscribes only a Lambda function of the group's own "
            f"region; pass --region {parsed['region']}, or use the Forwarder of {aws.region}"
        )
    if parsed is not None and parsed["account"] != account:
        raise SetupError(
            f"the Forwarder {given} belongs to account {parsed['account']}, the credentials to "
            f"{account}: a log group can be subscribed only to a Lambda function of its own "
            "account; use that account's credentials or its own Forwarder"
        )
    try:
        function = aws.call(Call("lambda", "GetFunction", {"FunctionName": given}))
    except AwsError as err:
        if err.code != "ResourceNotFoundException":
            raise SetupError(str(err)) from None
        if must_exist or parsed is None:
            raise SetupError(
                f"the Forwarder {given} ({source}) does not exist in {aws.region}: check "
                "--forwarder-arn or --stack-name, and --region"
            ) from None
        return given, source, False
    arn = given if parsed else str(function["Configuration"]["FunctionArn"])
    return arn, source, True


def _subscription_filters(aws: Aws, group: str) -> list[dict[str, Any]]:
    try:
        answer = aws.call(Call("logs", "DescribeSubscriptionFilters", {"logGroupName": group}))
    except AwsError as err:
        if err.code == "ResourceNotFoundException":
            raise SetupError(
                f"log group {group} does not exist in {aws.region}: pass --log-group (the group "
                "your Metaflow Batch jobs log to) or the right --region"
            ) from None
        raise SetupError(str(err)) from None
    return list(answer.get("subscriptionFilters", []))


def _streams_note(aws: Aws, group: str) -> str:
    """How many Metaflow streams the group has: a hint that it is the right group."""
    params = {"logGroupName": group, "logStreamNamePrefix": METAFLOW_STREAM_PREFIX, "limit": 50}
    try:
        answer = aws.call(Call("logs", "DescribeLogStreams", params))
    except (AwsError, DeniedError) as err:
        return f"could not list the log streams of {group} ({_reason(err)})"
    streams = answer.get("logStreams", [])
    if not streams:
        return (
            f"no {METAFLOW_STREAM_PREFIX}* log stream in {group} yet: Metaflow's Batch jobs "
            "create one per attempt (is this the group their job queue logs to?)"
        )
    more = "+" if answer.get("nextToken") else ""
    return (
        f"{len(streams)}{more} Metaflow log stream(s) in {group}, e.g. "
        f"{streams[0].get('logStreamName')}"
    )


def _check_pattern(aws: Aws, pattern: str) -> str:
    """What ``pattern`` lets through, asked of CloudWatch itself; SetupError if it is invalid."""
    samples = [TASK_LINE, PLAIN_LINE]
    call = Call("logs", "TestMetricFilter", {"filterPattern": pattern, "logEventMessages": samples})
    try:
        answer = aws.call(call)
    except AwsError as err:
        if err.code == "InvalidParameterException":
            raise SetupError(
                f"--filter-pattern {pattern!r} is not a CloudWatch Logs filter pattern "
                f"({err.message}): see {PATTERN_SYNTAX}"
            ) from None
        return _unchecked(pattern, err)
    except DeniedError as err:
        return _unchecked(pattern, err)
    matched = {m.get("eventNumber") for m in answer.get("matches", [])}
    verdict = ["forwards" if n in matched else "drops" for n in (1, 2)]
    return (
        f"--filter-pattern {pattern!r} {verdict[0]} a task's line such as {TASK_LINE!r} and "
        f"{verdict[1]} Metaflow's bootstrap line {PLAIN_LINE!r} (logs TestMetricFilter)"
    )


def _unchecked(pattern: str, err: Exception) -> str:
    return (
        f"could not check --filter-pattern {pattern!r} with logs TestMetricFilter "
        f"({_reason(err)}); PutSubscriptionFilter checks it, and a refusal is rolled back"
    )


def _policy_statements(aws: Aws, forwarder: str) -> list[dict[str, Any]]:
    try:
        answer = aws.call(Call("lambda", "GetPolicy", {"FunctionName": forwarder}))
    except AwsError as err:
        if err.code == "ResourceNotFoundException":  # a function without any policy yet
            return []
        raise SetupError(str(err)) from None
    statements = json.loads(answer.get("Policy") or "{}").get("Statement", [])
    return [statements] if isinstance(statements, dict) else list(statements)


def _logs_principal(partition: str) -> str:
    return LOGS_PRINCIPAL + ".cn" if partition == "aws-cn" else LOGS_PRINCIPAL


def _add_permission(
    forwarder: str, sid: str, source_arn: str, account: str, partition: str
) -> Call:
    return Call(
        "lambda",
        "AddPermission",
        {
            "FunctionName": forwarder,
            "StatementId": sid,
            "Action": "lambda:InvokeFunction",
            "Principal": _logs_principal(partition),
            "SourceArn": source_arn,
            "SourceAccount": account,
        },
    )


def _filter_key(group: str) -> dict[str, Any]:
    return {"logGroupName": group, "filterName": FILTER_NAME}


def _restore_filter(existing: Mapping[str, Any]) -> Call:
    """The call that puts ``existing`` (a DescribeSubscriptionFilters entry) back as it was."""
    params: dict[str, Any] = {
        **_filter_key(str(existing.get("logGroupName"))),
        "filterPattern": existing.get("filterPattern", ""),
        "destinationArn": existing.get("destinationArn"),
    }
    for key in ("roleArn", "distribution"):
        if existing.get(key):
            params[key] = existing[key]
    return Call("logs", "PutSubscriptionFilter", params)


# --- Does a policy statement let CloudWatch Logs invoke the function for our group? ----------


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _glob(pattern: str, value: str, case_sensitive: bool = True) -> bool:
    """IAM's wildcards: ``*`` any run of characters, ``?`` one; nothing else is special."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in str(pattern))
    return re.fullmatch(regex, value, 0 if case_sensitive else re.IGNORECASE) is not None


def _covers(statement: Mapping[str, Any], region: str, account: str, source_arn: str) -> bool:
    """True when ``statement`` allows CloudWatch Logs to invoke the function for ``source_arn``.

    Conservative: a statement with a condition this cannot evaluate does not count, and then
    mfotel adds its own (a redundant Allow is harmless; a missing one drops every event).
    """
    if statement.get("Effect") != "Allow" or "NotAction" in statement:
        return False
    if "NotPrincipal" in statement:
        return False
    actions = _as_list(statement.get("Action", []))
    if not any(_glob(a, "lambda:InvokeFunction", case_sensitive=False) for a in actions):
        return False
    principal = statement.get("Principal")
    services = {LOGS_PRINCIPAL, f"{LOGS_PRINCIPAL}.cn", f"logs.{region}.amazonaws.com"}
    if principal != "*":
        named = _as_list(principal.get("Service", [])) if isinstance(principal, dict) else []
        if not services.intersection(named):
            return False
    for operator, conditions in (statement.get("Condition") or {}).items():
        if not isinstance(conditions, dict):
            return False
        for key, wanted in conditions.items():
            values = [str(v) for v in _as_list(wanted)]
            if key.lower() == "aws:sourcearn" and operator in ("ArnLike", "StringLike"):
                ok = any(_glob(v, source_arn) for v in values)
            elif key.lower() == "aws:sourcearn" and operator in ("ArnEquals", "StringEquals"):
                ok = source_arn in values
            elif key.lower() == "aws:sourceaccount" and operator in ("StringEquals", "StringLike"):
                ok = any(_glob(v, account) for v in values)
            else:
                ok = False  # a condition this cannot evaluate
            if not ok:
                return False
    return True


# --- The Datadog log pipeline that turns each forwarded line's stream into facets ------------

PIPELINE_NAME = "Metaflow on AWS Batch (mfotel)"
# AWS Batch names each attempt's stream <job definition>/default/<ECS task id>; the Forwarder
# puts the stream's name in aws.awslogs.logStream. (The lines themselves are the task's plain
# output, as Metaflow's own tee passes it to the container's stdout; mfotel leaves it so.)
STREAM_RULE = (
    r'metaflow_stream %{regex("metaflow_[0-9a-f]+"):metaflow.batch.job_definition}/[^/]+/'
    r'%{regex("[^/]+"):aws.ecs.task.id}'
)
TASK_LINE = "epoch 3: loss 0.412"  # a line a task prints
PLAIN_LINE = "Setting up task environment."  # what Metaflow's bootstrap prints
PATTERN_SYNTAX = (
    "https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/FilterAndPatternSyntax.html"
)
SAMPLE_STREAM = (
    "metaflow_355cf01ac75d461366c42147ecadc67a900985c21c8fcfc7c10466e0"  # sha224, as Metaflow's
    "/default/6a3f0c1d2e4b4f5a8c9d0e1f2a3b4c5d"
)
FACETS = ("metaflow.batch.job_definition", "aws.ecs.task.id")


def datadog_pipeline(log_group: str = DEFAULT_LOG_GROUP) -> dict[str, Any]:
    """A Datadog Logs pipeline (the Logs Pipelines API's format) for ``log_group``'s lines."""
    return {
        "name": PIPELINE_NAME,
        "is_enabled": True,
        "filter": {"query": f'@aws.awslogs.logGroup:"{log_group}"'},
        "processors": [
            {
                "type": "grok-parser",
                "name": "Batch log stream: Metaflow job definition, ECS task",
                "is_enabled": True,
                "source": "aws.awslogs.logStream",
                "samples": [SAMPLE_STREAM],
                "grok": {"support_rules": "", "match_rules": STREAM_RULE},
            },
        ],
    }
