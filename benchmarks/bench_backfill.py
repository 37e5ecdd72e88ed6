"""Backfill throughput and memory, against the stock OpenTelemetry SDK path, in one script.

Generates a local datastore of mflog files (default 200 MB: one run, 64 tasks, stdout and
stderr each, lines shaped like training logs, one in twenty a JSON object), then sends it
twice to an OTLP/HTTP receiver running in its own process (it decodes every request with the
official protobuf classes and counts records and distinct line ids):

* ``mfotel backfill RUN`` (the command users run; one process, ``--jobs 1`` and default);
* the stock SDK path: the same files read line by line, parsed with Metaflow's own mflog
  parser, and emitted through ``opentelemetry-sdk``'s LoggerProvider with a
  BatchLogRecordProcessor and the OTLP/HTTP log exporter. Its queue is made big enough to
  hold every record (the processor drops what does not fit, and a benchmark that loses
  lines measures nothing), so its memory grows with the data.

Each is a child process measured with ``wait4`` (CPU, peak RSS). Prints MB/s and lines/s per
CPU second ("per core"), peak RSS, and the ratios mfotel / SDK. Every run must deliver
exactly every line once, or the script fails.

    python benchmarks/bench_backfill.py [MEGABYTES]
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from log_receiver import counts
from log_receiver import start as start_receiver

TASKS = 64
RUN_ID = "1796000000000001"

SDK_PATH = textwrap.dedent(
    """
    import sys, pathlib, datetime, calendar
    from metaflow.mflog.mflog import parse
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.sdk.resources import Resource
    root, flow, run = sys.argv[1], sys.argv[2], sys.argv[3]
    provider = LoggerProvider(resource=Resource.create(
        {"service.name": "metaflow", "metaflow.flow.name": flow, "metaflow.run.id": run}))
    exporter = OTLPLogExporter(endpoint=sys.argv[4])
    provider.add_log_record_processor(BatchLogRecordProcessor(
        exporter, max_queue_size=4_000_000, max_export_batch_size=2000))
    logger = provider.get_logger("baseline")
    for path in sorted(pathlib.Path(root, flow, run).glob("*/*/*.log")):
        step, task = path.parent.parent.name, path.parent.name
        attempt = int(path.name.split(".")[0])
        stream = "stderr" if path.name.endswith("stderr.log") else "stdout"
        base = {"metaflow.step.name": step, "metaflow.task.id": task,
                "metaflow.task.attempt": attempt,
                "metaflow.task.pathspec": "/".join((flow, run, step, task)),
                "log.iostream": stream}
        with open(path, "rb") as handle:
            for raw in handle:
                line = parse(raw.rstrip(b"\\n"))
                if line is None:
                    continue
                ts = line.utc_tstamp
                ns = calendar.timegm(ts.timetuple()) * 10**9 + ts.microsecond * 1000
                attrs = dict(base)
                attrs["log.record.uid"] = line.id.decode()
                attrs["metaflow.log.source"] = line.logsource.decode()
                logger.emit(timestamp=ns, body=line.msg.decode("utf-8", "replace"),
                            attributes=attrs)
    provider.force_flush(3_600_000)  # shutdown alone gives up on what is still queued
    provider.shutdown()
    """
)

WORDS = ["loss", "acc", "lr", "grad_norm", "throughput", "tokens", "epoch", "step", "eval", "ppl"]


def generate(root: Path, megabytes: int) -> tuple[int, int]:
    """A run's logs in Metaflow's local layout; returns (bytes, lines)."""
    rnd = random.Random(7)
    target = megabytes * 1_000_000 // (TASKS * 2)
    total_bytes = total_lines = 0
    start = 1_796_000_000
    for task in range(TASKS):
        folder = root / "BenchFlow" / RUN_ID / "train" / str(task + 2)
        folder.mkdir(parents=True)
        (folder / "0.DONE.lock").write_bytes(b"")
        for stream in ("stdout", "stderr"):
            chunks, size, n = [], 0, 0
            while size < target:
                seconds = start + n // 50
                stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
                if n % 20 == 7:
                    text = json.dumps(
                        {"level": "info", "step": n, "loss": round(rnd.random(), 4), "msg": "eval"}
                    )
                else:
                    fields = " ".join(f"{w}={rnd.random():.4f}" for w in rnd.sample(WORDS, 6))
                    text = f"[rank 0] step {n}/{10**6} {fields}"
                uid = f"{rnd.getrandbits(128):032x}"
                uid = f"{uid[:8]}-{uid[8:12]}-{uid[12:16]}-{uid[16:20]}-{uid[20:]}"
                line = f"[MFLOG|0|{stamp}.{n % 1_000_000:06d}Z|task|{uid}]{text}\n".encode()
                chunks.append(line)
                size += len(line)
                n += 1
            (folder / f"0.task_{stream}.log").write_bytes(b"".join(chunks))
            total_bytes += size
            total_lines += n
    return total_bytes, total_lines


def measure(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float, float]:
    """(wall s, cpu s, peak RSS MB) of one child process."""
    started = time.monotonic()
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{argv[:4]} exited {proc.returncode}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def delivered(port: int) -> tuple[int, int]:
    """Records and distinct line ids since the last call."""
    records, distinct, _, _ = counts(port, reset=True)
    return records, distinct


def main() -> None:
    megabytes = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    work = Path(tempfile.mkdtemp(prefix="mfotel-bench-backfill-"))
    receiver, port = start_receiver()
    try:
        root = work / ".metaflow"
        size, lines = generate(root, megabytes)
        print(f"data: {size / 1e6:.0f} MB, {lines:,} lines in {TASKS * 2} files")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "MFOTEL_"))}
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{port}"
        env["MFOTEL_STATE_DIR"] = str(work / "state")
        mfotel = [
            sys.executable,
            "-m",
            "mfotel.cli",
            "backfill",
            f"BenchFlow/{RUN_ID}",
            "--trace",
            "none",
        ]
        sdk = [sys.executable, "-c", SDK_PATH, str(root), "BenchFlow", RUN_ID]
        runs = {
            "stock SDK path": [*sdk, f"http://127.0.0.1:{port}/v1/logs"],
            "mfotel backfill --jobs 1": [*mfotel, "--jobs", "1", "--reset"],
            "mfotel backfill": [*mfotel, "--reset"],
        }
        figures = {}
        for name, argv in runs.items():
            wall, cpu, rss = measure(argv, env, work)
            records, distinct = delivered(port)
            if records != lines or distinct != lines:
                raise SystemExit(f"{name}: {records} records, {distinct} distinct, not {lines}")
            figures[name] = (wall, cpu, rss)
            print(
                f"{name:<26} wall {wall:6.2f} s  cpu {cpu:6.2f} s  "
                f"{size / 1e6 / cpu:6.1f} MB/s per core  {lines / cpu:9,.0f} lines/s per core  "
                f"{size / 1e6 / wall:6.1f} MB/s wall  peak RSS {rss:5.1f} MB"
            )
        base_wall, base_cpu, base_rss = figures["stock SDK path"]
        for name in ("mfotel backfill --jobs 1", "mfotel backfill"):
            wall, cpu, rss = figures[name]
            print(
                f"ratio {name} / stock SDK: throughput per core {base_cpu / cpu:.2f}x, "
                f"wall {wall / base_wall:.2f}x, peak RSS {rss / base_rss:.2f}x"
            )
    finally:
        receiver.kill()
        receiver.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
