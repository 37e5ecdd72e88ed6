"""``python -m mfotel._internal.agent``: the per-run exporter the runtime starts."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections.abc import Mapping
from typing import Any

from mfotel import settings
from mfotel._internal.agent.exporter import Exporter
from mfotel._internal.agent.pipeline import Pipeline, Sink
from mfotel._internal.agent.server import Agent
from mfotel._internal.agent.sinks import ConsoleSink, OtlpSink
from mfotel._internal.agent.spool import Spool


def _tell_runtime_done() -> None:
    """The runtime waits for this byte on our stdout, not for our exit."""
    try:
        os.write(1, b"\n")
        os.close(1)
    except OSError:
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mfotel-agent")
    parser.add_argument("--socket", required=True)
    parser.add_argument("--spool-dir", required=True)
    parser.add_argument("--parent-pid", type=int, default=None)
    parser.add_argument("--mode", choices=("otlp", "console"), default="otlp")
    args = parser.parse_args(argv)
    # The run's Ctrl-C is for the runtime; the agent finishes when the runtime says so.
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def warn(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    try:
        spool = Spool(args.spool_dir, settings.MFOTEL_SPOOL_MAX_MB.get_int() * 1024 * 1024)
        export_s = settings.MFOTEL_EXPORT_INTERVAL_MS.get_int() / 1000.0
        metric_s = settings.MFOTEL_METRIC_INTERVAL_MS.get_int() / 1000.0
        shutdown_s = settings.MFOTEL_SHUTDOWN_TIMEOUT_MS.get_int() / 1000.0
        debug = settings.MFOTEL_DEBUG.get_bool()
    except settings.SettingError as exc:
        warn(f"mfotel: {exc}")
        return 2
    exporter: Exporter | None = None
    sink: Sink
    if args.mode == "console":
        sink = ConsoleSink()
    else:
        exporter = Exporter(spool, os.environ, warn)
        sink = OtlpSink(exporter)

    def own_counts() -> list[tuple[str, str, float, Mapping[str, Any]]]:
        if exporter is None:
            return []
        return [
            ("cumulative", "mfotel.exporter.records", float(n), {"signal": s, "outcome": o})
            for (s, o), n in exporter.counts.items()
            if n > 0
        ]

    pipeline = Pipeline(sink, export_s, metric_s, extra_metrics=own_counts)
    agent = Agent(args.socket, pipeline, spool, args.parent_pid, debug)
    if debug:
        warn(f"mfotel agent: listening at {args.socket} ({time.process_time():.3f}s cpu)")
    agent.serve()
    sink.close(shutdown_s)
    _tell_runtime_done()
    if debug:
        warn(f"mfotel agent: done ({time.process_time():.3f}s cpu)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
