"""`mfotel logs locate` on real runs: datastore paths, AWS Batch and Kubernetes task metadata
recorded the way Metaflow records it on those platforms, and the backend searches."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from tests.conftest import REPO, FlowRun, run_flow, run_mfotel

pytestmark = pytest.mark.flow

EXTENSIONS = str(REPO / "tests" / "extensions")


@pytest.fixture(scope="module")
def remote_meta(tmp_path_factory: pytest.TempPathFactory) -> FlowRun:
    """RemoteMetaFlow run locally; its start step records Batch metadata, train Kubernetes."""
    run = run_flow(
        "remote_meta_flow.py", tmp_path_factory.mktemp("locate"), env={"PYTHONPATH": EXTENSIONS}
    )
    assert run.returncode == 0, run.output
    return run


def locate(run: FlowRun, spec: str, *args: str, **env: str) -> Any:
    done = run_mfotel("logs", "locate", spec, "--json", *args, cwd=run.workdir, env=env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_every_attempt_of_a_run_with_its_persisted_logs(remote_meta: FlowRun) -> None:
    """A run's tasks and attempts are listed in order, each with the log files it persisted."""
    found = locate(remote_meta, f"RemoteMetaFlow/{remote_meta.run_id}")
    assert [(e["pathspec"].split("/")[2], e["attempt"]) for e in found] == [
        ("start", 0),
        ("start", 1),
        ("train", 0),
        ("end", 0),
    ]
    for entry in found:
        assert entry["datastore"], entry
        for path in entry["datastore"]:
            assert Path(path).is_file()
            assert Path(path).name.startswith(f"{entry['attempt']}.runtime_std")
            assert f"/{entry['pathspec']}/" in path


def test_batch_attempts_show_their_cloudwatch_stream(remote_meta: FlowRun) -> None:
    """Each Batch attempt shows its own CloudWatch group and stream, and the searches for it."""
    found = locate(remote_meta, f"RemoteMetaFlow/{remote_meta.run_id}/start")
    assert [e["attempt"] for e in found] == [0, 1]
    for entry in found:
        task_id = entry["pathspec"].split("/")[3]
        stream = f"metaflow_0123abcd/default/fake-job-start-{task_id}-{entry['attempt']}"
        assert entry["cloudwatch"] == {
            "group": "/aws/batch/job",
            "stream": stream,
            "region": "us-east-1",
        }
        queries = entry["queries"]
        assert f'filter @logStream = "{stream}"' in queries["cloudwatch_batch"]
        assert f'@aws.awslogs.logStream:"{stream}"' in queries["datadog_forwarded"]
        assert entry["kubernetes"] is None


def test_kubernetes_attempts_show_their_pod(remote_meta: FlowRun) -> None:
    """A Kubernetes attempt shows its pod and namespace and the kubectl command."""
    (entry,) = locate(remote_meta, f"RemoteMetaFlow/{remote_meta.run_id}/train")
    task_id = entry["pathspec"].split("/")[3]
    assert entry["kubernetes"] == {"pod": f"t-train-{task_id}-0", "namespace": "ml-jobs"}
    assert entry["queries"]["kubectl"] == f"kubectl logs -n ml-jobs t-train-{task_id}-0"
    assert entry["cloudwatch"] is None


def test_queries_filter_on_the_identity_each_target_makes_searchable(remote_meta: FlowRun) -> None:
    """Datadog, Splunk and CloudWatch searches name the task by the fields the targets write."""
    pathspec = next(
        e["pathspec"] for e in locate(remote_meta, f"RemoteMetaFlow/{remote_meta.run_id}/end")
    )
    flow, run, step, task = pathspec.split("/")
    (entry,) = locate(remote_meta, pathspec, "--datadog-site", "datadoghq.eu")
    queries = entry["queries"]
    assert queries["datadog"] == (
        f"service:metaflow @flow_name:{flow} @run_id:{run} @step_name:{step} @task_id:{task} "
        "@metaflow.task.attempt:0"
    )
    url = urlparse(queries["datadog_url"])
    assert url.netloc == "app.datadoghq.eu"
    assert parse_qs(url.query)["query"] == [queries["datadog"]]
    assert queries["splunk"].startswith(
        f"index=metaflow flow::{flow} run_id::{run} step::{step} task_id::{task} attempt::0 "
    )
    assert f'attributes.`metaflow.task.pathspec` = "{pathspec}"' in queries["cloudwatch"]
    # The field names are the ones the rendered collector configs set.
    golden = (REPO / "collector-configs" / "datadog" / "dev.yaml").read_text()
    for key in ("flow_name", "run_id", "step_name", "task_id"):
        assert f'attributes["{key}"]' in golden


