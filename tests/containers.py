"""Steps run the way their compiled containers run them, without a cluster or Docker.

Metaflow compiles each step of a deployment into a container: an image, a ``bash -c`` command
(fetch the code package, extract it, run ``python flow.py step ...`` under Metaflow's own log
capture, upload the logs) and an environment. These helpers run exactly that command and that
environment, in a fresh directory, with a *stock* interpreter: a CPython with only what
Metaflow's bootstrap installs (boto3, requests), so Metaflow and mfotel come from the code
package, as on a stock image.

What is emulated, and how:

- The container itself: mount and PID namespaces per container (``unshare``), with a
  copy-on-write view of this machine's root as its image, a fresh ``/tmp``, its own working
  directory and ``/mnt/out`` (Argo's output parameters); when its command ends, every
  process it left ends too.
- Kubernetes' env: the downward-API fields (``status.hostIP`` is 127.0.0.1, where the test's
  receivers listen) and ``$(VAR)`` references, expanded as the kubelet expands them (only
  variables defined earlier in the list; ``$$`` is ``$``).
- Argo Workflows: the WorkflowTemplate's DAG (``depends``, ``withParam`` fan-outs, nested DAG
  templates, retries), its ``{{...}}`` variables and output parameters.
- The platform's credentials: the moto account's keys, as an IAM role would give them.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.emulators import MotoServer

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mfotel" / "test-envs"
REPO = Path(__file__).parent.parent
STOCK_PACKAGES = ("boto3", "requests")  # what Metaflow's container bootstrap installs
PYENV = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"


class MissingPython(RuntimeError):
    """No CPython of the asked version on this machine."""


def cpython(version: str) -> Path:
    """A CPython ``version`` (``"3.9"``) interpreter: pyenv's, or this one if it matches."""
    if f"{sys.version_info.major}.{sys.version_info.minor}" == version:
        return Path(getattr(sys, "_base_executable", sys.executable))
    candidates = sorted(PYENV.glob(f"{version}.*/bin/python{version}"), reverse=True)
    if candidates:
        return candidates[0]
    found = shutil.which(f"python{version}")
    if found:
        return Path(found)
    raise MissingPython(
        f"needs CPython {version}: install it (e.g. `pyenv install {version}`) and run again"
    )


def _pip(python: Path, *args: str, timeout: float = 900) -> None:
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *args],
        check=True,
        timeout=timeout,
    )


def _venv(folder: Path, base: Path, packages: list[str], marker: str) -> Path:
    python = folder / "bin" / "python"
    ready = folder / ".ready"
    if not (ready.exists() and ready.read_text() == marker):
        subprocess.run([str(base), "-m", "venv", "--clear", str(folder)], check=True)
        if packages:
            _pip(python, *packages)
        ready.write_text(marker)
    return python


def stock_python(version: str = "3.11") -> Path:
    """A stock image's interpreter: CPython ``version`` with boto3 and requests, nothing else
    (no Metaflow, no mfotel, no OpenTelemetry). Cached outside the repo."""
    base = cpython(version)
    python = _venv(CACHE / f"stock-py{version}", base, list(STOCK_PACKAGES), "stock-1\n")
    probe = subprocess.run(
        [
            str(python),
            "-c",
            "import importlib.util as u; "
            "print([m for m in ('metaflow', 'mfotel', 'opentelemetry') if u.find_spec(m)])",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd="/",
    )
    assert probe.stdout.strip() == "[]", f"the stock interpreter has {probe.stdout}"
    return python


def build_wheel(out: Path) -> Path:
    """mfotel's wheel, built from this checkout as `pip wheel .` builds it for a user."""
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out), str(REPO)],
        check=True,
        timeout=600,
    )
    (wheel,) = out.glob("mfotel-*.whl")
    return wheel


