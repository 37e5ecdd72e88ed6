"""An Argo Workflows deployment, compiled by a user's Metaflow with mfotel installed from its
wheel, then run as Argo runs it (tests/containers.py): every step in a container of its own,
on a stock image with no mfotel, the code package fetched from the datastore (moto S3)."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from mfotel.testing import OTLPReceiver
from tests.conftest import FLOWS, run_mfotel
from tests.containers import ArgoWorkflow, ContainerRun, KubernetesApi, compile_flow
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
    platform: dict[str, str] = field(default_factory=dict)


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


def deploy(
    root: Path,
    moto: MotoServer,
    python: Path,
    stock: Path,
    bucket: str,
    remote_endpoint: str,
    receiver: OTLPReceiver,
    **platform: str,
) -> Deployment:
    """Compile RemoteProbeFlow for Argo Workflows on a laptop, then run it in the cluster."""
    (root / "laptop").mkdir(parents=True, exist_ok=True)
    with KubernetesApi(stock, root / "unused", {}) as api:  # where the laptop's kubeconfig points
        compiled = compile_flow(
            python,
            FLOW,
            root / "laptop",
            ["argo-workflows", "create", "--only-json"],
            {
                **datastore_env(moto, bucket),
                "KUBECONFIG": str(api.kubeconfig(root / "laptop" / "kubeconfig")),
                "MF_TRACING": "otlp",
                "MFOTEL_REMOTE_ENDPOINT": remote_endpoint,
                # The laptop's own collector and its secret, which no container may get.
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://localhost:4318",
                "OTEL_EXPORTER_OTLP_HEADERS": SECRET,
                "OTEL_SERVICE_NAME": "ml-platform",
                "MFOTEL_TAGS": "team:ml",
            },
        )
    assert compiled.returncode == 0, compiled.stderr
    template = json.loads(compiled.stdout[compiled.stdout.index("{") :])
    credentials = {k: v for k, v in moto.env.items() if k.startswith("AWS_")}
    workflow = ArgoWorkflow(template, stock, root / "cluster", {**credentials, **platform})
    containers = workflow.run()
    return Deployment(
        template,
        compiled.stderr,
        workflow,
        containers,
        receiver,
        f"argo-{workflow.name}",
        moto.client(),
        bucket,
        {
            **credentials,
            "METAFLOW_S3_ENDPOINT_URL": moto.endpoint,
            "AWS_ENDPOINT_URL": moto.endpoint,
        },
    )


def node_endpoint(receiver: OTLPReceiver) -> str:
    """Where a collector DaemonSet listens on each node: the pod's node IP, from Kubernetes."""
    return f"http://$(METAFLOW_KUBERNETES_NODE_IP):{receiver.http_endpoint.rsplit(':', 1)[1]}"


def deployed(
    factory: pytest.TempPathFactory,
    moto: MotoServer,
    python: Path,
    stock: Path,
    name: str,
    reachable: bool = True,
    **platform: str,
) -> Iterator[Deployment]:
    """A module's deployment: its own bucket and receiver (which the steps reach through the
    node's IP, or, with ``reachable=False``, nothing listens where they send), the run done
    and, when it reached the receiver, its root span arrived."""
    from mfotel.testing._collector import free_port

    bucket = moto.make_bucket(name)
    with OTLPReceiver(grpc=False, http=True) as receiver:
        endpoint = (
            node_endpoint(receiver)
            if reachable
            else f"http://$(METAFLOW_KUBERNETES_NODE_IP):{free_port()}"
        )
        done = deploy(
            factory.mktemp(name), moto, python, stock, bucket, endpoint, receiver, **platform
        )
        if reachable:
            receiver.wait_for(lambda r: any(s.name == "RUN RemoteProbeFlow" for s in r.spans()), 20)
        yield done


