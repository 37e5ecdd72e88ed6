"""The identity every span, log record and metric point carries (see the contract).

Run-level identity becomes resource attributes; step/task/attempt identity becomes record
attributes. Standard library only: this runs in every task process.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import unquote

from mfotel import __version__
from mfotel.settings import MFOTEL_PROFILE, MFOTEL_TAGS

MAX_USER_TAGS = 50
MAX_TAG_CHARS = 500


def tag_problem(tag: object) -> str | None:
    """Why Metaflow's tag rules reject ``tag``, or None when it is fine."""
    if not isinstance(tag, str):
        return "is not a string"
    if not tag:
        return "is empty"
    if len(tag) > MAX_TAG_CHARS:
        return f"is longer than {MAX_TAG_CHARS} characters"
    try:
        tag.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid UTF-8"
    return None


def clean_tags(tags: Iterable[object], warn: Any = None) -> list[str]:
    """Tags that pass Metaflow's rules, in order, deduplicated; ``warn(line)`` for the rest."""
    kept: list[str] = []
    for tag in tags:
        problem = tag_problem(tag)
        if problem is not None:
            if warn is not None:
                shown = repr(tag)[:60]
                warn(f"mfotel: tag {shown} {problem}; it is left out of metaflow.tags")
            continue
        assert isinstance(tag, str)
        if tag not in kept:
            kept.append(tag)
    return kept


def extra_tags(environ: Mapping[str, str], warn: Any = None) -> list[str]:
    raw = MFOTEL_TAGS.get_str(environ)
    if not raw:
        return []
    tags = clean_tags([t.strip() for t in raw.split(",") if t.strip()], warn)
    if len(tags) > MAX_USER_TAGS:
        if warn is not None:
            warn(
                f"mfotel: MFOTEL_TAGS has {len(tags)} tags, Metaflow allows {MAX_USER_TAGS}; "
                "the rest are left out"
            )
        tags = tags[:MAX_USER_TAGS]
    return tags


def parse_resource_attributes(value: str | None) -> dict[str, str]:
    """OTEL_RESOURCE_ATTRIBUTES: ``k=v,k2=v2`` with percent-encoded values; bad members skipped."""
    attributes: dict[str, str] = {}
    if not value:
        return attributes
    for member in value.split(","):
        key, sep, val = member.partition("=")
        key = key.strip()
        if not sep or not key:
            continue
        attributes[key] = unquote(val.strip())
    return attributes


# Metaflow's own names for where a task runs: METAFLOW_RUNTIME_NAME in a deployment's steps,
# METAFLOW_RUNTIME_ENVIRONMENT in any container it launches.
_ENVIRONMENTS = {"aws-batch": "batch", "kubernetes": "kubernetes"}


def runtime_name(environ: Mapping[str, str]) -> str:
    """``argo-workflows``, ``step-functions``, ``airflow``, ``kubernetes``, ``batch`` or
    ``local``: the real runtime of this process."""
    name = environ.get("METAFLOW_RUNTIME_NAME")
    if name and name != "dev":
        return name
    environment = _ENVIRONMENTS.get(environ.get("METAFLOW_RUNTIME_ENVIRONMENT", ""))
    if environment:
        return environment
    if environ.get("AWS_BATCH_JOB_ID"):
        return "batch"
    if environ.get("KUBERNETES_SERVICE_HOST"):
        return "kubernetes"
    return "local"


# Semantic-convention resource attributes from what the platform puts in the environment
# (Kubernetes' downward API as Metaflow maps it, AWS Batch's own variables).
_FROM_ENV = (
    ("k8s.pod.name", ("METAFLOW_KUBERNETES_POD_NAME",)),
    ("k8s.pod.uid", ("METAFLOW_KUBERNETES_POD_ID",)),
    ("k8s.namespace.name", ("METAFLOW_KUBERNETES_POD_NAMESPACE", "METAFLOW_KUBERNETES_NAMESPACE")),
    ("k8s.node.name", ("K8S_NODE_NAME", "KUBERNETES_NODE_NAME")),
    ("aws.batch.job.id", ("AWS_BATCH_JOB_ID",)),
    ("aws.batch.job.queue", ("AWS_BATCH_JQ_NAME",)),
    ("aws.batch.compute_environment", ("AWS_BATCH_CE_NAME",)),
)


