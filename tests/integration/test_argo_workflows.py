"""An Argo Workflows deployment, compiled by a user's Metaflow with mfotel installed from its
wheel, then run as Argo runs it (tests/containers.py): every step in a container of its own,
on a stock image with no mfotel, the code package fetched from the datastore (moto S3)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mfotel.testing import OTLPReceiver
from tests.conftest import FLOWS
from tests.containers import ArgoWorkflow, ContainerRun, compile_flow
from tests.emulators import MotoServer

pytestmark = pytest.mark.flow

FLOW = FLOWS / "remote_probe_flow.py"
SECRET = "dd-api-key=0123456789abcdef0123456789abcdef"
STEPS = ("start", "fan", "join", "end")


@dataclass
class Deployment:
    template: dict[str, Any]
    compile_output: str
    workflow: ArgoWorkflow
    containers: list[ContainerRun]
    receiver: OTLPReceiver
    run_id: str
    s3: Any
    bucket: str


def datastore_env(moto: MotoServer, bucket: str) -> dict[str, str]:
    return {
        **moto.env,
        "METAFLOW_DEFAULT_DATASTORE": "s3",
        "METAFLOW_DATASTORE_SYSROOT_S3": f"s3://{bucket}/metaflow",
        "METAFLOW_KUBERNETES_NAMESPACE": "default",
    }


def step_containers(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        t["name"]: t["container"]
        for t in template["spec"]["templates"]
        if "container" in t and t["name"] in STEPS
    }


@pytest.fixture(scope="module")
def deployment(
    tmp_path_factory: pytest.TempPathFactory,
    moto_server: MotoServer,
    user_env: Path,
    stock_image_python: Path,
) -> Iterator[Deployment]:
    bucket = moto_server.make_bucket("argo-deploy")
    root = tmp_path_factory.mktemp("argo")
    with OTLPReceiver(grpc=False, http=True) as receiver:
        port = receiver.http_endpoint.rsplit(":", 1)[1]
        compiled = compile_flow(
            user_env,
            FLOW,
            root / "laptop",
            ["argo-workflows", "create", "--only-json"],
            {
                **datastore_env(moto_server, bucket),
                "MF_TRACING": "otlp",
                # Where a collector DaemonSet listens on each node: the pod's node IP.
                "MFOTEL_REMOTE_ENDPOINT": f"http://$(METAFLOW_KUBERNETES_NODE_IP):{port}",
                # The laptop's own collector and its secret, which no container may get.
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://localhost:4318",
                "OTEL_EXPORTER_OTLP_HEADERS": SECRET,
                "OTEL_SERVICE_NAME": "ml-platform",
                "MFOTEL_TAGS": "team:ml",
            },
        )
        assert compiled.returncode == 0, compiled.stderr
        text = compiled.stdout[compiled.stdout.index("{") :]
        template = json.loads(text)
        workflow = ArgoWorkflow(
            template,
            stock_image_python,
            root / "cluster",
            {k: v for k, v in moto_server.env.items() if k.startswith("AWS_")},
        )
        containers = workflow.run()
        run_id = f"argo-{workflow.name}"
        receiver.wait_for(lambda r: any(s.name == "RUN RemoteProbeFlow" for s in r.spans()), 20)
        yield Deployment(
            template,
            compiled.stderr,
            workflow,
            containers,
            receiver,
            run_id,
            moto_server.client(),
            bucket,
        )


def test_every_step_container_gets_the_settings_and_no_secret(deployment: Deployment) -> None:
    """The compiled template's step containers carry MF_TRACING, the kit's and the exporter's
    settings and the run-start expression; never the laptop's endpoint or its headers."""
    for name, container in step_containers(deployment.template).items():
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["MF_TRACING"] == "otlp", name
        assert env["MFOTEL_REMOTE_ENDPOINT"].startswith("http://$(METAFLOW_KUBERNETES_NODE_IP):")
        assert env["MFOTEL_RUN_START"] == "{{workflow.creationTimestamp}}"
        assert env["OTEL_SERVICE_NAME"] == "ml-platform"
        assert env["MFOTEL_TAGS"] == "team:ml"
        assert "OTEL_EXPORTER_OTLP_ENDPOINT" not in env, name
        assert SECRET not in json.dumps(container), name
        assert not any(k in env for k in ("MFOTEL_AGENT_SOCKET", "MFOTEL_SPOOL_DIR", "TRACEPARENT"))
        command = container["command"][2]
        assert "--event-logger=mfotelEventLogger --monitor=mfotelMonitor" in command
        assert "--with mfotel" in command


