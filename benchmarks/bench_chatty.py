"""A chatty task: one task printing 200,000 lines of ~100 bytes, telemetry off against on.

ChattyFlow runs ROUNDS times in each of three modes, in rotating order: telemetry off; off with
the task printing its lines with mflog headers (what Metaflow's runtime itself spends on lines
that keep their ids, which the live path needs: it parses each header); mfotel. Reported:

- the flow's wall time (medians and the median of paired ratios);
- CPU, read with ``wait4`` as this script (a child subreaper) reaps each process: Metaflow's
  runtime and task together, and mfotel's own log carrier and agent, as lines per CPU second
  ("per core"), with their peak RSS;
- the same work through the stock OpenTelemetry SDK path, in the same run: a process that
  makes each of the task's lines a record with the same attributes and sends them with
  ``opentelemetry-sdk``'s LoggerProvider, BatchLogRecordProcessor and OTLP/HTTP log exporter
  to the same receiver (lines per CPU second of that process);
- the largest lag between a task line's timestamp and its arrival, and the last line's
  arrival after the run ended, at an OTLP/HTTP receiver in its own process, which decodes
  every request with the official protobuf classes and checks that every line arrived once.

    python benchmarks/bench_chatty.py [ROUNDS] [LINES]
    python benchmarks/bench_chatty.py --container [ROUNDS] [LINES_PER_STREAM]

``--container``: the same work in a container attempt, whose agent follows the files of
Metaflow's own log capture (see :func:`container`).
"""

from __future__ import annotations

import ctypes
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

from log_receiver import counts
from log_receiver import start as start_receiver

FLOW = Path(__file__).parent.parent / "tests" / "flows" / "chatty_flow.py"
ROLES = {
    b"mfotel._internal.agent": "agent",
    b"mfotel.logs._relay": "relay",
    b"mfotel.logs._tee": "tee",
}


class Watcher:
    """Samples each of mfotel's helper processes in /proc while a run goes on: its CPU (user
    and system, to within one sample of its end) and its peak RSS (VmHWM)."""

    def __init__(self) -> None:
        self.roles: dict[int, str] = {}
        self.cpu: dict[int, float] = {}
        self.rss_kb: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> Watcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def by_role(self) -> dict[str, tuple[float, int]]:
        found: dict[str, tuple[float, int]] = {}
        for pid, role in self.roles.items():
            cpu, rss = found.get(role, (0.0, 0))
            found[role] = (cpu + self.cpu.get(pid, 0.0), max(rss, self.rss_kb.get(pid, 0)))
        return found

    def alive(self) -> bool:
        return any(os.path.exists(f"/proc/{pid}") for pid in self.roles)

    def _watch(self) -> None:
        while not self._stop.wait(0.01):
            for entry in os.listdir("/proc"):
                if entry.isdigit() and int(entry) not in self.roles:
                    try:
                        cmdline = Path("/proc", entry, "cmdline").read_bytes()
                    except OSError:
                        continue
                    for marker, role in ROLES.items():
                        if marker in cmdline:
                            self.roles[int(entry)] = role
                            break
            for pid in list(self.roles):
                try:
                    self.cpu[pid] = _proc_cpu(pid)
                    status = Path("/proc", str(pid), "status").read_text()
                except OSError:
                    continue
                for line in status.splitlines():
                    if line.startswith("VmHWM:"):
                        self.rss_kb[pid] = int(line.split()[1])