def test_backends_follow_the_environment(remote_meta: FlowRun) -> None:
    """Only the backends this environment is set up for get queries, unless asked for."""
    spec = f"RemoteMetaFlow/{remote_meta.run_id}/end"
    (entry,) = locate(remote_meta, spec, DD_API_KEY="x")
    assert set(entry["queries"]) == {"datadog", "datadog_url"}
    (entry,) = locate(remote_meta, spec, "--backend", "splunk", DD_API_KEY="x")
    assert set(entry["queries"]) == {"splunk"}


def test_human_output_names_each_place(remote_meta: FlowRun) -> None:
    """Without --json, each attempt is a block naming its files, stream, pod and searches."""
    done = run_mfotel(
        "logs", "locate", f"RemoteMetaFlow/{remote_meta.run_id}", cwd=remote_meta.workdir
    )
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert "attempt 1" in text and "datastore   " in text
    assert "cloudwatch  group /aws/batch/job stream metaflow_0123abcd/default/" in text
    assert "kubernetes  pod t-train-" in text and "namespace ml-jobs" in text
    assert "splunk:" in text and "datadog:" in text


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("RemoteMetaFlow/999/start", "no tasks for RemoteMetaFlow/999/start"),
        ("RemoteMetaFlow", "names a flow"),
        ("Remote-Meta/1", "is not a flow name"),
    ],
)
def test_bad_pathspecs_are_one_line(remote_meta: FlowRun, spec: str, message: str) -> None:
    """A pathspec with no tasks, or a malformed one: one line naming it, exit 2."""
    done = run_mfotel("logs", "locate", spec, cwd=remote_meta.workdir)
    assert done.returncode == 2
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_batch_gives_a_ready_command_per_batch_attempt(remote_meta: FlowRun) -> None:
    """--batch: for a step that ran on Batch, the exact `aws logs` call for each attempt."""
    spec = f"RemoteMetaFlow/{remote_meta.run_id}/start"
    done = run_mfotel("logs", "locate", spec, "--batch", cwd=remote_meta.workdir)
    assert done.returncode == 0, done.stderr
    commands = [line for line in done.stdout.splitlines() if not line.startswith("#")]
    assert len(commands) == 2
    for attempt, command in enumerate(commands):
        words = shlex.split(command)
        assert words[:3] == ["aws", "logs", "get-log-events"]
        stream = words[words.index("--log-stream-name") + 1]
        assert stream.startswith("metaflow_0123abcd/default/fake-job-start-")
        assert stream.endswith(f"-{attempt}")
        assert words[words.index("--log-group-name") + 1] == "/aws/batch/job"
        assert words[words.index("--region") + 1] == "us-east-1"


def test_batch_on_a_task_with_no_batch_metadata_is_one_line(remote_meta: FlowRun) -> None:
    """A task that did not run on Batch: one line naming it and the fix, exit 2, no output."""
    spec = f"RemoteMetaFlow/{remote_meta.run_id}"
    done = run_mfotel("logs", "locate", spec, "--batch", cwd=remote_meta.workdir)
    assert done.returncode == 2 and done.stdout == ""
    (line,) = done.stderr.strip().splitlines()
    assert "/train/" in line and "attempt 0 has no AWS Batch metadata" in line, line
    assert "2 of 4 attempts" in line and "drop --batch" in line, line
