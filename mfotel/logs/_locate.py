"""``mfotel logs locate``: where a task's logs are, and the query that finds them in a backend.

For every attempt of every task a pathspec names:

* the persisted logs in its datastore (the datastore's type and root come from the task's own
  metadata, ``ds-type`` / ``ds-root``, unless given);
* on AWS Batch, the CloudWatch Logs group and stream Metaflow recorded in the task's metadata
  (``aws-batch-awslogs-group``, ``-stream``, ``-region``, per attempt);
* on Kubernetes, the pod (``kubernetes-pod-name``, ``-namespace``);
* a ready-to-paste search per backend, filtering on the identity the kit's collector targets
  (``mfotel render-config``) make searchable: a Datadog log search (and its URL), a Splunk SPL
  search, a CloudWatch Logs Insights query; for a Batch attempt, the search for the lines the
  Datadog Forwarder brought from CloudWatch, and the Logs Insights query on its stream.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import quote

from mfotel.logs._layout import LogFile, Pathspec, find_logs
from mfotel.logs._stores import LogStore

BACKENDS = ("datadog", "splunk", "cloudwatch")


class LocateError(Exception):
    """Nothing to locate; the message names the fix."""


@dataclass
class Attempt:
    pathspec: str
    attempt: int
    datastore: list[str] = field(default_factory=list)
    cloudwatch: dict[str, str] | None = None  # group, stream, region (AWS Batch)
    kubernetes: dict[str, str] | None = None  # pod, namespace
    queries: dict[str, str] = field(default_factory=dict)


@dataclass
class Options:
    backends: Sequence[str] = BACKENDS
    datadog_site: str = "datadoghq.com"
    splunk_index: str = "metaflow"
    cloudwatch_group: str = "/metaflow/mfotel"  # the kit's cloudwatch target's default group


def task_metadata(pathspec: str, attempt: int) -> dict[str, str]:
    """The metadata Metaflow recorded for one attempt (empty when its client cannot see it)."""
    try:
        from metaflow import Task, namespace

        namespace(None)
        return dict(Task(pathspec, attempt=attempt, _namespace_check=False).metadata_dict)
    except Exception:
        return {}


def tasks_of(spec: Pathspec) -> list[tuple[str, list[int]]]:
    """(task pathspec, attempts) of every task the pathspec names, from Metaflow's metadata."""
    try:
        from metaflow import Run, Step, Task, namespace

        namespace(None)
        if spec.task is not None:
            tasks = [Task(str(spec), _namespace_check=False)]
        elif spec.step is not None:
            tasks = list(Step(str(spec), _namespace_check=False))
        elif spec.run is not None:
            tasks = [t for s in Run(str(spec), _namespace_check=False) for t in s]
        else:
            return []
    except Exception:
        return []
    found = []
    for task in tasks:
        attempts = sorted(
            {int(m.value) for m in task.metadata if m.name == "attempt" and str(m.value).isdigit()}
        )
        found.append((task.pathspec, attempts or [0]))
    return sorted(found, key=lambda item: _sort_key(item[0]))


def locate(
    spec: Pathspec,
    store: LogStore | None,
    options: Options,
    metadata: Any = task_metadata,
) -> list[Attempt]:
    if spec.run is None:
        raise LocateError(f"pathspec {spec} names a flow: name a run, step or task")
    persisted: dict[tuple[str, int], list[LogFile]] = {}
    if store is not None:
        for log in find_logs(store, spec):
            persisted.setdefault((log.pathspec, log.attempt), []).append(log)
    attempts: dict[tuple[str, int], None] = dict.fromkeys(persisted)
    for pathspec, numbers in tasks_of(spec):
        for number in numbers:
            attempts.setdefault((pathspec, number), None)
    if not attempts:
        where = f" or in {store.root}" if store is not None else ""
        raise LocateError(
            f"no tasks for {spec} in Metaflow's metadata{where}: check the pathspec (and "
            "METAFLOW_DEFAULT_METADATA, --datastore, --datastore-root)"
        )
    found = []
    for pathspec, number in sorted(attempts, key=lambda a: (_sort_key(a[0]), a[1])):
        meta = metadata(pathspec, number)
        entry = Attempt(pathspec, number)
        entry.datastore = [
            store.url(log.key) for log in persisted.get((pathspec, number), ()) if store
        ]
        group, stream = meta.get("aws-batch-awslogs-group"), meta.get("aws-batch-awslogs-stream")
        if group and stream:
            entry.cloudwatch = {
                "group": group,
                "stream": stream,
                "region": meta.get("aws-batch-awslogs-region", ""),
            }
        pod = meta.get("kubernetes-pod-name")
        if pod:
            entry.kubernetes = {"pod": pod, "namespace": meta.get("kubernetes-pod-namespace", "")}
        entry.queries = queries(entry, options)
        found.append(entry)
    return found


