"""``@kubernetes`` and ``@batch`` launched from a laptop's run, with mfotel from its wheel:
the Kubernetes Job body (sent to a stand-in for the Kubernetes API, which runs each pod as a
container of its own) and the Batch SubmitJob request (sent to moto) carry what a remote task
needs, and the remote tasks join the laptop run's trace."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mfotel.testing import OTLPReceiver
from tests.conftest import FLOWS
from tests.containers import (
    EcsMetadata,
    KubernetesApi,
    aws_batch_env,
    compile_flow,
    run_container,
)
from tests.emulators import MotoServer

pytestmark = pytest.mark.flow

FLOW = FLOWS / "linear_probe_flow.py"
STEPS = ("start", "middle", "end")
SECRET = "authorization=Bearer 0123456789"


def laptop_env(moto: MotoServer, bucket: str, laptop: OTLPReceiver, **extra: str) -> dict[str, str]:
    return {
        **moto.env,
        "METAFLOW_DEFAULT_DATASTORE": "s3",
        "METAFLOW_DATASTORE_SYSROOT_S3": f"s3://{bucket}/metaflow",
        "MF_TRACING": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": laptop.http_endpoint,  # the laptop's own collector
        "OTEL_EXPORTER_OTLP_HEADERS": SECRET,
        **extra,
    }


def test_kubernetes_pods_get_the_settings_and_join_the_laptops_trace(
    tmp_path: Path, moto_server: MotoServer, user_env: Path, stock_image_python: Path
) -> None:
    """`run --with kubernetes`: each Job's pod env has MF_TRACING, the run's trace context and
    the remote endpoint (listed before the node IP it refers to is defined, which the task
    expands itself), never the laptop's endpoint or headers; the pods' spans go to the node's
    collector, under the run's root span, which the laptop's own collector receives."""
    bucket = moto_server.make_bucket("k8s-launch")
    credentials = {k: v for k, v in moto_server.env.items() if k.startswith("AWS_")}
    with (
        OTLPReceiver(grpc=False, http=True) as laptop,
        OTLPReceiver(grpc=False, http=True) as node,
        KubernetesApi(stock_image_python, tmp_path / "cluster", credentials) as api,
    ):
        port = node.http_endpoint.rsplit(":", 1)[1]
        run = compile_flow(
            user_env,
            FLOW,
            tmp_path / "laptop",
            ["run", "--with", "kubernetes"],
            laptop_env(
                moto_server,
                bucket,
                laptop,
                KUBECONFIG=str(api.kubeconfig(tmp_path / "kubeconfig")),
                METAFLOW_KUBERNETES_NAMESPACE="default",
                MFOTEL_REMOTE_ENDPOINT=f"http://$(METAFLOW_KUBERNETES_NODE_IP):{port}",
            ),
            timeout=600,
        )
        assert run.returncode == 0, run.stdout + run.stderr
        laptop.wait_for(lambda r: any(s.name == "RUN LinearProbeFlow" for s in r.spans()), 20)
        node.wait_for(lambda r: len([s for s in r.spans() if s.name in STEPS]) == 3, 20)
        assert len(api.jobs) == 3
        for job in api.jobs.values():
            env: list[dict[str, Any]] = job["spec"]["template"]["spec"]["containers"][0]["env"]
            names = [e["name"] for e in env]
            values = {e["name"]: e.get("value") for e in env}
            assert values["MF_TRACING"] == "otlp"
            assert values["TRACEPARENT"].startswith("00-")
            assert names.index("MFOTEL_REMOTE_ENDPOINT") < names.index(
                "METAFLOW_KUBERNETES_NODE_IP"
            )
            assert "OTEL_EXPORTER_OTLP_ENDPOINT" not in values
            assert SECRET not in str(job)
            assert not any(
                n.startswith(("MFOTEL_AGENT", "MFOTEL_SPOOL", "MFOTEL_RELAY")) for n in names
            )
        (root,) = [s for s in laptop.spans() if s.name == "RUN LinearProbeFlow"]
        assert not [s for s in laptop.spans() if s.name in STEPS]  # they went to the node's
        for span in [s for s in node.spans() if s.name in STEPS]:
            assert (span.trace_id, span.parent_span_id) == (root.trace_id, root.span_id)
            assert span.resource["metaflow.runtime"] == "kubernetes"
            assert span.resource["k8s.pod.name"] in {c.name for c in api.containers}
            assert span.resource["k8s.namespace.name"] == "default"
        bodies = {r.body for r in node.logs()}
        assert {"start out", "middle out", "end out"} <= bodies
        for container in api.containers:
            assert container.returncode == 0 and "mfotel:" not in container.output


def test_batch_jobs_get_the_settings_and_join_the_laptops_trace(
    tmp_path: Path, moto_server: MotoServer, user_env: Path, stock_image_python: Path
) -> None:
    """`run --with batch` against moto: the SubmitJob request carries MF_TRACING, the run's
    trace context and the remote endpoint, never the laptop's endpoint or headers. moto cannot
    run the job, so the laptop's run fails; the job's container, run as Batch would run it,
    exports into the laptop run's trace."""
    bucket = moto_server.make_bucket("batch-launch")
    with (
        OTLPReceiver(grpc=False, http=True) as laptop,
        OTLPReceiver(grpc=False, http=True) as gateway,
        EcsMetadata() as metadata,
    ):
        run = compile_flow(
            user_env,
            FLOW,
            tmp_path / "laptop",
            ["run", "--with", "batch"],
            laptop_env(
                moto_server,
                bucket,
                laptop,
                **aws_batch_env(moto_server),
                MFOTEL_REMOTE_ENDPOINT=gateway.http_endpoint,
                MFOTEL_SHUTDOWN_TIMEOUT_MS="1000",
            ),
            timeout=600,
        )
        assert run.returncode != 0  # moto has no Docker to run the job with
        batch = moto_server.client("batch")
        summaries = batch.list_jobs(jobQueue="mf-queue", jobStatus="FAILED")["jobSummaryList"]
        (job,) = [
            j
            for j in batch.describe_jobs(jobs=[s["jobId"] for s in summaries])["jobs"]
            if j["parameters"].get("metaflow.flow_name") == "LinearProbeFlow"
            and j["parameters"].get("metaflow.step_name") == "start"
        ]
        env = {e["name"]: e["value"] for e in job["container"]["environment"]}
        assert env["MF_TRACING"] == "otlp"
        assert env["MFOTEL_REMOTE_ENDPOINT"] == gateway.http_endpoint
        assert env["TRACEPARENT"].startswith("00-")
        assert "OTEL_EXPORTER_OTLP_ENDPOINT" not in env and SECRET not in str(job)
        command = job["container"]["command"]
        assert "--with mfotel" in command[2] and "mfotelMonitor" in command[2]
        laptop.wait_for(lambda r: any(s.name == "RUN LinearProbeFlow" for s in r.spans()), 20)
        (root,) = [s for s in laptop.spans() if s.name == "RUN LinearProbeFlow"]
        job_id = job["jobId"]
        container = run_container(
            "start",
            command[2],
            {
                **env,
                "AWS_BATCH_JOB_ID": job_id,
                "AWS_BATCH_JOB_ATTEMPT": "1",
                "AWS_BATCH_JQ_NAME": "mf-queue",
                "AWS_BATCH_CE_NAME": "mf-fargate",
                "AWS_EXECUTION_ENV": "AWS_ECS_FARGATE",
                "ECS_CONTAINER_METADATA_URI_V4": metadata.uri(job_id),
                "AWS_EC2_METADATA_DISABLED": "true",
            },
            stock_image_python,
            tmp_path / "batch",
            {k: v for k, v in moto_server.env.items() if k.startswith("AWS_")},
        )
        assert container.returncode == 0, container.output
        gateway.wait_for(lambda r: any(s.name == "start" for s in r.spans()), 20)
        (start,) = [s for s in gateway.spans() if s.name == "start"]
        assert (start.trace_id, start.parent_span_id) == (root.trace_id, root.span_id)
        assert start.resource["metaflow.runtime"] == "batch"
        assert start.resource["aws.batch.job.id"] == job_id
        assert "start out" in {r.body for r in gateway.logs()}