def run_once(
    env: dict[str, str],
) -> tuple[float, float, dict[str, tuple[float, int]]]:
    """The flow's wall time, the CPU s of Metaflow's runtime and task, and (CPU s, peak RSS kB)
    of each of mfotel's helper roles."""
    workdir = tempfile.mkdtemp(prefix="mfotel-chatty-")
    try:
        with Watcher() as watcher:
            began = time.perf_counter()
            flow = subprocess.Popen(
                [sys.executable, str(FLOW), "run"],
                cwd=workdir,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            _, status, usage = os.wait4(flow.pid, 0)
            wall = time.perf_counter() - began
            assert os.waitstatus_to_exitcode(status) == 0, "the flow failed"
            flow.returncode = 0
            deadline = time.monotonic() + 60
            reaped: dict[int, resource.struct_rusage] = {}
            while time.monotonic() < deadline:
                reaped.update(_reap())
                if all(pid in reaped for pid in watcher.roles):
                    break
                time.sleep(0.02)
        # wait4 counts a process with the children it reaped: the runtime with its tasks.
        flow_cpu = usage.ru_utime + usage.ru_stime
        helpers: dict[str, tuple[float, int]] = {}
        for pid, role in watcher.roles.items():
            # Peak RSS is the kernel's VmHWM of the process's own image: wait4's ru_maxrss
            # also counts the copy of its starter (the runtime) it was forked as before exec.
            rss = watcher.rss_kb.get(pid, 0)
            got = reaped.get(pid)
            if got is not None:
                cpu = got.ru_utime + got.ru_stime
            else:  # reaped by the runtime, so counted in its figure: sampled, and moved here
                cpu = watcher.cpu.get(pid, 0.0)
                flow_cpu -= cpu
            old_cpu, old_rss = helpers.get(role, (0.0, 0))
            helpers[role] = (old_cpu + cpu, max(old_rss, rss))
        return wall, flow_cpu, helpers
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _reap() -> dict[int, resource.struct_rusage]:
    """Reap every exited child (the helpers come to us: we are their subreaper)."""
    found: dict[int, resource.struct_rusage] = {}
    while True:
        try:
            pid, _, usage = os.wait4(-1, os.WNOHANG)
        except ChildProcessError:
            return found
        if pid == 0:
            return found
        found[pid] = usage


SDK_PATH = textwrap.dedent(
    """
    import os, sys, time, uuid
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.sdk.resources import Resource
    lines, endpoint = int(sys.argv[1]), sys.argv[2]
    provider = LoggerProvider(resource=Resource.create(
        {"service.name": "metaflow", "metaflow.flow.name": "ChattyFlow",
         "metaflow.run.id": "1", "metaflow.user": "bench"}))
    provider.add_log_record_processor(BatchLogRecordProcessor(
        OTLPLogExporter(endpoint=endpoint), max_queue_size=lines, max_export_batch_size=4096))
    logger = provider.get_logger("baseline")
    base = {"metaflow.flow.name": "ChattyFlow", "metaflow.run.id": "1",
            "metaflow.step.name": "start", "metaflow.task.id": "1",
            "metaflow.task.attempt": 0, "metaflow.task.pathspec": "ChattyFlow/1/start/1",
            "log.iostream": "stdout", "metaflow.log.source": "task"}
    pad = "x" * 60
    read, write = os.pipe()
    if os.fork() == 0:  # the task: its lines through a pipe, as a task's reach a log carrier
        os.close(read)
        with os.fdopen(write, "w") as out:
            for i in range(lines):
                print("step %07d loss=%.6f lr=0.000300 %s" % (i, 1.0 / (i + 1), pad), file=out)
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as task:
        for raw in task:
            attrs = dict(base)
            attrs["log.record.uid"] = str(uuid.uuid4())
            logger.emit(timestamp=time.time_ns(), body=raw.rstrip(b"\\n").decode(),
                        attributes=attrs)
    os.wait()
    provider.force_flush(3_600_000)
    provider.shutdown()
    import resource
    own = resource.getrusage(resource.RUSAGE_SELF)
    print(own.ru_utime + own.ru_stime)
    """
)


def sdk_baseline(lines: int, port: int) -> float:
    """CPU s the stock SDK path takes for the same lines (its own, not its stand-in task's)."""
    done = subprocess.run(
        [sys.executable, "-c", SDK_PATH, str(lines), f"http://127.0.0.1:{port}/v1/logs"],
        check=True,
        capture_output=True,
        text=True,
    )
    return float(done.stdout.split()[-1])


def _proc_cpu(pid: int) -> float:
    """CPU s (user + system) of a running process, from /proc."""
    stat = Path("/proc", str(pid), "stat").read_text().rsplit(")", 1)[1].split()
    return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")


def _wait_for_lines(port: int, lines: int) -> tuple[int, int, float, float]:
    deadline = time.monotonic() + 120
    while True:
        records, uids, last, lag = counts(port)
        if uids >= lines or time.monotonic() > deadline:
            return records, uids, last, lag
        time.sleep(0.05)


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    lines = int(sys.argv[2]) if len(sys.argv) > 2 else 200_000
    ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    receiver, port = start_receiver()
    base = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "MFOTEL_", "MF_"))}
    base.update(USER=base.get("USER", "bench"), CHATTY_LINES=str(lines))
    modes = {
        "off": dict(base),
        # Telemetry off, the task printing its lines with mflog headers: what Metaflow's runtime
        # spends on lines that keep the ids they were given (it parses each header).
        "headers": dict(base, CHATTY_HEADERS="1"),
        "mfotel": dict(
            base, MF_TRACING="otlp", OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{port}"
        ),
    }
    walls: dict[str, list[float]] = {m: [] for m in modes}
    flow_cpu: dict[str, list[float]] = {m: [] for m in modes}
    helper_cpu, helper_rss, lags, receiver_cpu = [], [], [], []
    try:
        run_once(modes["off"])  # warm the caches
        for index in range(rounds):
            names = list(modes)
            order = names[index % 3 :] + names[: index % 3]
            for mode in order:
                counts(port, reset=True)
                received_before = _proc_cpu(receiver.pid)
                wall, cpu, helpers = run_once(modes[mode])
                walls[mode].append(wall)
                flow_cpu[mode].append(cpu)
                if mode != "mfotel":
                    continue
                ended = time.time()
                receiver_cpu.append(_proc_cpu(receiver.pid) - received_before)
                records, uids, last, lag = _wait_for_lines(port, lines)
                assert uids >= lines and records == uids, f"{records} records, {uids} ids"
                lags.append((lag, max(0.0, last - ended)))
                helper_cpu.append(sum(cpu for cpu, _ in helpers.values()))
                helper_rss.append(max((rss for _, rss in helpers.values()), default=0))
                print(
                    f"  round {index}: {wall:.2f} s, runtime+task {cpu:.2f} s CPU, "
                    f"helpers (CPU s, peak kB): {helpers}",
                    flush=True,
                )
        counts(port, reset=True)
        sdk_cpu = sdk_baseline(lines, port)
        records, uids, _, _ = _wait_for_lines(port, lines)
        assert uids >= lines and records == uids, f"SDK path: {records} records, {uids} ids"
    finally:
        receiver.terminate()
    off, on = statistics.median(walls["off"]), statistics.median(walls["mfotel"])
    floor = statistics.median(walls["headers"])
    paired = statistics.median(b / a for a, b in zip(walls["off"], walls["mfotel"]))
    floor_paired = statistics.median(b / a for a, b in zip(walls["off"], walls["headers"]))
    cpu = statistics.median(helper_cpu)
    cores = os.cpu_count()
    print(f"ChattyFlow, one task printing {lines:,} lines, {rounds} rounds, {cores} cores")
    print(f"  wall: off {off:.2f} s, mfotel {on:.2f} s: {on / off:.3f}x (paired {paired:.3f}x)")
    print(
        f"  wall, off with the lines' mflog headers printed by the task: {floor:.2f} s: "
        f"{floor / off:.3f}x (paired {floor_paired:.3f}x); mfotel against it {on / floor:.3f}x"
    )
    flow = {mode: statistics.median(cpu) for mode, cpu in flow_cpu.items()}
    print(
        f"  Metaflow's runtime and task: {flow['off']:.2f} s CPU off, {flow['headers']:.2f} s "
        f"with headers, {flow['mfotel']:.2f} s with mfotel ({flow['mfotel'] / flow['off']:.3f}x)"
    )
    print(
        f"  mfotel's log carrier and agent: {cpu:.2f} s CPU, {lines / cpu:,.0f} lines/s per core; "
        f"the stock SDK path: {sdk_cpu:.2f} s, {lines / sdk_cpu:,.0f} lines/s per core "
        f"({sdk_cpu / cpu:.1f}x mfotel's CPU)"
    )
    print(f"  their peak RSS: {statistics.median(helper_rss) / 1024:.0f} MB")
    print(f"  the receiver's intake during a run: {statistics.median(receiver_cpu):.2f} s CPU")
    lag = statistics.median(lag for lag, _ in lags)
    after = statistics.median(after for _, after in lags)
    print(
        f"  a task line's largest lag, printed to received: {lag:.2f} s; "
        f"the last line, after the run ended: {after:.2f} s"
    )


