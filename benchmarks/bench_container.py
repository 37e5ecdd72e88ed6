"""What mfotel costs one attempt in a container, against the same container untraced.

RemoteProbeFlow is compiled for Argo Workflows (mfotel installed from its wheel, moto for
S3), and its start step's container runs as a pod runs it (tests/containers.py: a stock
CPython with no mfotel, the code package fetched from S3, Metaflow's own log capture): ROUNDS
times with MF_TRACING=otlp and ROUNDS times with MF_TRACING removed from the compiled env,
interleaved. Reported per attempt: container wall time and the CPU of every process in it
(this script is a child subreaper, so nothing escapes the count), as medians and as ratios
against the untraced container measured here; and, from the task's own debug lines, how long
starting the agent took the task, how long the attempt's end waited for it, and the agent's CPU.

Then one run of the whole workflow with the join step's task SIGKILLed mid-step: the lines it
persisted, those the collector received live, and those `mfotel backfill` then sent.

    python benchmarks/bench_container.py [ROUNDS]
"""

from __future__ import annotations

import copy
import ctypes
import json
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).parent.parent
sys.path.insert(0, str(ROOT))

from mfotel.testing import OTLPReceiver  # noqa: E402
from tests.containers import (  # noqa: E402
    ArgoWorkflow,
    KubernetesApi,
    build_wheel,
    compile_flow,
    stock_python,
    user_python,
)
from tests.emulators import start_moto  # noqa: E402

FLOW = ROOT / "tests" / "flows" / "remote_probe_flow.py"


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _env(template: dict[str, Any], changes: dict[str, str | None]) -> dict[str, Any]:
    template = copy.deepcopy(template)
    for item in template["spec"]["templates"]:
        if "container" in item:
            env = [e for e in item["container"]["env"] if e["name"] not in changes]
            env += [{"name": k, "value": v} for k, v in changes.items() if v is not None]
            item["container"]["env"] = env
    return template


def compile_probe(
    user: Path, stock: Path, work: Path, moto: Any, endpoint: str, extra: dict[str, str]
) -> dict[str, Any]:
    """RemoteProbeFlow compiled for Argo Workflows with tracing on (S3 in moto, a bucket named
    bench), sending to ``endpoint``: the WorkflowTemplate."""
    with KubernetesApi(stock, work, {}) as api:
        compiled = compile_flow(
            user,
            FLOW,
            work / "laptop",
            ["argo-workflows", "create", "--only-json"],
            {
                **moto.env,
                "KUBECONFIG": str(api.kubeconfig(work / "kubeconfig")),
                "METAFLOW_DEFAULT_DATASTORE": "s3",
                "METAFLOW_DATASTORE_SYSROOT_S3": "s3://bench/metaflow",
                "METAFLOW_KUBERNETES_NAMESPACE": "default",
                "MF_TRACING": "otlp",
                "MFOTEL_REMOTE_ENDPOINT": endpoint,
                **extra,
            },
        )
    assert compiled.returncode == 0, compiled.stderr
    template: dict[str, Any] = json.loads(compiled.stdout[compiled.stdout.index("{") :])
    return template


def _number(pattern: str, text: str) -> float | None:
    match = re.search(pattern, text)
    return float(match.group(1)) if match else None


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    work = Path(tempfile.mkdtemp(prefix="mfotel-bench-container-"))
    moto = start_moto(work)
    try:
        _run(rounds, work, moto)
    finally:
        moto.process.stop()