def test_every_step_succeeds_on_a_stock_image(deployment: Deployment) -> None:
    """Each container exits 0, prints the task's own lines untouched, and says nothing of
    mfotel's: the image has no mfotel, the code package carries it."""
    names = [c.name for c in deployment.containers]
    assert names == ["start", "fan", "fan", "join", "end"], names
    for container in deployment.containers:
        assert container.returncode == 0, container.output
        assert "mfotel:" not in container.output, container.output
        assert "Traceback" not in container.output, container.output
    start = deployment.containers[0].output.splitlines()
    assert [line for line in start if line.startswith("start out")] == [
        f"start out {i}" for i in range(3)
    ]


def test_the_run_is_one_trace_with_a_root_span(deployment: Deployment) -> None:
    """A scheduler-launched run is a whole trace: one RUN span, made by the end task, from the
    workflow's creation time, every task span under it."""
    spans = deployment.receiver.spans()
    (root,) = [s for s in spans if s.name == "RUN RemoteProbeFlow"]
    assert root.parent_span_id == ""
    assert root.attributes["cicd.pipeline.result"] == "success"
    assert root.start_ns == 1_796_551_200 * 10**9  # 2026-12-06T10:00:00Z, the workflow's
    tasks = [s for s in spans if s.name in STEPS]
    assert sorted(s.name for s in tasks) == sorted(["start", "fan", "fan", "join", "end"])
    for span in tasks:
        assert span.trace_id == root.trace_id
        assert span.parent_span_id == root.span_id
        assert span.identity["metaflow.run.id"] == deployment.run_id
        assert span.status_code != 2, span


def test_every_line_arrives_live_with_its_persisted_id(deployment: Deployment) -> None:
    """Each line the tasks printed arrives once, with the id and timestamp of the line in the
    task's log that Metaflow uploaded to the datastore."""
    from metaflow.mflog.mflog import parse

    records = [r for r in deployment.receiver.logs() if r.attributes.get("log.record.uid")]
    by_uid = {r.attributes["log.record.uid"]: r for r in records}
    assert len(by_uid) == len(records), "a line arrived twice"
    s3, bucket = deployment.s3, deployment.bucket
    prefix = f"metaflow/RemoteProbeFlow/{deployment.run_id}/"
    keys = [
        o["Key"]
        for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
        if o["Key"].endswith(("task_stdout.log", "task_stderr.log"))
    ]
    persisted = 0
    for key in keys:
        for raw in s3.get_object(Bucket=bucket, Key=key)["Body"].read().splitlines():
            line = parse(raw)
            assert line is not None, raw
            record = by_uid.get(line.id.decode())
            assert record is not None, (key, raw)
            assert record.body == line.msg.decode()
            assert record.attributes["log.iostream"] == ("stderr" if "stderr" in key else "stdout")
            persisted += 1
    assert persisted >= 3 + 3 + 2 + 2, persisted  # start's out and err, fan, join, end
    assert {r.body for r in records} >= {"start out 0", "start err 2", "fan 1", "fan 2", "end out"}


def test_metrics_and_events_arrive_with_the_real_runtime(deployment: Deployment) -> None:
    """Monitor metrics and event-logger events of every step arrive; the resource names the
    real runtime and the pod the task ran in."""
    durations = [p for p in deployment.receiver.points() if p.name == "metaflow.task.duration"]
    assert sorted(p.attributes["metaflow.step.name"] for p in durations) == sorted(
        ["start", "fan", "fan", "join", "end"]
    )
    spans = [s for s in deployment.receiver.spans() if s.name in STEPS]
    for span in spans:
        assert "metaflow.task.start" in [e.name for e in span.events], span.name
        assert span.resource["metaflow.runtime"] == "argo-workflows"
        assert span.resource["service.name"] == "ml-platform"
        assert span.resource["k8s.pod.name"].startswith(deployment.workflow.name)
        assert span.resource["k8s.namespace.name"] == "default"
        assert "team:ml" in span.resource["metaflow.tags"]
