"""A chatty task: one task printing 200,000 lines of ~100 bytes, telemetry off against on.

ChattyFlow runs in alternating pairs (off, then mfotel; then mfotel, then off; ...). Reported:
the flow's wall time (medians and the median of paired ratios), the CPU of mfotel's own log
carrier and agent processes (read with ``wait4`` as this script, a child subreaper, reaps
them) as lines per CPU second ("per core"), their peak RSS, and the lag between the run's end
and the last line's arrival at an OTLP/HTTP receiver in its own process, which decodes every
request with the official protobuf classes and checks that every line arrived exactly once.

    python benchmarks/bench_chatty.py [PAIRS] [LINES]
"""

from __future__ import annotations

import ctypes
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
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
        self._tick = os.sysconf("SC_CLK_TCK")
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
                    stat = Path("/proc", str(pid), "stat").read_text().rsplit(")", 1)[1].split()
                    status = Path("/proc", str(pid), "status").read_text()
                except OSError:
                    continue
                self.cpu[pid] = (int(stat[11]) + int(stat[12])) / self._tick
                for line in status.splitlines():
                    if line.startswith("VmHWM:"):
                        self.rss_kb[pid] = int(line.split()[1])


def run_once(env: dict[str, str]) -> tuple[float, dict[str, tuple[float, int]]]:
    """The flow's wall time, and (CPU s, peak RSS kB) of each helper role."""
    workdir = tempfile.mkdtemp(prefix="mfotel-chatty-")
    try:
        with Watcher() as watcher:
            began = time.perf_counter()
            subprocess.run(
                [sys.executable, str(FLOW), "run"],
                cwd=workdir,
                env=env,
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            wall = time.perf_counter() - began
            deadline = time.monotonic() + 60
            while watcher.alive() and time.monotonic() < deadline:
                time.sleep(0.02)
        _reap()
        return wall, watcher.by_role()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _reap() -> None:
    while True:
        try:
            if os.waitpid(-1, os.WNOHANG)[0] == 0:
                return
        except ChildProcessError:
            return


def main() -> None:
    pairs = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    lines = int(sys.argv[2]) if len(sys.argv) > 2 else 200_000
    ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    receiver, port = start_receiver()
    base = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "MFOTEL_", "MF_"))}
    base.update(USER=base.get("USER", "bench"), CHATTY_LINES=str(lines))
    modes = {
        "off": dict(base),
        "mfotel": dict(
            base, MF_TRACING="otlp", OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{port}"
        ),
    }
    walls: dict[str, list[float]] = {m: [] for m in modes}
    helper_cpu, helper_rss, lags = [], [], []
    try:
        run_once(modes["off"])  # warm the caches
        for index in range(pairs):
            order = ["off", "mfotel"] if index % 2 == 0 else ["mfotel", "off"]
            for mode in order:
                counts(port, reset=True)
                wall, helpers = run_once(modes[mode])
                walls[mode].append(wall)
                if mode != "mfotel":
                    continue
                ended = time.time()
                deadline = time.monotonic() + 120
                while True:
                    records, uids, last, lag = counts(port)
                    if uids >= lines or time.monotonic() > deadline:
                        break
                    time.sleep(0.05)
                assert uids >= lines and records == uids, f"{records} records, {uids} ids"
                lags.append((lag, max(0.0, last - ended)))
                helper_cpu.append(sum(cpu for cpu, _ in helpers.values()))
                helper_rss.append(max((rss for _, rss in helpers.values()), default=0))
                print(
                    f"  pair {index}: {wall:.2f} s, helpers (CPU s, peak kB): {helpers}", flush=True
                )
    finally:
        receiver.terminate()
    off, on = statistics.median(walls["off"]), statistics.median(walls["mfotel"])
    paired = statistics.median(b / a for a, b in zip(walls["off"], walls["mfotel"]))
    cpu = statistics.median(helper_cpu)
    cores = os.cpu_count()
    print(f"ChattyFlow, one task printing {lines:,} lines, {pairs} pairs, {cores} cores")
    print(f"  wall: off {off:.2f} s, mfotel {on:.2f} s: {on / off:.3f}x (paired {paired:.3f}x)")
    print(f"  mfotel's log carrier and agent: {cpu:.2f} s CPU, {lines / cpu:,.0f} lines/s per core")
    print(f"  their peak RSS: {statistics.median(helper_rss) / 1024:.0f} MB")
    lag = statistics.median(lag for lag, _ in lags)
    after = statistics.median(after for _, after in lags)
    print(f"  a line's largest lag, printed to received: {lag:.2f} s; after the run: {after:.2f} s")


if __name__ == "__main__":
    main()
