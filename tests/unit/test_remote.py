"""What a remote step's container gets (mfotel._internal.remote), how it reads it back, and
what the platform tells about where it runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from mfotel._internal import identity
from mfotel._internal.agent.detect import container_id, ecs_attributes
from mfotel._internal.hooks import _parse_time
from mfotel._internal.remote import apply_remote_endpoint, container_env, expand, runs_elsewhere

PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
LAPTOP = {
    "MF_TRACING": "otlp",
    "OTEL_EXPORTER_OTLP_ENDPOINT": "http://localhost:4318",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://localhost:4318/v1/traces",
    "OTEL_EXPORTER_OTLP_HEADERS": "dd-api-key=secret",
    "OTEL_EXPORTER_OTLP_CLIENT_KEY": "/home/me/key.pem",
    "OTEL_EXPORTER_JAEGER_PASSWORD": "hunter2",
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "https://me:hunter3@collector:4318/v1/metrics",
    "MFOTEL_INERT": "1",
    "OTEL_SERVICE_NAME": "ml",
    "MFOTEL_PROFILE": "prod",
    "MFOTEL_SPOOL_DIR": "/home/me/spool",
    "MFOTEL_AGENT_SOCKET": "/tmp/mfotel-0/1.sock",
    "TRACEPARENT": PARENT,
    "HOME": "/home/me",
}


def test_a_launch_passes_settings_and_context_never_secrets_or_host_paths() -> None:
    """`kubernetes step` / `batch step`: the run's context and the telemetry settings."""
    env = container_env(LAPTOP, command=["batch", "step", "start"])
    assert env["TRACEPARENT"] == PARENT and env["MF_TRACING"] == "otlp"
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://localhost:4318"
    assert (env["OTEL_SERVICE_NAME"], env["MFOTEL_PROFILE"]) == ("ml", "prod")
    assert not {"OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_CLIENT_KEY", "HOME"} & set(env)
    assert not {"MFOTEL_SPOOL_DIR", "MFOTEL_AGENT_SOCKET", "MFOTEL_RUN_START"} & set(env)
    assert "OTEL_EXPORTER_JAEGER_PASSWORD" not in env and "MFOTEL_INERT" not in env
    assert env["OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"] == "https://collector:4318/v1/metrics"
    assert "hunter" not in str(env)


@pytest.mark.parametrize(
    ("deployer", "expression"),
    [
        ("argo-workflows", "{{workflow.creationTimestamp}}"),
        ("step-functions", "$$.Execution.StartTime"),
        ("airflow", "dag_run.start_date.isoformat()"),
    ],
)
def test_a_deployment_gets_the_schedulers_start_time_and_no_context(
    deployer: str, expression: str
) -> None:
    """A deployment's runs are not the deploying shell's trace: no TRACEPARENT there."""
    env = container_env(LAPTOP, command=[deployer, "create"])
    assert expression in env["MFOTEL_RUN_START"]
    assert "TRACEPARENT" not in env and "traceparent" not in env


def test_a_remote_endpoint_replaces_the_launching_machines() -> None:
    """With MFOTEL_REMOTE_ENDPOINT the laptop's endpoints stay on the laptop."""
    env = container_env({**LAPTOP, "MFOTEL_REMOTE_ENDPOINT": "http://gw:4318"}, command=["run"])
    assert env["MFOTEL_REMOTE_ENDPOINT"] == "http://gw:4318"
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" not in env
    assert "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT" not in env


def test_references_expand_as_kubernetes_expands_them() -> None:
    """$(VAR) from the environment, $$ a literal $, an undefined reference kept and named."""
    assert expand("http://$(NODE):4318", {"NODE": "10.0.0.7"}) == ("http://10.0.0.7:4318", [])
    assert expand("a$$(NODE)b", {"NODE": "x"}) == ("a$(NODE)b", [])
    assert expand("http://$(GONE):1", {}) == ("http://$(GONE):1", ["GONE"])


