"""A Step Functions deployment (each step an AWS Batch job), compiled by a user's Metaflow with
mfotel from its wheel against moto, then run as Step Functions and Batch run it
(tests/containers.py): each step in a container of its own, on a stock image."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mfotel.testing import OTLPReceiver
from tests.conftest import FLOWS
from tests.containers import (
    ContainerRun,
    EcsMetadata,
    StepFunctionsExecution,
    aws_batch_env,
    compile_flow,
    job_environments,
)
from tests.emulators import MotoServer

pytestmark = pytest.mark.flow

FLOW = FLOWS / "linear_probe_flow.py"
SECRET = "x-sf-token=0123456789abcdef"
STEPS = ("start", "middle", "end")


@dataclass
class Deployment:
    definition: dict[str, Any]
    jobs: dict[str, dict[str, str]]
    execution: StepFunctionsExecution
    containers: list[ContainerRun]
    receiver: OTLPReceiver


@pytest.fixture(scope="module")
def deployment(
    tmp_path_factory: pytest.TempPathFactory,
    moto_server: MotoServer,
    user_env: Path,
    stock_image_python: Path,
) -> Iterator[Deployment]:
    bucket = moto_server.make_bucket("sfn-deploy")
    root = tmp_path_factory.mktemp("sfn")
    with OTLPReceiver(grpc=False, http=True) as receiver, EcsMetadata() as metadata:
        compiled = compile_flow(
            user_env,
            FLOW,
            root / "laptop",
            ["step-functions", "create", "--only-json"],
            {
                **moto_server.env,
                **aws_batch_env(moto_server),
                "METAFLOW_DEFAULT_DATASTORE": "s3",
                "METAFLOW_DATASTORE_SYSROOT_S3": f"s3://{bucket}/metaflow",
                "MF_TRACING": "otlp",
                # A gateway collector the Batch jobs reach; the laptop's own stays here.
                "MFOTEL_REMOTE_ENDPOINT": receiver.http_endpoint,
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://localhost:4318",
                "OTEL_EXPORTER_OTLP_TRACES_HEADERS": SECRET,
                "MFOTEL_PROFILE": "prod",
            },
        )
        assert compiled.returncode == 0, compiled.stderr
        definition = json.loads(compiled.stdout[compiled.stdout.index("{") :])
        jobs = job_environments(moto_server, definition)
        credentials = {k: v for k, v in moto_server.env.items() if k.startswith("AWS_")}
        execution = StepFunctionsExecution(
            definition, jobs, stock_image_python, root / "batch", credentials, metadata
        )
        containers = execution.run()
        receiver.wait_for(lambda r: any(s.name == "RUN LinearProbeFlow" for s in r.spans()), 20)
        yield Deployment(definition, jobs, execution, containers, receiver)


def test_every_batch_job_gets_the_settings_and_no_secret(deployment: Deployment) -> None:
    """Each Task state's container overrides carry MF_TRACING, the settings and the execution's
    start time as a context path; no state and no job definition holds the laptop's endpoint
    or a header."""
    for name in STEPS:
        overrides = deployment.definition["States"][name]["Parameters"]["ContainerOverrides"]
        env = {e["Name"]: e.get("Value", e.get("Value.$")) for e in overrides["Environment"]}
        assert env["MF_TRACING"] == "otlp"
        assert env["MFOTEL_RUN_START"] == "$$.Execution.StartTime"
        assert env["MFOTEL_REMOTE_ENDPOINT"] == deployment.receiver.http_endpoint
        assert env["MFOTEL_PROFILE"] == "prod"
        assert "OTEL_EXPORTER_OTLP_ENDPOINT" not in env
        assert "--monitor=mfotelMonitor" in overrides["Command"][2]
    text = json.dumps([deployment.definition, deployment.jobs])
    assert SECRET not in text and "localhost:4318" not in text


def test_every_step_succeeds_and_the_run_is_one_trace(deployment: Deployment) -> None:
    """The jobs succeed on a stock image; their spans hang under one RUN span that starts
    when the execution started and that the end step ended."""
    assert [(c.name, c.returncode) for c in deployment.containers] == [
        ("start", 0),
        ("middle", 0),
        ("end", 0),
    ], [c.output for c in deployment.containers]
    for container in deployment.containers:
        assert "mfotel:" not in container.output, container.output
    spans = deployment.receiver.spans()
    (root,) = [s for s in spans if s.name == "RUN LinearProbeFlow"]
    assert root.start_ns == 1_796_551_200_123_000_000  # 2026-12-06T10:00:00.123Z
    assert root.attributes["cicd.pipeline.result"] == "success"
    tasks = [s for s in spans if s.name in STEPS]
    assert sorted(s.name for s in tasks) == sorted(STEPS)
    for span in tasks:
        assert (span.trace_id, span.parent_span_id) == (root.trace_id, root.span_id)
        assert span.identity["metaflow.run.id"] == f"sfn-{deployment.execution.name}"


def test_batch_jobs_name_their_runtime_job_and_cloud(deployment: Deployment) -> None:
    """Resource attributes from AWS Batch's environment: the job, the queue, the cloud."""
    spans = [s for s in deployment.receiver.spans() if s.name in STEPS]
    jobs = {s.resource["aws.batch.job.id"] for s in spans}
    assert len(jobs) == 3
    for span in spans:
        job = span.resource["aws.batch.job.id"]
        assert span.resource["aws.ecs.task.arn"] == EcsMetadata.task(job)["TaskARN"]
        assert span.resource["aws.ecs.launchtype"] == "fargate"
        assert span.resource["container.id"] == EcsMetadata.container(job)["DockerId"]
        assert span.resource["cloud.availability_zone"] == "us-east-1a"
        assert span.resource["metaflow.runtime"] == "step-functions"
        assert span.resource["cloud.provider"] == "aws"
        assert span.resource["cloud.region"] == "us-east-1"
        assert span.resource["aws.batch.job.queue"] == "mf-queue"
        assert span.resource["deployment.environment.name"] == "prod"
    bodies = {r.body for r in deployment.receiver.logs() if r.attributes.get("log.record.uid")}
    assert {"start out", "start err", "middle out", "end out"} <= bodies