def _run(rounds: int, work: Path, moto: Any) -> None:
    s3 = moto.client()
    s3.create_bucket(Bucket="bench")
    from metaflow.metaflow_version import get_version

    user = user_python(get_version(public=True), build_wheel(work / "wheel"))
    stock = stock_python("3.11")
    platform = {k: v for k, v in moto.env.items() if k.startswith("AWS_")}
    with OTLPReceiver(grpc=False, http=True) as rx:
        template = compile_probe(
            user, stock, work, moto, rx.http_endpoint, {"MFOTEL_DEBUG": "true"}
        )
        modes = {"off": _env(template, {"MF_TRACING": None}), "mfotel": template}
        wall: dict[str, list[float]] = {m: [] for m in modes}
        cpu: dict[str, list[float]] = {m: [] for m in modes}
        started, wait, agent = [], [], []
        for index in range(rounds):
            order = list(modes) if index % 2 == 0 else list(reversed(modes))
            for mode in order:
                workflow = ArgoWorkflow(
                    modes[mode], stock, work / "runs", platform, stop_after="start"
                )
                cpu_before, began = _children_cpu(), time.monotonic()
                (run,) = workflow.run()
                wall[mode].append(time.monotonic() - began)
                cpu[mode].append(_children_cpu() - cpu_before)
                assert run.returncode == 0, run.output
                if mode == "mfotel":
                    found = (
                        _number(r"agent started in (\d+) ms", run.output),
                        _number(r"end waited (\d+) ms", run.output),
                        _number(r"mfotel agent: done \(([\d.]+)s cpu\)", _persisted(run.workdir)),
                    )
                    assert None not in found, run.output
                    started.append(found[0] or 0.0)
                    wait.append(found[1] or 0.0)
                    agent.append(found[2] or 0.0)
        off_wall, on_wall = statistics.median(wall["off"]), statistics.median(wall["mfotel"])
        off_cpu, on_cpu = statistics.median(cpu["off"]), statistics.median(cpu["mfotel"])
        print(f"one attempt in a container, {rounds} interleaved rounds, medians:")
        print(f"  untraced (MF_TRACING removed)   wall {off_wall:.2f} s   CPU {off_cpu:.2f} s")
        print(
            f"  mfotel                          wall {on_wall:.2f} s   CPU {on_cpu:.2f} s"
            f"   ({on_wall / off_wall:.3f}x wall, {on_cpu / off_cpu:.3f}x CPU,"
            f" +{on_wall - off_wall:.2f} s wall, +{on_cpu - off_cpu:.2f} s CPU)"
        )
        print(f"  agent started in               {statistics.median(started):.0f} ms")
        print(f"  end of attempt waited          {statistics.median(wait):.0f} ms for the agent")
        print(f"  agent CPU                      {statistics.median(agent) * 1000:.0f} ms")
        _killed(template, stock, work, platform, rx, s3)


def _persisted(workdir: Path) -> str:
    return "\n".join(
        p.read_text(errors="replace") for p in (workdir / ".logs").glob("mflog_*") if p.is_file()
    )


def _killed(
    template: dict[str, Any], stock: Path, work: Path, platform: dict[str, str], rx: Any, s3: Any
) -> None:
    from metaflow.mflog.mflog import parse

    rx.clear()
    quiet = _env(template, {"MFOTEL_DEBUG": None})  # debug lines come after the agent ends
    workflow = ArgoWorkflow(
        quiet, stock, work / "killed", {**platform, "REMOTE_PROBE_KILL": "join"}
    )
    workflow.run()
    run_id = f"argo-{workflow.name}"
    time.sleep(1.0)
    persisted: set[str] = set()
    texts: dict[str, str] = {}
    listing = s3.list_objects_v2(Bucket="bench", Prefix=f"metaflow/RemoteProbeFlow/{run_id}/")
    for item in listing.get("Contents", []):
        if item["Key"].endswith(("task_stdout.log", "task_stderr.log")):
            for raw in s3.get_object(Bucket="bench", Key=item["Key"])["Body"].read().splitlines():
                line = parse(raw)
                if line is not None:
                    persisted.add(line.id.decode())
                    texts[line.id.decode()] = (
                        f"{item['Key'].split('/')[-3]}: {line.msg.decode()[:60]}"
                    )
    live = {r.attributes.get("log.record.uid") for r in rx.logs()} & persisted
    with OTLPReceiver(grpc=False, http=True) as later:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "mfotel.cli",
                "backfill",
                f"RemoteProbeFlow/{run_id}",
                "--datastore",
                "s3",
                "--datastore-root",
                "s3://bench/metaflow",
                "--no-progress",
            ],
            env={
                **platform,
                "PATH": "/usr/bin:/bin",
                "OTEL_EXPORTER_OTLP_ENDPOINT": later.http_endpoint,
                "MFOTEL_STATE_DIR": str(work / "state"),
                "METAFLOW_S3_ENDPOINT_URL": platform["AWS_ENDPOINT_URL"],
            },
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        backfilled = {r.attributes.get("log.record.uid") for r in later.logs()}
    lost = persisted - live - backfilled
    twice = live & backfilled
    print("the join step's task SIGKILLed mid-step (the whole run's persisted lines):")
    for uid in sorted(persisted - live, key=lambda u: texts[u]):
        print(f"  not live: {texts[uid]}")
    print(
        f"  persisted {len(persisted)}, received live {len(live)}, sent by backfill "
        f"{len(backfilled)}, lost {len(lost)}, sent twice {len(twice)}"
    )


if __name__ == "__main__":
    main()