def test_the_remote_endpoint_becomes_the_tasks_endpoint() -> None:
    """In the container: the expanded endpoint, the per-signal ones dropped; a reference the
    container lacks is one line naming it."""
    environ = {
        "MFOTEL_REMOTE_ENDPOINT": "http://$(METAFLOW_KUBERNETES_NODE_IP):4318",
        "METAFLOW_KUBERNETES_NODE_IP": "10.1.2.3",
        "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": "http://localhost:4318/v1/logs",
    }
    assert apply_remote_endpoint(environ) is None
    assert environ["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://10.1.2.3:4318"
    assert "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT" not in environ
    problem = apply_remote_endpoint({"MFOTEL_REMOTE_ENDPOINT": "http://$(HOSTX):4318"})
    assert problem is not None and "HOSTX" in problem


def test_which_steps_run_elsewhere() -> None:
    """@batch / @kubernetes steps, and every step of a deployment being compiled; a run
    tagged or parametrized with a deployer's name is still a run."""
    assert runs_elsewhere(["retry", "kubernetes"], command=["run"])
    assert runs_elsewhere(["retry"], command=["step-functions", "create"])
    assert runs_elsewhere(["retry"], command=["airflow", "create", "dag.py"])
    assert not runs_elsewhere(["retry", "environment"], command=["run"])
    assert not runs_elsewhere(["retry"], command=["run", "--tag", "airflow"])
    assert not runs_elsewhere(["retry"], command=["argo-workflows", "trigger"])
    assert not runs_elsewhere(["kubernetes"], command=["step", "start"])  # the pod's own task
    launched = container_env(LAPTOP, command=["run", "--tag", "argo-workflows", "create"])
    assert "TRACEPARENT" in launched and "MFOTEL_RUN_START" not in launched


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-12-06T10:00:00Z", 1_796_551_200_000_000_000),  # Argo
        ("2026-12-06T10:00:00.123Z", 1_796_551_200_123_000_000),  # Step Functions
        ("2026-12-06T10:00:00.250000+00:00", 1_796_551_200_250_000_000),  # Airflow
        ("2026-12-06T12:00:00+02:00", 1_796_551_200_000_000_000),
        ("{{workflow.creationTimestamp}}", None),  # not filled in
        ("", None),
    ],
)
def test_scheduler_start_times(text: str, expected: int | None) -> None:
    """Each scheduler's start time, in nanoseconds; anything else is no time at all."""
    assert _parse_time(text) == expected


def test_the_runtime_and_the_platform_come_from_the_environment() -> None:
    """metaflow.runtime is the real one; pod, namespace, Batch job and cloud as named."""
    argo = {"METAFLOW_RUNTIME_NAME": "argo-workflows", "METAFLOW_RUNTIME_ENVIRONMENT": "kubernetes"}
    assert identity.runtime_name(argo) == "argo-workflows"
    assert identity.runtime_name({"METAFLOW_RUNTIME_ENVIRONMENT": "aws-batch"}) == "batch"
    assert identity.runtime_name({"METAFLOW_RUNTIME_NAME": "dev"}) == "local"
    pod = identity.platform_attributes(
        {
            "METAFLOW_KUBERNETES_POD_NAME": "p-1",
            "METAFLOW_KUBERNETES_POD_NAMESPACE": "ml",
            "METAFLOW_KUBERNETES_POD_ID": "u-1",
        }
    )
    assert pod == {"k8s.pod.name": "p-1", "k8s.namespace.name": "ml", "k8s.pod.uid": "u-1"}
    batch = identity.platform_attributes({"AWS_BATCH_JOB_ID": "j-1", "AWS_REGION": "eu-west-1"})
    assert batch["cloud.provider"] == "aws" and batch["cloud.region"] == "eu-west-1"


@pytest.mark.parametrize(
    ("cgroup", "expected"),
    [
        ("0::/system.slice/docker-" + "a1" * 32 + ".scope\n", "a1" * 32),
        ("12:memory:/kubepods/burstable/pod1/" + "b2" * 32 + "\n", "b2" * 32),
        (
            "0::/kubepods.slice/kubepods-pod1.slice/cri-containerd-" + "c3" * 32 + ".scope\n",
            "c3" * 32,
        ),
    ],
)
def test_a_container_id_from_the_cgroup(cgroup: str, expected: str, tmp_path: Path) -> None:
    """Docker, Kubernetes (cgroup v1) and containerd (cgroup v2) name the container there."""
    (tmp_path / "cgroup").write_text(cgroup)
    assert container_id(str(tmp_path)) == expected


def test_no_container_id_outside_a_container(tmp_path: Path) -> None:
    """A laptop's cgroup and mounts name no container: nothing is made up."""
    (tmp_path / "cgroup").write_text("0::/user.slice/user-1000.slice/session-3.scope\n")
    (tmp_path / "mountinfo").write_text("25 1 8:1 / / rw - ext4 /dev/sda1 rw\n")
    assert container_id(str(tmp_path)) is None


def test_the_ecs_metadata_endpoint_names_task_and_container() -> None:
    """From the v4 endpoint (its documented JSON), or nothing when there is none."""
    from tests.containers import EcsMetadata

    with EcsMetadata() as metadata:
        found = ecs_attributes({"ECS_CONTAINER_METADATA_URI_V4": metadata.uri("job-1")})
    assert found["aws.ecs.task.arn"].endswith("/job1")
    assert found["aws.ecs.launchtype"] == "fargate"
    assert len(found["container.id"]) == 64
    assert ecs_attributes({}) == {}


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("http://$(METAFLOW_KUBERNETES_NODE_IP):4318", True),
        ("http://otel-gateway.observability:4318", True),
        ("collector:4318:x", False),
        ("ftp://collector", False),
    ],
)
def test_a_remote_endpoint_is_checked_where_the_flow_is_deployed(value: str, ok: bool) -> None:
    """A value no container could use is named (with the fix) at deploy time."""
    from mfotel._internal.remote import remote_endpoint_problem

    problem = remote_endpoint_problem({"MFOTEL_REMOTE_ENDPOINT": value})
    assert (problem is None) == ok, problem
    if problem:
        assert value in problem and "http://host:4318" in problem