def platform_attributes(environ: Mapping[str, str]) -> dict[str, str]:
    """Where this task runs, from its environment: pod, namespace, Batch job, cloud."""
    attrs: dict[str, str] = {}
    for attribute, names in _FROM_ENV:
        for name in names:
            value = environ.get(name, "").strip()
            if value:
                attrs[attribute] = value
                break
    if "aws.batch.job.id" in attrs or environ.get("ECS_CONTAINER_METADATA_URI_V4"):
        attrs["cloud.provider"] = "aws"
        attrs["cloud.platform"] = "aws_ecs"  # Batch runs its jobs as ECS tasks
        region = environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION")
        if region:
            attrs["cloud.region"] = region
    return attrs


def metaflow_version() -> str:
    # metaflow.metaflow_version.get_version() may ask git; the release string is enough here.
    version_module = sys.modules.get("metaflow.version")
    return str(getattr(version_module, "metaflow_version", ""))


def project_from_tags(tags: Iterable[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for tag in tags:
        if tag.startswith("project:"):
            found["metaflow.project.name"] = tag.split(":", 1)[1]
        elif tag.startswith("project_branch:"):
            found["metaflow.project.branch"] = tag.split(":", 1)[1]
    return found


def resource_attributes(
    flow_name: str,
    run_id: str | None,
    user: str | None,
    tags: Iterable[str],
    environ: Mapping[str, str],
) -> dict[str, Any]:
    """Run-level identity, OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME, merged per the spec."""
    tag_list = list(tags)
    attrs: dict[str, Any] = {
        "service.name": "metaflow",
        "deployment.environment.name": MFOTEL_PROFILE.get_str(environ),
        "telemetry.sdk.name": "mfotel",
        "telemetry.sdk.language": "python",
        "telemetry.sdk.version": __version__,
        "host.name": socket.gethostname(),
        "metaflow.flow.name": flow_name,
        "metaflow.runtime": runtime_name(environ),
        "metaflow.version": metaflow_version(),
        "metaflow.tags": tag_list,
        "cicd.pipeline.name": flow_name,
    }
    if run_id:
        attrs["metaflow.run.id"] = run_id
        attrs["cicd.pipeline.run.id"] = run_id
    if user:
        attrs["metaflow.user"] = user
    attrs.update(project_from_tags(tag_list))
    attrs.update(platform_attributes(environ))
    attrs.update(parse_resource_attributes(environ.get("OTEL_RESOURCE_ATTRIBUTES")))
    attrs["service.name"] = service_name(environ)
    return attrs


def service_name(environ: Mapping[str, str]) -> str:
    """``service.name`` as the specification resolves it: OTEL_SERVICE_NAME, else a
    ``service.name`` in OTEL_RESOURCE_ATTRIBUTES, else ``metaflow`` (the kit's default, for
    every resource mfotel makes: a run's, and the agent's own)."""
    service = environ.get("OTEL_SERVICE_NAME", "").strip()
    if service:
        return service
    named = parse_resource_attributes(environ.get("OTEL_RESOURCE_ATTRIBUTES")).get("service.name")
    return str(named) if named else "metaflow"


def task_attributes(
    flow_name: str, run_id: str, step_name: str, task_id: str, attempt: int
) -> dict[str, Any]:
    pathspec = f"{flow_name}/{run_id}/{step_name}/{task_id}"
    return {
        "metaflow.step.name": step_name,
        "metaflow.task.id": task_id,
        "metaflow.task.attempt": attempt,
        "metaflow.task.pathspec": pathspec,
        "cicd.pipeline.task.name": step_name,
        "cicd.pipeline.task.run.id": task_id,
        "process.pid": os.getpid(),
    }
