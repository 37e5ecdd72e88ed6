"""Resource attributes only the container itself can tell, found once by the agent.

The task puts what its environment says on every resource (pod, namespace, Batch job); the
agent adds what takes a file read or a request, off the task's critical path:

- ``container.id``, from the process's cgroup (Docker, containerd, CRI-O, cgroup v1 and v2);
- on ECS (AWS Batch runs its jobs as ECS tasks), from the task metadata endpoint v4:
  ``aws.ecs.task.arn``, ``aws.ecs.cluster.arn``, ``aws.ecs.launchtype``,
  ``cloud.availability_zone``, and the container's own id.

Anything that does not answer at once is left out: telemetry never waits for it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

_ID = re.compile(r"(?:^|[/-])([0-9a-f]{64})(?:\.scope)?$")
_MOUNT_ID = re.compile(r"/(?:containers|sandboxes)/([0-9a-f]{64})/")
METADATA_TIMEOUT_S = 0.5


def container_id(proc: str = "/proc/self") -> str | None:
    """The id of the container this process runs in, or None outside one."""
    try:
        with open(f"{proc}/cgroup", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                path = line.rstrip("\n").rsplit(":", 1)[-1]
                match = _ID.search(path)
                if match:
                    return match.group(1)
    except OSError:
        pass
    try:
        with open(f"{proc}/mountinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                match = _MOUNT_ID.search(line)
                if match:
                    return match.group(1)
    except OSError:
        pass
    return None


def _get_json(url: str) -> Any:
    from urllib.request import urlopen

    with urlopen(url, timeout=METADATA_TIMEOUT_S) as response:
        return json.loads(response.read())


def ecs_attributes(environ: Mapping[str, str]) -> dict[str, str]:
    """The ECS task and container, from the metadata endpoint v4 when the task has one."""
    base = environ.get("ECS_CONTAINER_METADATA_URI_V4", "").rstrip("/")
    if not base.startswith("http"):
        return {}
    attrs: dict[str, str] = {}
    try:
        task = _get_json(f"{base}/task")
        container = _get_json(base)
    except (OSError, ValueError):
        return attrs
    for attribute, value in (
        ("aws.ecs.task.arn", task.get("TaskARN")),
        ("aws.ecs.cluster.arn", task.get("Cluster")),
        ("aws.ecs.launchtype", str(task.get("LaunchType") or "").lower()),
        ("cloud.availability_zone", task.get("AvailabilityZone")),
        ("container.id", container.get("DockerId")),
    ):
        if isinstance(value, str) and value:
            attrs[attribute] = value
    return attrs


def detect(environ: Mapping[str, str]) -> dict[str, str]:
    attrs: dict[str, str] = {}
    found = container_id()
    if found:
        attrs["container.id"] = found
    attrs.update(ecs_attributes(environ))
    return attrs