@pytest.fixture(scope="module")
def deployment(
    tmp_path_factory: pytest.TempPathFactory,
    moto_server: MotoServer,
    user_env: Path,
    stock_image_python: Path,
) -> Iterator[Deployment]:
    yield from deployed(tmp_path_factory, moto_server, user_env, stock_image_python, "argo-deploy")


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
        assert SECRET not in json.dumps(deployment.template), name
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


def backfill(deployment: Deployment, endpoint: str) -> str:
    """`mfotel backfill` of the deployment's run from the datastore; its summary line."""
    done = run_mfotel(
        "backfill",
        f"RemoteProbeFlow/{deployment.run_id}",
        "--datastore",
        "s3",
        "--datastore-root",
        f"s3://{deployment.bucket}/metaflow",
        "--no-progress",
        env={
            **{k: v for k, v in deployment.platform.items()},
            "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
            "MFOTEL_STATE_DIR": str(deployment.workflow.root / "laptop-state"),
        },
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.strip().splitlines()[-1]


def persisted_uids(deployment: Deployment) -> dict[str, str]:
    """Every line of the run's task logs in the datastore: id -> text."""
    from metaflow.mflog.mflog import parse

    s3, bucket = deployment.s3, deployment.bucket
    prefix = f"metaflow/RemoteProbeFlow/{deployment.run_id}/"
    found: dict[str, str] = {}
    for item in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", []):
        if item["Key"].endswith(("task_stdout.log", "task_stderr.log")):
            for raw in s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read().splitlines():
                line = parse(raw)
                assert line is not None, raw
                found[line.id.decode()] = line.msg.decode()
    return found


@pytest.fixture(scope="module")
def killed(
    tmp_path_factory: pytest.TempPathFactory,
    moto_server: MotoServer,
    user_env: Path,
    stock_image_python: Path,
) -> Iterator[Deployment]:
    """The join step's task is SIGKILLed mid-step (as the OOM killer does), no retry left."""
    yield from deployed(
        tmp_path_factory,
        moto_server,
        user_env,
        stock_image_python,
        "argo-killed",
        REMOTE_PROBE_KILL="join",
    )


def test_a_killed_task_fails_its_step_and_nothing_else(killed: Deployment) -> None:
    """The killed task's container exits as Metaflow's wrapper makes it (the task's 137), the
    workflow stops there, and no container says more than one mfotel line."""
    names = [(c.name, c.returncode) for c in killed.containers]
    assert names[:3] == [("start", 0), ("fan", 0), ("fan", 0)], names
    assert names[3][0] == "join" and names[3][1] == 137, names
    assert len(names) == 4, names
    for container in killed.containers:
        assert container.output.count("mfotel:") <= 1, container.output


def test_a_killed_tasks_lines_arrive_live(killed: Deployment) -> None:
    """What the task printed before it was killed arrived while it ran, within 2 s of being
    printed, and its span ends in error; the run's root span says the run failed."""
    records = {r.body: r for r in killed.receiver.logs() if r.attributes.get("log.record.uid")}
    for i in range(10):
        record = records[f"before kill {i}"]
        assert record.received_ns - record.time_ns < 2 * 10**9, record
    assert "last words" in records
    spans = killed.receiver.spans()
    (join,) = [s for s in spans if s.name == "join"]
    assert join.status_code == 2 and "killed" in join.status_message, join
    (root,) = [s for s in spans if s.name == "RUN RemoteProbeFlow"]
    assert root.attributes["cicd.pipeline.result"] == "failure"
    assert join.parent_span_id == root.span_id


def test_backfill_after_a_kill_sends_each_line_once(killed: Deployment) -> None:
    """The containers handed their ledgers to the datastore: a backfill of the run skips every
    line that arrived live, so live and backfill together give each persisted line once."""
    persisted = persisted_uids(killed)
    live = {
        r.attributes["log.record.uid"]
        for r in killed.receiver.logs()
        if r.attributes.get("log.record.uid")
    }
    assert live <= set(persisted), sorted(live - set(persisted))[:5]
    with OTLPReceiver(grpc=False, http=True) as later:
        summary = backfill(killed, later.http_endpoint)
        sent = {r.attributes["log.record.uid"] for r in later.logs()}
    assert not sent & live, (summary, sorted(persisted[u] for u in sent & live))
    assert sent | live == set(persisted), summary
    assert f"{len(live)} line(s) already delivered live" in summary, summary


@pytest.fixture(scope="module")
def unreachable(
    tmp_path_factory: pytest.TempPathFactory,
    moto_server: MotoServer,
    user_env: Path,
    stock_image_python: Path,
) -> Iterator[Deployment]:
    """No collector answers at the remote endpoint."""
    yield from deployed(
        tmp_path_factory,
        moto_server,
        user_env,
        stock_image_python,
        "argo-unreachable",
        reachable=False,
    )


def test_with_no_collector_the_steps_succeed_and_the_spool_goes_to_the_datastore(
    unreachable: Deployment,
) -> None:
    """Every step succeeds with one warning line; each container's unsent telemetry is in the
    datastore, and `mfotel replay --datastore s3` sends all of it, once."""
    assert [c.returncode for c in unreachable.containers] == [0] * 5
    for container in unreachable.containers:
        warnings = [line for line in container.output.splitlines() if line.startswith("mfotel:")]
        assert len(warnings) == 1, container.output
        assert "spooled" in warnings[0], warnings
        # Where it really goes: the container's own folder dies with the container.
        assert f"s3://{unreachable.bucket}/metaflow/.mfotel/spool/" in warnings[0], warnings
        assert "mfotel replay --datastore s3" in warnings[0], warnings
    s3 = unreachable.s3
    spooled = s3.list_objects_v2(Bucket=unreachable.bucket, Prefix="metaflow/.mfotel/spool/")
    assert spooled.get("KeyCount", 0) >= 5, spooled
    with OTLPReceiver(grpc=False, http=True) as collector:
        env = {
            **unreachable.platform,
            "OTEL_EXPORTER_OTLP_ENDPOINT": collector.http_endpoint,
            "MFOTEL_STATE_DIR": str(unreachable.workflow.root / "laptop-state"),
        }
        args = ["--datastore", "s3", "--datastore-root", f"s3://{unreachable.bucket}/metaflow"]
        replayed = run_mfotel("replay", *args, env=env)
        assert replayed.returncode == 0, replayed.stdout + replayed.stderr
        assert "s3://" in replayed.stdout, replayed.stdout
        again = run_mfotel("replay", *args, env=env)
        assert "nothing to send" in again.stdout, again.stdout
        spans = collector.spans()
        assert sorted(s.name for s in spans if s.name in STEPS) == sorted(
            ["start", "fan", "fan", "join", "end"]
        )
        assert [s.name for s in spans if s.name.startswith("RUN ")] == ["RUN RemoteProbeFlow"]
        replayed_uids = [
            r.attributes["log.record.uid"]
            for r in collector.logs()
            if r.attributes.get("log.record.uid")
        ]
        assert len(replayed_uids) == len(set(replayed_uids))
    left = s3.list_objects_v2(Bucket=unreachable.bucket, Prefix="metaflow/.mfotel/spool/")
    assert left.get("KeyCount", 0) == 0, left
    # Replay, then backfill (as the README says): each persisted line once. Backfill brings only
    # what the agents never read, such as a spooling warning printed after their last read.
    persisted = set(persisted_uids(unreachable))
    with OTLPReceiver(grpc=False, http=True) as later:
        summary = backfill(unreachable, later.http_endpoint)
        backfilled = [r.attributes["log.record.uid"] for r in later.logs()]
    assert not set(backfilled) & set(replayed_uids), summary
    assert set(backfilled) | set(replayed_uids) == persisted, summary
    assert len(backfilled) <= 5, summary  # at most a line per container
    with OTLPReceiver(grpc=False, http=True) as again:
        summary = backfill(unreachable, again.http_endpoint)
        assert not again.logs(), summary


# --- The same template, its start step run with a changed environment or image ----------------


def start_step(
    deployment: Deployment,
    python: Path,
    root: Path,
    **changes: str | None,
) -> tuple[ContainerRun, ArgoWorkflow]:
    """Run only the compiled template's start step, with env ``changes`` (None removes)."""
    template = copy.deepcopy(deployment.template)
    for item in template["spec"]["templates"]:
        if "container" not in item:
            continue
        env = [e for e in item["container"]["env"] if e["name"] not in changes]
        env += [{"name": k, "value": v} for k, v in changes.items() if v is not None]
        item["container"]["env"] = env
    workflow = ArgoWorkflow(template, python, root, deployment.platform, stop_after="start")
    (run,) = workflow.run()
    return run, workflow


def mfotel_lines(run: ContainerRun) -> list[str]:
    return [line for line in run.output.splitlines() if line.startswith("mfotel:")]


def test_a_step_compiled_with_tracing_on_runs_without_it(
    deployment: Deployment, stock_image_python: Path, tmp_path: Path
) -> None:
    """The container of a step compiled while tracing was on, run without MF_TRACING (an
    operator removed it; an older deployment): the command line still names mfotel's monitor
    and event logger, which resolve, and do nothing. The step succeeds, says nothing."""
    run, _ = start_step(deployment, stock_image_python, tmp_path, MF_TRACING=None)
    assert run.returncode == 0, run.output
    assert mfotel_lines(run) == [], run.output
    assert "start out 2" in run.output.splitlines()


def test_an_unknown_mf_tracing_value_is_one_line(
    deployment: Deployment, stock_image_python: Path, tmp_path: Path
) -> None:
    """MF_TRACING=otel in the container: one line naming the value and the fix, no telemetry,
    the step's own result."""
    run, _ = start_step(deployment, stock_image_python, tmp_path, MF_TRACING="otel")
    assert run.returncode == 0, run.output
    (line,) = mfotel_lines(run)
    assert "MF_TRACING='otel'" in line and "set MF_TRACING=otlp" in line, line


def test_a_malformed_remote_endpoint_is_one_line_and_nothing_is_lost(
    deployment: Deployment, stock_image_python: Path, tmp_path: Path
) -> None:
    """MFOTEL_REMOTE_ENDPOINT that is no URL: one line, the step succeeds, and the attempt's
    telemetry waits in the datastore for `mfotel replay --datastore`."""
    s3, bucket = deployment.s3, deployment.bucket
    before = {
        o["Key"]
        for o in s3.list_objects_v2(Bucket=bucket, Prefix="metaflow/.mfotel/spool/").get(
            "Contents", []
        )
    }
    run, workflow = start_step(
        deployment, stock_image_python, tmp_path, MFOTEL_REMOTE_ENDPOINT="collector:4318:x"
    )
    assert run.returncode == 0, run.output
    (line,) = mfotel_lines(run)
    assert "collector:4318:x" in line and "spooled" in line, line
    after = {
        o["Key"]
        for o in s3.list_objects_v2(Bucket=bucket, Prefix="metaflow/.mfotel/spool/").get(
            "Contents", []
        )
    }
    mine = [k for k in after - before if f"/argo-{workflow.name}/start/" in k]
    assert any("/traces/" in k for k in mine) and any("/logs/" in k for k in mine), mine


def test_a_remote_endpoint_naming_what_the_pod_lacks_is_one_line(
    deployment: Deployment, stock_image_python: Path, tmp_path: Path
) -> None:
    """$(VAR) that the container does not define: one line naming it; the step succeeds."""
    run, _ = start_step(
        deployment,
        stock_image_python,
        tmp_path,
        MFOTEL_REMOTE_ENDPOINT="http://$(OTEL_COLLECTOR_HOST):4318",
    )
    assert run.returncode == 0, run.output
    (line,) = mfotel_lines(run)
    assert "OTEL_COLLECTOR_HOST" in line, line


def stock(version: str) -> Path:
    """A stock image's CPython of this version (pyenv's); skipped, with what to install, where
    missing (CI counts a skip as a failure)."""
    from tests.containers import MissingPython, stock_python

    try:
        return stock_python(version)
    except MissingPython as err:
        pytest.skip(str(err))


@pytest.mark.parametrize("version", ["3.9", "3.13"])
def test_the_task_side_runs_on_every_supported_python(
    version: str, deployment: Deployment, tmp_path: Path
) -> None:
    """The oldest and newest CPython a task image may carry: the step exports its span, its
    lines and its metrics, from the code package's mfotel, and says nothing."""
    with OTLPReceiver(grpc=False, http=True) as rx:
        run, workflow = start_step(
            deployment, stock(version), tmp_path, MFOTEL_REMOTE_ENDPOINT=rx.http_endpoint
        )
        assert run.returncode == 0, run.output
        assert mfotel_lines(run) == [], run.output
        assert rx.wait_for(lambda r: any(s.name == "start" for s in r.spans()), 20)
        (span,) = [s for s in rx.spans() if s.name == "start"]
        assert span.identity["metaflow.run.id"] == f"argo-{workflow.name}"
        assert {f"start out {i}" for i in range(3)} <= {r.body for r in rx.logs()}
        assert any(p.name == "metaflow.task.duration" for p in rx.points())


def test_an_older_python_in_the_image_is_one_line(deployment: Deployment, tmp_path: Path) -> None:
    """CPython 3.8 in the task's image: the step succeeds exactly as without mfotel, with one
    line saying telemetry is off and why."""
    with OTLPReceiver(grpc=False, http=True) as rx:
        run, _ = start_step(
            deployment, stock("3.8"), tmp_path, MFOTEL_REMOTE_ENDPOINT=rx.http_endpoint
        )
        assert run.returncode == 0, run.output
        (line,) = mfotel_lines(run)
        assert "needs Python >= 3.9" in line and "3.8" in line, line
        assert "start out 2" in run.output.splitlines()
        assert not rx.spans() and not rx.logs()


def test_a_container_killed_whole_loses_at_most_the_last_second_live(
    deployment: Deployment, stock_image_python: Path, tmp_path: Path
) -> None:
    """Every process of the container SIGKILLed at once, mfotel's agent with them: each line
    printed more than a second before the kill arrived live, with its persisted id."""
    from mfotel.logs._mflog import parse

    with OTLPReceiver(grpc=False, http=True) as rx:
        template = copy.deepcopy(deployment.template)
        for item in template["spec"]["templates"]:
            if "container" in item:
                env = [e for e in item["container"]["env"] if e["name"] != "MFOTEL_REMOTE_ENDPOINT"]
                ours = {"name": "MFOTEL_REMOTE_ENDPOINT", "value": rx.http_endpoint}
                item["container"]["env"] = [*env, ours]
        platform = {**deployment.platform, "REMOTE_PROBE_KILL": "container"}
        runs = ArgoWorkflow(template, stock_image_python, tmp_path, platform).run()
        assert [r.name for r in runs] == ["start", "fan", "fan", "join"]
        assert runs[-1].returncode != 0
        ticks = []
        for raw in (runs[-1].workdir / ".logs" / "mflog_stdout").read_bytes().splitlines():
            line = parse(raw)
            if line is not None and line.text.startswith(b"tick "):
                ticks.append((line.uid, line.time_ns))
        assert len(ticks) == 30, ticks
        killed_at = ticks[-1][1]
        late = [uid for uid, at in ticks if at > killed_at - 10**9]
        early = {uid for uid, _ in ticks} - set(late)

        def received(r: OTLPReceiver) -> set[str]:
            return {str(x.attributes.get("log.record.uid")) for x in r.logs()}

        rx.wait_for(lambda r: early <= received(r), 5)  # anything still on its way
        assert early <= received(rx), sorted(early - received(rx))[:3]
    assert len(late) <= 11
