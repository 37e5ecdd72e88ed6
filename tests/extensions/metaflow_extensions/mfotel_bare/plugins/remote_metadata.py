"""``@fake_batch`` / ``@fake_kubernetes``: a local task records the metadata Metaflow's own
``@batch`` / ``@kubernetes`` decorators record on those platforms (same fields, types and
``attempt_id`` tags, see metaflow/plugins/aws/batch/batch_decorator.py), so tests can read it
back through the Client API as they would for a real remote task."""

from metaflow.decorators import StepDecorator
from metaflow.metadata_provider import MetaDatum


def _register(metadata, run_id, step_name, task_id, retry_count, meta):
    entries = [
        MetaDatum(field=k, value=v, type=k, tags=[f"attempt_id:{retry_count}"])
        for k, v in meta.items()
    ]
    metadata.register_metadata(run_id, step_name, task_id, entries)


class FakeBatchDecorator(StepDecorator):
    name = "fake_batch"

    def task_pre_step(
        self,
        step_name,
        task_datastore,
        metadata,
        run_id,
        task_id,
        flow,
        graph,
        retry_count,
        max_user_code_retries,
        ubf_context,
        inputs,
    ):
        job = f"fake-job-{step_name}-{task_id}-{retry_count}"
        _register(
            metadata,
            run_id,
            step_name,
            task_id,
            retry_count,
            {
                "aws-batch-job-id": job,
                "aws-batch-job-attempt": "1",
                "aws-batch-ce-name": "fake-ce",
                "aws-batch-jq-name": "fake-queue",
                "aws-batch-execution-env": "AWS_ECS_EC2",
                "aws-batch-awslogs-group": "/aws/batch/job",
                "aws-batch-awslogs-region": "us-east-1",
                "aws-batch-awslogs-stream": f"metaflow_0123abcd/default/{job}",
            },
        )


class FakeKubernetesDecorator(StepDecorator):
    name = "fake_kubernetes"

    def task_pre_step(
        self,
        step_name,
        task_datastore,
        metadata,
        run_id,
        task_id,
        flow,
        graph,
        retry_count,
        max_user_code_retries,
        ubf_context,
        inputs,
    ):
        _register(
            metadata,
            run_id,
            step_name,
            task_id,
            retry_count,
            {
                "kubernetes-pod-name": f"t-{step_name}-{task_id}-{retry_count}",
                "kubernetes-pod-namespace": "ml-jobs",
                "kubernetes-pod-id": "0000-pod-uid",
                "kubernetes-pod-service-account-name": "default",
                "kubernetes-node-ip": "10.0.0.1",
            },
        )