def container(rounds: int, lines: int) -> None:
    """The same work in a container attempt (Argo Workflows' pod, as tests/containers.py runs
    it: a stock CPython without mfotel, the code package from S3, Metaflow's own capture),
    whose agent follows the files Metaflow's capture writes: RemoteProbeFlow's start step
    printing ``lines`` lines to each stream, untraced against traced, in rotating order."""
    sys.path.insert(0, str(FLOW.parent.parent.parent))
    from bench_container import _env, compile_probe

    from tests.containers import ArgoWorkflow, build_wheel, stock_python, user_python
    from tests.emulators import start_moto

    work = Path(tempfile.mkdtemp(prefix="mfotel-bench-chatty-container-"))
    moto = start_moto(work)
    try:
        moto.client().create_bucket(Bucket="bench")
        from metaflow.metaflow_version import get_version

        user = user_python(get_version(public=True), build_wheel(work / "wheel"))
        stock = stock_python("3.11")
        platform = {k: v for k, v in moto.env.items() if k.startswith("AWS_")}
        receiver, port = start_receiver()
        template = compile_probe(user, stock, work, moto, f"http://127.0.0.1:{port}", {})
        for param in template["spec"]["arguments"]["parameters"]:
            if param["name"] == "lines":
                param["value"] = str(lines)
        modes = {"off": _env(template, {"MF_TRACING": None}), "mfotel": template}
        wall: dict[str, list[float]] = {m: [] for m in modes}
        cpu: dict[str, list[float]] = {m: [] for m in modes}
        agent_cpu, agent_rss, after = [], [], []
        for index in range(rounds):
            order = list(modes) if index % 2 == 0 else list(reversed(modes))
            for mode in order:
                counts(port, reset=True)
                workflow = ArgoWorkflow(
                    modes[mode], stock, work / "runs", platform, stop_after="start"
                )
                with Watcher() as watcher:
                    before = resource.getrusage(resource.RUSAGE_CHILDREN)
                    began = time.monotonic()
                    (run,) = workflow.run()
                    wall[mode].append(time.monotonic() - began)
                    used = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpu[mode].append(used.ru_utime + used.ru_stime - before.ru_utime - before.ru_stime)
                assert run.returncode == 0, run.output[-2000:]
                if mode != "mfotel":
                    continue
                ended = time.time()
                records, uids, last, _ = _wait_for_lines(port, 2 * lines)
                assert uids >= 2 * lines and records == uids, f"{records} records, {uids} ids"
                after.append(max(0.0, last - ended))
                roles = watcher.by_role()
                agent_cpu.append(roles.get("agent", (0.0, 0))[0])
                agent_rss.append(roles.get("agent", (0.0, 0))[1])
        off, on = statistics.median(wall["off"]), statistics.median(wall["mfotel"])
        paired = statistics.median(b / a for a, b in zip(wall["off"], wall["mfotel"]))
        off_cpu, on_cpu = statistics.median(cpu["off"]), statistics.median(cpu["mfotel"])
        agent = statistics.median(agent_cpu)
        print(
            f"A container attempt printing {lines:,} lines to each stream, {rounds} rounds, "
            f"{os.cpu_count()} cores"
        )
        print(
            f"  wall: untraced {off:.2f} s, mfotel {on:.2f} s: {on / off:.3f}x "
            f"(paired {paired:.3f}x); CPU of every process: {on_cpu / off_cpu:.3f}x"
        )
        print(
            f"  the agent (following Metaflow's capture files): {agent:.2f} s CPU, "
            f"{2 * lines / agent:,.0f} lines/s per core, peak RSS "
            f"{statistics.median(agent_rss) / 1024:.0f} MB"
        )
        print(f"  the last line, after the attempt ended: {statistics.median(after):.2f} s")
    finally:
        receiver.terminate()
        moto.process.stop()


if __name__ == "__main__":
    if sys.argv[1:2] == ["--container"]:
        del sys.argv[1]
        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
        container(
            int(sys.argv[1]) if len(sys.argv) > 1 else 3,
            int(sys.argv[2]) if len(sys.argv) > 2 else 100_000,
        )
    else:
        main()
