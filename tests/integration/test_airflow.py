"""An Airflow deployment, compiled by a user's Metaflow with mfotel from its wheel, then run as
Airflow's KubernetesPodOperator runs it (tests/containers.py): templates rendered with Jinja,
each task in a pod of its own on a stock image."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mfotel.testing import OTLPReceiver
from tests.conftest import FLOWS
from tests.containers import AirflowDagRun, ContainerRun, compile_flow
from tests.emulators import MotoServer

pytestmark = pytest.mark.flow

FLOW = FLOWS / "linear_probe_flow.py"
STEPS = ("start", "middle", "end")


@dataclass
class Deployment:
    dag_file: Path
    dag: AirflowDagRun
    containers: list[ContainerRun]
    receiver: OTLPReceiver


@pytest.fixture(scope="module")
def deployment(
    tmp_path_factory: pytest.TempPathFactory,
    moto_server: MotoServer,
    user_env: Path,
    stock_image_python: Path,
) -> Iterator[Deployment]:
    bucket = moto_server.make_bucket("airflow-deploy")
    root = tmp_path_factory.mktemp("airflow")
    with OTLPReceiver(grpc=False, http=True) as receiver:
        port = receiver.http_endpoint.rsplit(":", 1)[1]
        laptop = root / "laptop"
        compiled = compile_flow(
            user_env,
            FLOW,
            laptop,
            ["airflow", "create", "dag.py"],
            {
                **moto_server.env,
                "METAFLOW_DEFAULT_DATASTORE": "s3",
                "METAFLOW_DATASTORE_SYSROOT_S3": f"s3://{bucket}/metaflow",
                "METAFLOW_KUBERNETES_NAMESPACE": "default",
                "MF_TRACING": "otlp",
                # A collector DaemonSet: the node IP, which Airflow's pods list after our vars.
                "MFOTEL_REMOTE_ENDPOINT": f"http://$(METAFLOW_KUBERNETES_NODE_IP):{port}",
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://localhost:4318",
                "OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer abc",
            },
        )
        assert compiled.returncode == 0, compiled.stderr
        dag_file = laptop / "dag.py"
        credentials = {k: v for k, v in moto_server.env.items() if k.startswith("AWS_")}
        dag = AirflowDagRun(dag_file, stock_image_python, root / "cluster", credentials)
        containers = dag.run()
        receiver.wait_for(lambda r: any(s.name == "RUN LinearProbeFlow" for s in r.spans()), 20)
        yield Deployment(dag_file, dag, containers, receiver)


def test_the_dag_carries_the_settings_and_no_secret(deployment: Deployment) -> None:
    """Every task's pod env has MF_TRACING, the remote endpoint and the run-start template;
    the DAG file has no trace of the laptop's endpoint or its header."""
    text = deployment.dag_file.read_text()
    assert "Bearer abc" not in text and "localhost:4318" not in text
    assert text.count("'name': 'MF_TRACING', 'value': 'otlp'") == len(STEPS)
    assert text.count("dag_run.start_date.isoformat()") == len(STEPS)
    assert text.count("--monitor=mfotelMonitor") >= len(STEPS)


def test_every_task_succeeds_and_the_run_is_one_trace(deployment: Deployment) -> None:
    """The pods succeed on a stock image (the endpoint's $(VAR) expanded by the task, since
    Kubernetes could not); their spans hang under one RUN span from the DAG run's start."""
    assert [(c.name, c.returncode) for c in deployment.containers] == [
        (name, 0) for name in STEPS
    ], [c.output for c in deployment.containers]
    spans = deployment.receiver.spans()
    (root,) = [s for s in spans if s.name == "RUN LinearProbeFlow"]
    assert root.start_ns == 1_796_551_200_250_000_000  # the DAG run's start_date
    tasks = [s for s in spans if s.name in STEPS]
    assert sorted(s.name for s in tasks) == sorted(STEPS)
    for span in tasks:
        assert (span.trace_id, span.parent_span_id) == (root.trace_id, root.span_id)
        assert span.resource["metaflow.runtime"] == "airflow"
        assert span.resource["k8s.pod.name"].startswith(span.name)
    bodies = {r.body for r in deployment.receiver.logs() if r.attributes.get("log.record.uid")}
    assert {"start out", "start err", "middle out", "end out"} <= bodies
