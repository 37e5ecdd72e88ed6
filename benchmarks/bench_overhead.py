"""Overhead of mfotel on a wide flow, against telemetry off and Metaflow's built-in tracing.

WideFlow (TASKS foreach tasks x 20 lines, --max-workers WORKERS; 16 and 2 unless given) runs
ROUNDS times in each mode,
interleaved so drift hits every mode alike. CPU is the user+system time of every process
the run made: this script becomes a child subreaper, so processes that outlive their parent
(mfotel's log tee) are reaped, and counted, here too. Prints medians and the ratios against
the "off" baseline measured in the same script.

    python benchmarks/bench_overhead.py [ROUNDS] [TASKS] [WORKERS]
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
import time
from pathlib import Path

from mfotel.testing import OTLPReceiver

FLOW = Path(__file__).with_name("wide_flow.py")
WIDTH = int(sys.argv[2]) if len(sys.argv) > 2 else 16
WORKERS = int(sys.argv[3]) if len(sys.argv) > 3 else 2
TASKS = WIDTH + 3
LINES = WIDTH * 20


def _become_subreaper() -> None:
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER


def _reap_all() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, 0)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _check_everything_arrived(rx: OTLPReceiver, index: int) -> None:
    """Every line, span, metric point and event of the round arrived, exactly."""
    logs, spans, points = rx.logs(), rx.spans(), rx.points()
    uids = {r.attributes["log.record.uid"] for r in logs}
    assert len(logs) == len(uids) == LINES, f"round {index}: {len(logs)} log records"
    assert len(spans) == TASKS + 1, f"round {index}: {len(spans)} spans"
    # One series a task (a long run exports a cumulative series at every metric interval).
    durations = {
        p.attributes.get("metaflow.task.pathspec")
        for p in points
        if p.name == "metaflow.task.duration"
    }
    assert len(durations) == TASKS, f"round {index}: {len(durations)} duration series"
    started = [s for s in spans if any(e.name == "metaflow.task.start" for e in s.events)]
    assert len(started) == TASKS, f"round {index}: {len(started)} spans with a start event"


def run_once(env: dict[str, str]) -> tuple[float, float]:
    workdir = tempfile.mkdtemp(prefix="mfotel-bench-")
    try:
        cpu0, wall0 = _children_cpu(), time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                str(FLOW),
                "run",
                "--max-workers",
                str(WORKERS),
                "--max-num-splits",
                str(max(100, WIDTH)),
            ],
            cwd=workdir,
            env={**env, "WIDE_TASKS": str(WIDTH)},
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wall = time.perf_counter() - wall0
        _reap_all()
        return wall, _children_cpu() - cpu0
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    _become_subreaper()
    base = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "MFOTEL_", "MF_"))}
    base.setdefault("USER", "bench")
    with OTLPReceiver(grpc=False, http=True) as rx:
        modes = {
            "off": dict(base),
            "builtin": dict(
                base,
                METAFLOW_OTEL_ENDPOINT=rx.http_endpoint + "/v1/traces",
                METAFLOW_SERVICE_AUTH_KEY="bench",
            ),
            "mfotel": dict(base, MF_TRACING="otlp", OTEL_EXPORTER_OTLP_ENDPOINT=rx.http_endpoint),
        }
        results: dict[str, list[tuple[float, float]]] = {m: [] for m in modes}
        run_once(modes["off"])  # warm the filesystem and bytecode caches
        names = list(modes)
        for index in range(rounds):
            order = names[index % 3 :] + names[: index % 3]
            for mode in order:
                if mode == "mfotel":
                    rx.clear()
                results[mode].append(run_once(modes[mode]))
                if mode == "mfotel":
                    _check_everything_arrived(rx, index)
    cores = os.cpu_count()
    print(
        f"WideFlow, {WIDTH} tasks x 20 lines, --max-workers {WORKERS}, {rounds} rounds, "
        f"{cores} cores"
    )
    print("ratio of medians, and [median of per-round ratios, paired within a round]")
    print(f"{'mode':<10}{'wall s':>9}{'cpu s':>9}{'wall x':>17}{'cpu x':>17}")
    off = results["off"]
    off_wall = statistics.median(w for w, _ in off)
    off_cpu = statistics.median(c for _, c in off)
    for mode, samples in results.items():
        wall = statistics.median(w for w, _ in samples)
        cpu = statistics.median(c for _, c in samples)
        paired_wall = statistics.median(s[0] / o[0] for s, o in zip(samples, off))
        paired_cpu = statistics.median(s[1] / o[1] for s, o in zip(samples, off))
        print(
            f"{mode:<10}{wall:>9.2f}{cpu:>9.2f}"
            f"{wall / off_wall:>9.3f} [{paired_wall:.3f}]{cpu / off_cpu:>9.3f} [{paired_cpu:.3f}]"
        )


if __name__ == "__main__":
    main()