def queries(entry: Attempt, options: Options) -> dict[str, str]:
    flow, run, step, task = entry.pathspec.split("/")
    out: dict[str, str] = {}
    if "datadog" in options.backends:
        search = (
            f"service:metaflow @flow_name:{flow} @run_id:{run} @step_name:{step} "
            f"@task_id:{task} @metaflow.task.attempt:{entry.attempt}"
        )
        out["datadog"] = search
        out["datadog_url"] = f"https://app.{options.datadog_site}/logs?query={quote(search)}"
        if entry.cloudwatch:
            forwarded = (
                f'source:cloudwatch @aws.awslogs.logGroup:"{entry.cloudwatch["group"]}" '
                f'@aws.awslogs.logStream:"{entry.cloudwatch["stream"]}"'
            )
            out["datadog_forwarded"] = forwarded
    if "splunk" in options.backends:
        out["splunk"] = (
            # `::` asks the index for the HEC (and UF) indexed fields, with or without the
            # fields.conf that makes `field=value` do the same.
            f"index={options.splunk_index} flow::{flow} run_id::{run} step::{step} "
            f"task_id::{task} attempt::{entry.attempt} | sort _time | table _time _raw"
        )
    if "cloudwatch" in options.backends:
        out["cloudwatch"] = (
            f"# Logs Insights on {options.cloudwatch_group}\n"
            "fields @timestamp, body, attributes.`log.iostream`\n"
            f"| filter attributes.`metaflow.task.pathspec` = {json.dumps(entry.pathspec)}"
            f" and attributes.`metaflow.task.attempt` = {entry.attempt}\n"
            "| sort @timestamp asc"
        )
        if entry.cloudwatch:
            out["cloudwatch_batch"] = (
                f"# Logs Insights on {entry.cloudwatch['group']}\n"
                "fields @timestamp, @message\n"
                f"| filter @logStream = {json.dumps(entry.cloudwatch['stream'])}\n"
                "| sort @timestamp asc"
            )
    if entry.kubernetes:
        namespace = entry.kubernetes["namespace"]
        flag = f" -n {namespace}" if namespace else ""
        out["kubectl"] = f"kubectl logs{flag} {entry.kubernetes['pod']}"
    return out


def batch_streams(found: Iterable[Attempt]) -> list[Attempt]:
    """The attempts, each with its AWS Batch CloudWatch stream; LocateError when one has none."""
    found = list(found)
    missing = [a for a in found if not a.cloudwatch]
    if missing:
        first = missing[0]
        raise LocateError(
            f"{first.pathspec} attempt {first.attempt} has no AWS Batch metadata "
            f"(aws-batch-awslogs-group, aws-batch-awslogs-stream; {len(missing)} of "
            f"{len(found)} attempts): it did not run on @batch; drop --batch to see where "
            "its logs are"
        )
    return found


def as_aws_commands(found: Iterable[Attempt]) -> str:
    """One `aws logs get-log-events` command per Batch attempt, ready to paste."""
    lines = []
    for entry in found:
        assert entry.cloudwatch is not None  # batch_streams() kept only these
        cw = entry.cloudwatch
        words = ["aws", "logs", "get-log-events", "--log-group-name", cw["group"]]
        words += ["--log-stream-name", cw["stream"], "--start-from-head"]
        if cw["region"]:
            words += ["--region", cw["region"]]
        lines.append(f"# {entry.pathspec} attempt {entry.attempt}")
        lines.append(shlex.join(words))
    return "\n".join(lines)


def as_json(found: Iterable[Attempt]) -> str:
    return json.dumps([asdict(a) for a in found], indent=2)


def as_text(found: Iterable[Attempt]) -> str:
    lines = []
    labels = {
        "datadog": "datadog",
        "datadog_url": "",
        "datadog_forwarded": "datadog (via the Forwarder)",
        "splunk": "splunk",
        "cloudwatch": "cloudwatch (kit's route)",
        "cloudwatch_batch": "cloudwatch (AWS Batch)",
        "kubectl": "kubernetes",
    }
    for entry in found:
        lines.append(f"{entry.pathspec} attempt {entry.attempt}")
        for url in entry.datastore or ["(no persisted logs in the datastore)"]:
            lines.append(f"  datastore   {url}")
        if entry.cloudwatch:
            cw = entry.cloudwatch
            region = f" ({cw['region']})" if cw["region"] else ""
            lines.append(f"  cloudwatch  group {cw['group']} stream {cw['stream']}{region}")
        if entry.kubernetes:
            k8s = entry.kubernetes
            lines.append(f"  kubernetes  pod {k8s['pod']} namespace {k8s['namespace'] or '-'}")
        for name, text in entry.queries.items():
            label = labels.get(name, name)
            head = f"{label}:" if label else ""
            for index, part in enumerate(text.split("\n")):
                lines.append(f"  {head if index == 0 else '':<30}{part}")
    return "\n".join(lines)


def _sort_key(pathspec: str) -> tuple[str, int, str, str]:
    parts = pathspec.split("/")
    task = parts[3] if len(parts) > 3 else ""
    run = parts[1] if len(parts) > 1 else ""
    step = parts[2] if len(parts) > 2 else ""
    return (run, int(task) if task.isdigit() else -1, step, task)


def detect_backends(environ: Mapping[str, str]) -> list[str]:
    """The backends this environment is set up for (DD_*, SPLUNK_*, AWS_*); all when none."""
    found = []
    if environ.get("DD_API_KEY") or environ.get("DD_SITE"):
        found.append("datadog")
    if environ.get("SPLUNK_HEC_TOKEN") or environ.get("SPLUNK_HEC_ENDPOINT"):
        found.append("splunk")
    if environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION"):
        found.append("cloudwatch")
    return found or list(BACKENDS)


def datastore_of(spec: Pathspec) -> tuple[str, str] | None:
    """(ds-type, ds-root) that Metaflow recorded for the first task of the pathspec, if any."""
    for pathspec, attempts in tasks_of(spec):
        meta = task_metadata(pathspec, attempts[0])
        if meta.get("ds-type") and meta.get("ds-root"):
            return meta["ds-type"], meta["ds-root"]
    return None