def user_python(metaflow_version: str, wheel: Path) -> Path:
    """A user's environment: Metaflow ``metaflow_version`` and mfotel installed from its wheel
    (not editable). The dependencies are cached; the wheel goes in fresh."""
    packages = [f"metaflow=={metaflow_version}", "kubernetes"]
    folder = CACHE / f"user-mf{metaflow_version}-py{sys.version_info.major}{sys.version_info.minor}"
    python = _venv(folder, Path(sys._base_executable), [*packages, str(wheel)], "\n".join(packages))
    _pip(python, "--no-deps", "--force-reinstall", str(wheel), timeout=300)
    return python


# --- One container ----------------------------------------------------------------------------


@dataclass
class ContainerRun:
    name: str
    returncode: int
    output: str  # what the container printed (its log stream: CloudWatch, kubectl logs)
    workdir: Path
    outputs: dict[str, str] = field(default_factory=dict)


def kubelet_env(entries: list[Mapping[str, Any]], fields: Mapping[str, str]) -> dict[str, str]:
    """A pod's environment from its container's ``env`` list, as the kubelet builds it."""
    env: dict[str, str] = {}
    for entry in entries:
        name = str(entry["name"])
        if entry.get("valueFrom"):
            ref = entry["valueFrom"].get("fieldRef") or {}
            env[name] = fields.get(str(ref.get("fieldPath")), "")
            continue
        env[name] = _expand_defined(str(entry.get("value", "")), env)
    return env


_K8S_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def _expand_defined(value: str, defined: Mapping[str, str]) -> str:
    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if name is None:
            return "$"
        return defined[name] if name in defined else match.group(0)

    return _K8S_REF.sub(one, value)


# The container's own filesystem, as an image gives it: a copy-on-write view of this machine's
# root (writes stay in the container: /airflow/xcom, /tmp/mf-input-paths, /mnt/out, mfotel's
# socket folder), a fresh /tmp, and two host folders the tests read afterwards, at /mnt/work
# (the working directory) and /mnt/out (Argo's output parameters).
_ENTER = """set -e
mount -t tmpfs none /mnt
mkdir /mnt/upper /mnt/ovwork /mnt/root
mount -t overlay overlay -o lowerdir=/,upperdir=/mnt/upper,workdir=/mnt/ovwork /mnt/root
for d in proc dev sys; do mount --rbind /$d /mnt/root/$d; done
mount -t tmpfs none /mnt/root/tmp
mkdir -p /mnt/root/mnt/work /mnt/root/mnt/out
mount --bind "$2" /mnt/root/mnt/work
mount --bind "$3" /mnt/root/mnt/out
cd /
exec "$1" /mnt/root bash -c 'cd /mnt/work && exec bash -c "$0"' "$4"
"""


def namespaces_missing() -> str | None:
    """Why containers cannot be emulated here, or None."""
    if shutil.which("unshare") is None:
        return "needs unshare (util-linux) to give each emulated container its own mounts"
    if shutil.which("chroot", path=_SBIN) is None:
        return "needs chroot (coreutils) to give each emulated container its own root"
    with tempfile.TemporaryDirectory() as folder:
        probe = subprocess.run(
            [*_unshare(), "bash", "-c", _ENTER, "enter", _chroot(), folder, folder, "true"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    if probe.returncode != 0:
        lines = probe.stderr.strip().splitlines() or ["it failed"]
        return f"needs mount and PID namespaces and overlayfs (unshare --mount --pid): {lines[-1]}"
    return None


_SBIN = "/usr/local/sbin:/usr/sbin:/sbin:/usr/local/bin:/usr/bin:/bin"


def _chroot() -> str:
    return shutil.which("chroot", path=_SBIN) or "chroot"


def _unshare() -> list[str]:
    # A PID namespace too: when the container's command ends, the kernel ends every process
    # it left (an agent still sending, say), as a container runtime does.
    own = ["unshare", "--mount", "--pid", "--fork", "--mount-proc"]
    return own + ([] if os.geteuid() == 0 else ["--map-root-user"])


def run_container(
    name: str,
    script: str,
    env: Mapping[str, str],
    python: Path,
    root: Path,
    platform_env: Mapping[str, str],
    timeout: float = 300,
) -> ContainerRun:
    """``bash -c script`` as the container runs it: its own working directory, ``/mnt/out``
    and ``/tmp``, the image's ``python`` first on PATH, the container's ``env`` and the
    platform's credentials."""
    base = root / f"{name}-{uuid.uuid4().hex[:8]}"
    workdir, out = base / "work", base / "mnt-out"
    for folder in (workdir, out):
        folder.mkdir(parents=True)
    full_env = {
        "PATH": f"{python.parent}:/usr/local/bin:/usr/bin:/bin",
        "HOME": "/tmp",
        "LANG": "C.UTF-8",
        "METAFLOW_SKIP_INSTALL_DEPENDENCIES": "1",  # the image has boto3 and requests
        **platform_env,
        **env,
    }
    done = subprocess.run(
        [*_unshare(), "bash", "-c", _ENTER, "enter", _chroot(), str(workdir), str(out), script],
        env=full_env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
    )
    outputs = {p.name: p.read_text().strip() for p in out.iterdir() if p.is_file()}
    return ContainerRun(name, done.returncode, done.stdout, workdir, outputs)


# --- Argo Workflows ---------------------------------------------------------------------------

_VAR = re.compile(r"\{\{\s*([^{}]+?)\s*\}\}")
# The one Argo expression Metaflow writes: a workflow parameter, base64-encoded.
_TO_BASE64 = re.compile(r"=toBase64\(workflow\.parameters\['([^']+)'\]\)")


class ArgoError(RuntimeError):
    pass


@dataclass
class ArgoWorkflow:
    """Runs a WorkflowTemplate as Argo would: each container template as :func:`run_container`."""

    template: Mapping[str, Any]
    python: Path
    root: Path
    platform_env: Mapping[str, str]
    name: str = field(default_factory=lambda: f"wf-{uuid.uuid4().hex[:6]}")
    created: str = "2026-12-06T10:00:00Z"
    node_ip: str = "127.0.0.1"
    stop_after: str | None = None  # the name of the last container template to run
    containers: list[ContainerRun] = field(default_factory=list)
    failed: bool = False

    def run(self) -> list[ContainerRun]:
        spec = self.template["spec"]
        self._templates = {t["name"]: t for t in spec["templates"]}
        self._dag(spec["entrypoint"], {})
        return self.containers

    def _sub(self, text: str, scope: Mapping[str, str]) -> str:
        def one(match: re.Match[str]) -> str:
            key = match.group(1)
            if key in scope:
                return scope[key]
            expression = _TO_BASE64.fullmatch(key)
            if expression and f"workflow.parameters.{expression.group(1)}" in scope:
                value = scope[f"workflow.parameters.{expression.group(1)}"]
                return base64.b64encode(value.encode()).decode()
            raise ArgoError(f"unknown variable {{{{{key}}}}} in {text[:80]!r}")

        return _VAR.sub(one, text)

    def _global(self) -> dict[str, str]:
        scope = {"workflow.name": self.name, "workflow.creationTimestamp": self.created}
        for param in self.template["spec"].get("arguments", {}).get("parameters") or []:
            scope[f"workflow.parameters.{param['name']}"] = str(param.get("value", ""))
        return scope

    def _dag(self, template_name: str, inputs: Mapping[str, str]) -> dict[str, str]:
        template = self._templates[template_name]
        if "container" in template:
            return self._container(template, inputs)
        tasks = template["dag"]["tasks"]
        done: dict[str, dict[str, str]] = {}
        pending = list(tasks)
        while pending and not self.failed:
            ready = [t for t in pending if all(d in done for d in _depends(t))]
            if not ready:
                raise ArgoError(f"no task of {template_name} can run: {pending}")
            for task in ready:
                pending.remove(task)
                scope = {
                    **self._global(),
                    **{f"inputs.parameters.{k}": v for k, v in inputs.items()},
                }
                for other, outputs in done.items():
                    for key, value in outputs.items():
                        scope[f"tasks.{other}.outputs.parameters.{key}"] = value
                items: list[Any] = [None]
                if "withParam" in task:
                    items = json.loads(self._sub(task["withParam"], scope))
                results: list[dict[str, str]] = []
                for item in items:
                    local = dict(scope)
                    if item is not None:
                        local["item"] = str(item)
                    args = {
                        p["name"]: self._sub(str(p.get("value", "")), local)
                        for p in task.get("arguments", {}).get("parameters", [])
                    }
                    results.append(self._dag(task["template"], args))
                    if self.failed:
                        break
                done[task["name"]] = results[-1] if results else {}
        outputs: dict[str, str] = {}
        for param in template.get("outputs", {}).get("parameters", []) or []:
            source = param.get("valueFrom", {}).get("parameter")
            if source:
                scope = {
                    f"tasks.{t}.outputs.parameters.{k}": v
                    for t, outs in done.items()
                    for k, v in outs.items()
                }
                outputs[param["name"]] = self._sub(source, scope)
        return outputs

    def _container(self, template: Mapping[str, Any], inputs: Mapping[str, str]) -> dict[str, str]:
        retries = int((template.get("retryStrategy") or {}).get("limit", 0) or 0)
        for attempt in range(retries + 1):
            scope = {
                **self._global(),
                **{f"inputs.parameters.{k}": v for k, v in inputs.items()},
                "retries": str(attempt),
            }
            container = template["container"]
            command = [self._sub(part, scope) for part in container["command"]]
            assert command[:2] == ["bash", "-c"], command[:2]
            pod = f"{self.name}-{template['name']}-{uuid.uuid4().hex[:5]}"
            entries = [
                {**e, "value": self._sub(str(e["value"]), scope)}
                if e.get("value") is not None
                else e
                for e in container.get("env") or []
            ]
            env = kubelet_env(
                entries,
                {
                    "metadata.name": pod,
                    "metadata.namespace": "default",
                    "metadata.uid": str(uuid.uuid4()),
                    "spec.serviceAccountName": "default",
                    "status.hostIP": self.node_ip,
                },
            )
            run = run_container(
                template["name"], command[2], env, self.python, self.root, self.platform_env
            )
            self.containers.append(run)
            if template["name"] == self.stop_after:
                self.failed = True  # nothing runs after it
            if run.returncode == 0:
                return {
                    p["name"]: run.outputs.get(Path(p["valueFrom"]["path"]).name, "")
                    for p in (template.get("outputs") or {}).get("parameters", []) or []
                    if "path" in p.get("valueFrom", {})
                }
        self.failed = True
        return {}


def _depends(task: Mapping[str, Any]) -> list[str]:
    expression = str(task.get("depends") or "")
    return [part.split(".")[0] for part in re.split(r"\s*&&\s*|\s*\|\|\s*", expression) if part]


# --- Compiling, as a user's machine does ------------------------------------------------------


def compile_flow(
    python: Path,
    flow: Path,
    workdir: Path,
    args: list[str],
    env: Mapping[str, str],
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    """``python flow.py ARGS`` in ``workdir`` (the flow copied there alone, so the code package
    holds only it), with only ``env`` and the basics of a shell."""
    workdir.mkdir(parents=True, exist_ok=True)
    target = workdir / flow.name
    shutil.copy(flow, target)
    basics = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "TMPDIR") if k in os.environ}
    return subprocess.run(
        [str(python), flow.name, *args],
        cwd=workdir,
        env={**basics, "USER": "tester", **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def aws_batch_env(moto: MotoServer) -> dict[str, str]:
    """A moto account ready for `step-functions create` and `@batch`: an IAM role, a VPC, a
    Fargate compute environment and its job queue, and a DynamoDB table name; returns the
    Metaflow settings that name them."""
    iam, ec2, batch = moto.client("iam"), moto.client("ec2"), moto.client("batch")
    try:
        role = iam.get_role(RoleName="mf-batch")["Role"]["Arn"]
    except iam.exceptions.NoSuchEntityException:
        policy = json.dumps({"Version": "2012-10-17", "Statement": []})
        role = iam.create_role(RoleName="mf-batch", AssumeRolePolicyDocument=policy)["Role"]["Arn"]
    queues = batch.describe_job_queues(jobQueues=["mf-queue"])["jobQueues"]
    if not queues:
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.0.0/24")["Subnet"]["SubnetId"]
        group = ec2.create_security_group(GroupName="mf", Description="mf", VpcId=vpc)["GroupId"]
        environment = batch.create_compute_environment(
            computeEnvironmentName="mf-fargate",
            type="MANAGED",
            serviceRole=role,
            computeResources={
                "type": "FARGATE",
                "maxvCpus": 4,
                "subnets": [subnet],
                "securityGroupIds": [group],
            },
        )["computeEnvironmentArn"]
        batch.create_job_queue(
            jobQueueName="mf-queue",
            state="ENABLED",
            priority=1,
            computeEnvironmentOrder=[{"order": 1, "computeEnvironment": environment}],
        )
    return {
        "METAFLOW_BATCH_JOB_QUEUE": "mf-queue",
        "METAFLOW_ECS_S3_ACCESS_IAM_ROLE": role,
        "METAFLOW_ECS_FARGATE_EXECUTION_ROLE": role,
        "METAFLOW_SFN_IAM_ROLE": role,
        "METAFLOW_SFN_DYNAMO_DB_TABLE": "mf-sfn",
    }


# --- AWS Step Functions (on AWS Batch) --------------------------------------------------------

_PARAMETER = re.compile(r"^\$\.Parameters\.\['([^']+)'\]$")


class EcsMetadata:
    """The ECS task metadata endpoint v4 that every Batch job's container can ask (AWS's
    documented JSON shapes: the container at ``/v4/<id>``, its task at ``/v4/<id>/task``),
    on loopback. Use as a context manager; ``uri(job_id)`` is a job's
    ``ECS_CONTAINER_METADATA_URI_V4``."""

    def __init__(self) -> None:
        import http.server
        import threading

        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                parts = self.path.strip("/").split("/")
                if len(parts) < 2 or parts[0] != "v4":
                    self.send_error(404)
                    return
                body = outer.task(parts[1]) if parts[2:] == ["task"] else outer.container(parts[1])
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> EcsMetadata:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def uri(self, job_id: str) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v4/{job_id}"

    @staticmethod
    def container(job_id: str) -> dict[str, Any]:
        import hashlib

        return {
            "DockerId": hashlib.sha256(job_id.encode()).hexdigest(),
            "Name": "default",
            "LogDriver": "awslogs",
            "LogOptions": {
                "awslogs-group": "/aws/batch/job",
                "awslogs-region": "us-east-1",
                "awslogs-stream": f"metaflow/default/{job_id.replace('-', '')}",
            },
        }

    @staticmethod
    def task(job_id: str) -> dict[str, Any]:
        return {
            "Cluster": "arn:aws:ecs:us-east-1:123456789012:cluster/mf-fargate",
            "TaskARN": "arn:aws:ecs:us-east-1:123456789012:task/mf-fargate/"
            + job_id.replace("-", ""),
            "AvailabilityZone": "us-east-1a",
            "LaunchType": "FARGATE",
        }


@dataclass
class StepFunctionsExecution:
    """Runs a state machine's Batch tasks in order, as Step Functions and Batch would: the
    job definition's environment under the state's container overrides, context and state
    paths (``Value.$``) resolved, AWS Batch's own variables set. Linear flows only."""

    definition: Mapping[str, Any]
    job_environment: Mapping[str, Mapping[str, str]]  # job definition ARN -> its environment
    python: Path
    root: Path
    platform_env: Mapping[str, str]
    metadata: EcsMetadata
    name: str = field(default_factory=lambda: f"exec-{uuid.uuid4().hex[:8]}")
    started: str = "2026-12-06T10:00:00.123Z"
    containers: list[ContainerRun] = field(default_factory=list)

    def run(self) -> list[ContainerRun]:
        state_name: str | None = self.definition["StartAt"]
        previous: dict[str, Any] = {}
        while state_name is not None:
            state = self.definition["States"][state_name]
            if state["Type"] != "Task":
                raise ArgoError(
                    f"state {state_name} is a {state['Type']}: only Task states run here"
                )
            parameters = state["Parameters"]
            job_id = str(uuid.uuid4())
            env = dict(self.job_environment.get(parameters["JobDefinition"], {}))
            for entry in parameters["ContainerOverrides"]["Environment"]:
                env[entry["Name"]] = (
                    entry["Value"] if "Value" in entry else self._path(entry["Value.$"], previous)
                )
            env.update(
                AWS_BATCH_JOB_ID=job_id,
                AWS_BATCH_JOB_ATTEMPT="1",
                AWS_BATCH_JQ_NAME=str(parameters["JobQueue"]),
                AWS_BATCH_CE_NAME="mf-fargate",
                AWS_EXECUTION_ENV="AWS_ECS_FARGATE",
                ECS_CONTAINER_METADATA_URI_V4=self.metadata.uri(job_id),
                AWS_EC2_METADATA_DISABLED="true",
            )
            command = parameters["ContainerOverrides"]["Command"]
            assert command[:2] == ["bash", "-c"], command[:2]
            run = run_container(
                state_name, command[2], env, self.python, self.root, self.platform_env
            )
            self.containers.append(run)
            if run.returncode != 0:
                return self.containers
            resolved = {
                key[:-2] if key.endswith(".$") else key: (
                    self._path(value, previous) if key.endswith(".$") else value
                )
                for key, value in parameters["Parameters"].items()
            }
            previous = {"JobId": job_id, "Parameters": resolved}
            state_name = None if state.get("End") else state.get("Next")
        return self.containers

    def _path(self, path: str, previous: Mapping[str, Any]) -> str:
        if path == "$$.Execution.Name":
            return self.name
        if path == "$$.Execution.StartTime":
            return self.started
        if path == "$.JobId":
            return str(previous["JobId"])
        match = _PARAMETER.match(path)
        if match:
            return str(previous["Parameters"][match.group(1)])
        raise ArgoError(f"no value for the path {path!r} in this emulation")


def job_environments(moto: MotoServer, definition: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    """The environment of every Batch job definition the state machine names, from moto."""
    batch = moto.client("batch")
    arns = sorted(
        {
            s["Parameters"]["JobDefinition"]
            for s in definition["States"].values()
            if s["Type"] == "Task"
        }
    )
    found: dict[str, dict[str, str]] = {}
    for item in batch.describe_job_definitions(jobDefinitions=arns)["jobDefinitions"]:
        env = item.get("containerProperties", {}).get("environment", [])
        found[item["jobDefinitionArn"]] = {e["name"]: e["value"] for e in env}
    return found


# --- Airflow (KubernetesPodOperator) ----------------------------------------------------------


@dataclass
class AirflowDagRun:
    """Runs a DAG file that `airflow create` wrote, task by task, as Airflow's
    KubernetesPodOperator would: each task's ``cmds`` and ``env_vars`` rendered with Jinja
    (Airflow's templating, with the DAG's own filters and a DAG run's context), the pod's
    downward-API variables after them. Linear flows only."""

    dag_file: Path
    python: Path
    root: Path
    platform_env: Mapping[str, str]
    run_id: str = "manual__2026-12-06T10:00:00+00:00"
    started: str = "2026-12-06T10:00:00.250000+00:00"
    node_ip: str = "127.0.0.1"
    containers: list[ContainerRun] = field(default_factory=list)

    def run(self) -> list[ContainerRun]:
        import datetime
        import types

        import jinja2

        text = self.dag_file.read_text()
        module: dict[str, Any] = {"__name__": "metaflow_dag"}
        exec(text[: text.index("dag = Workflow.from_dict(CONFIG)")], module)  # stdlib only
        config = module["CONFIG"]
        dag_id = config["dag_instantiation_params"]["dag_id"]
        env = jinja2.Environment(undefined=jinja2.StrictUndefined)
        env.filters.update(
            run_id_creator=module["run_id_creator"], task_id_creator=module["task_id_creator"]
        )
        dag_run = types.SimpleNamespace(
            dag_id=dag_id,
            run_id=self.run_id,
            start_date=datetime.datetime.fromisoformat(self.started),
        )

        def task_id(name: str) -> str:
            return "airflow-" + module["task_id_creator"]([self.run_id, name, dag_id])

        for name in config["graph_structure"]:
            if not isinstance(name, str):
                raise ArgoError(f"{name!r}: only linear DAGs run here")
            args = config["states"][name]["operator_args"]
            ti = types.SimpleNamespace(
                task_id=name,
                try_number=1,
                job_id=len(self.containers) + 1,
                xcom_pull=lambda task_ids, key: task_id(task_ids),
            )
            context = {"run_id": self.run_id, "dag_run": dag_run, "ti": ti, "task_instance": ti}
            command = [env.from_string(part).render(context) for part in args["cmds"]]
            entries = [
                {"name": e["name"], "value": env.from_string(str(e["value"])).render(context)}
                for e in args["env_vars"]
            ]
            pod = f"{name}-{uuid.uuid4().hex[:8]}"
            entries += [
                {"name": k, "valueFrom": {"fieldRef": {"fieldPath": v}}}
                for k, v in (
                    ("METAFLOW_KUBERNETES_POD_NAMESPACE", "metadata.namespace"),
                    ("METAFLOW_KUBERNETES_POD_NAME", "metadata.name"),
                    ("METAFLOW_KUBERNETES_POD_ID", "metadata.uid"),
                    ("METAFLOW_KUBERNETES_SERVICE_ACCOUNT_NAME", "spec.serviceAccountName"),
                    ("METAFLOW_KUBERNETES_NODE_IP", "status.hostIP"),
                )
            ]
            pod_env = kubelet_env(
                entries,
                {
                    "metadata.name": pod,
                    "metadata.namespace": str(args.get("namespace") or "default"),
                    "metadata.uid": str(uuid.uuid4()),
                    "spec.serviceAccountName": "default",
                    "status.hostIP": self.node_ip,
                },
            )
            assert command[:2] == ["bash", "-c"], command[:2]
            run = run_container(
                name, command[2], pod_env, self.python, self.root, self.platform_env
            )
            self.containers.append(run)
            if run.returncode != 0:
                break
        return self.containers


# --- Kubernetes API (for @kubernetes from a laptop) -------------------------------------------


class KubernetesApi:
    """The part of a Kubernetes API server that Metaflow's ``kubernetes step`` uses (create,
    read, patch and delete a batch/v1 Job; list its pods), on loopback, which runs each Job's
    pod as :func:`run_container` does and reports its state as the API would. ``jobs`` keeps
    every Job body as Metaflow sent it; ``kubeconfig(path)`` writes a kubeconfig for it."""

    def __init__(
        self, python: Path, root: Path, platform_env: Mapping[str, str], node_ip: str = "127.0.0.1"
    ) -> None:
        import http.server
        import threading

        self.python, self.root, self.platform_env, self.node_ip = (
            python,
            root,
            platform_env,
            node_ip,
        )
        self.jobs: dict[str, dict[str, Any]] = {}
        self.pods: dict[str, dict[str, Any]] = {}
        self.containers: list[ContainerRun] = []
        self._lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _reply(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> Any:
                length = int(self.headers.get("Content-Length") or 0)
                return json.loads(self.rfile.read(length) or b"{}")

            def do_POST(self) -> None:
                match = re.fullmatch(r"/apis/batch/v1/namespaces/([^/]+)/jobs", self.path)
                if not match:
                    self._reply(404, {"kind": "Status", "code": 404, "message": self.path})
                    return
                self._reply(201, outer._create(match.group(1), self._body()))

            def do_GET(self) -> None:
                path, _, query = self.path.partition("?")
                job = re.fullmatch(r"/apis/batch/v1/namespaces/[^/]+/jobs/([^/]+)", path)
                if job and job.group(1) in outer.jobs:
                    with outer._lock:
                        self._reply(200, outer.jobs[job.group(1)])
                    return
                if re.fullmatch(r"/api/v1/namespaces/[^/]+/pods", path):
                    from urllib.parse import parse_qs

                    selector = parse_qs(query).get("labelSelector", [""])[0]
                    name = selector.partition("job-name=")[2]
                    with outer._lock:
                        items = [outer.pods[name]] if name in outer.pods else []
                        self._reply(200, {"kind": "PodList", "apiVersion": "v1", "items": items})
                    return
                self._reply(404, {"kind": "Status", "code": 404, "message": self.path})

            def do_PATCH(self) -> None:
                self.do_GET()

            def do_DELETE(self) -> None:
                self.do_GET()

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._runs: list[threading.Thread] = []

    def __enter__(self) -> KubernetesApi:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for run in self._runs:
            run.join(300)
        self._server.shutdown()
        self._server.server_close()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def kubeconfig(self, path: Path) -> Path:
        path.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "emu", "cluster": {"server": self.endpoint}}],
                    "users": [{"name": "emu", "user": {"token": "emulator"}}],
                    "contexts": [{"name": "emu", "context": {"cluster": "emu", "user": "emu"}}],
                    "current-context": "emu",
                }
            )
        )
        return path

    def _create(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        import threading
        import time

        meta = body.setdefault("metadata", {})
        name = meta.get("name") or (meta.get("generateName", "job-") + uuid.uuid4().hex[:5])
        meta.update(name=name, namespace=namespace, uid=str(uuid.uuid4()))
        body["status"] = {"active": 1}
        pod_name = f"{name}-{uuid.uuid4().hex[:5]}"
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        pod = {
            "kind": "Pod",
            "apiVersion": "v1",
            "metadata": {"name": pod_name, "namespace": namespace, "labels": {"job-name": name}},
            "status": {
                "phase": "Running",
                "containerStatuses": [
                    {
                        "name": "main",
                        "ready": True,
                        "restartCount": 0,
                        "image": "stock",
                        "imageID": "stock",
                        "state": {"running": {"startedAt": now}},
                    }
                ],
            },
        }
        with self._lock:
            self.jobs[name] = body
            self.pods[name] = pod
        thread = threading.Thread(target=self._run_pod, args=(name, pod_name, namespace))
        thread.start()
        self._runs.append(thread)
        return body

    def _run_pod(self, name: str, pod_name: str, namespace: str) -> None:
        import time

        spec = self.jobs[name]["spec"]["template"]["spec"]["containers"][0]
        command = [*(spec.get("command") or []), *(spec.get("args") or [])]
        env = kubelet_env(
            spec.get("env") or [],
            {
                "metadata.name": pod_name,
                "metadata.namespace": namespace,
                "metadata.uid": str(uuid.uuid4()),
                "spec.serviceAccountName": "default",
                "status.hostIP": self.node_ip,
            },
        )
        assert command[:2] == ["bash", "-c"], command[:2]
        run = run_container(pod_name, command[2], env, self.python, self.root, self.platform_env)
        self.containers.append(run)
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        ok = run.returncode == 0
        with self._lock:
            self.pods[name]["status"] = {
                "phase": "Succeeded" if ok else "Failed",
                "containerStatuses": [
                    {
                        "name": "main",
                        "ready": False,
                        "restartCount": 0,
                        "image": "stock",
                        "imageID": "stock",
                        "state": {
                            "terminated": {
                                "exitCode": run.returncode,
                                "reason": "Completed" if ok else "Error",
                                "startedAt": now,
                                "finishedAt": now,
                            }
                        },
                    }
                ],
            }
            self.jobs[name]["status"] = {"succeeded": 1} if ok else {"failed": 1}
