"""``python -m mfotel._internal.agent``: the per-run exporter the runtime starts."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

from mfotel import settings
from mfotel._internal.agent.exporter import Exporter
from mfotel._internal.agent.pipeline import Pipeline, Sink
from mfotel._internal.agent.server import Agent
from mfotel._internal.agent.sinks import ConsoleSink, OtlpSink
from mfotel._internal.agent.spool import Spool
from mfotel._internal.otlp.config import metrics_temporality
from mfotel._internal.proc import parent_gone

AGENT_NICE = 10


def _tell_runtime_done() -> None:
    """The runtime waits for this byte on our stdout, not for our exit."""
    try:
        os.write(1, b"\n")
        os.close(1)
    except OSError:
        pass


class _Args:
    socket = ""
    spool_dir = ""
    state_dir = ""
    parent_pid: int | None = None
    listen_fd: int | None = None
    hold_fd: int | None = None
    mode = "otlp"


def _parse_args(argv: list[str]) -> _Args:
    """``--socket P --spool-dir D [--state-dir S] [--parent-pid N] [--listen-fd F]
    [--mode otlp|console]``
    (no argparse: the
    agent starts once per run and argparse alone costs it ~9 ms)."""
    args = _Args()
    pairs = dict(zip(argv[::2], argv[1::2]))
    args.socket = pairs["--socket"]
    args.spool_dir = pairs["--spool-dir"]
    args.state_dir = pairs.get("--state-dir", "")
    if "--parent-pid" in pairs:
        args.parent_pid = int(pairs["--parent-pid"])
    if "--listen-fd" in pairs:
        args.listen_fd = int(pairs["--listen-fd"])
    if "--hold-fd" in pairs:
        args.hold_fd = int(pairs["--hold-fd"])
    args.mode = pairs.get("--mode", "otlp")
    if args.mode not in ("otlp", "console"):
        raise SystemExit(f"mfotel agent: --mode must be otlp or console, not {args.mode!r}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(sys.argv[1:] if argv is None else argv)
    # grpcio's C core prints its own connection errors on stderr; our one warning line is enough.
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    # The run's Ctrl-C is for the runtime; the agent finishes when the runtime says so.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Telemetry yields the CPU to the flow: what the agent has not sent yet waits in its
    # queues (and the spool), never in the task.
    try:
        os.nice(AGENT_NICE)
    except OSError:
        pass

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
        from mfotel._internal.paths import delivered_dir

        ledger = delivered_dir(args.state_dir) if args.state_dir else None
        exporter = Exporter(spool, os.environ, warn, ledger_dir=ledger)
        sink = OtlpSink(exporter)

    def own_counts() -> list[tuple[str, str, float, Mapping[str, Any]]]:
        if exporter is None:
            return []
        return [
            ("cumulative", "mfotel.exporter.records", float(n), {"signal": s, "outcome": o})
            for (s, o), n in exporter.counts.items()
            if n > 0
        ]

    temporality = metrics_temporality(os.environ, warn)
    pipeline = Pipeline(
        sink, export_s, metric_s, extra_metrics=own_counts, temporality=temporality
    )
    agent = Agent(args.socket, pipeline, spool, args.parent_pid, debug, args.listen_fd)
    if exporter is not None:
        agent.on_attempt = lambda attempt: _hint_datastore(exporter, attempt)
    # The task goes on meanwhile: its first messages wait in the socket it bound for us.
    try:
        from mfotel._internal.agent.detect import detect

        pipeline.resource_extra = detect(os.environ)
    except Exception:  # what the platform says is a nicety; telemetry never waits for it
        pass
    if debug:
        warn(f"mfotel agent: listening at {args.socket} ({time.process_time():.3f}s cpu)")
    # From the run's end, everything fits in MFOTEL_SHUTDOWN_TIMEOUT_MS (plus a little), which
    # is how long the runtime (or a container's task) waits for our byte: up to half of it for
    # the log carriers' last lines, the rest for sending.
    agent.logs_wait_s = shutdown_s / 2
    agent.serve()
    deadline = (agent.run_end_at or time.monotonic()) + shutdown_s
    pipeline.finish(settle_s=max(0.0, min(2.0, (deadline - time.monotonic()) / 2)))
    sink.close(max(0.0, deadline - time.monotonic()))
    if agent.attempt is not None and (
        agent.killed or (args.parent_pid is not None and parent_gone(args.parent_pid))
    ):
        # The task cannot hand off: it was killed, or it stopped waiting for us.
        _hand_off(agent.attempt, args, warn)
    _tell_runtime_done()
    if debug:
        warn(f"mfotel agent: done ({time.process_time():.3f}s cpu)")
    _release(args.hold_fd)
    return 0


def _release(fd: int | None) -> None:
    """Let go of the attempt's lock, which Metaflow's save_logs may be waiting for (see
    ``hooks._await_attempt_agent``): everything is sent, spooled or handed off by now."""
    if fd is None:
        return
    try:
        os.unlink(os.readlink(f"/proc/self/fd/{fd}"))
    except OSError:
        pass
    try:
        os.close(fd)
    except OSError:
        pass


def _hint_datastore(exporter: Exporter, attempt: Mapping[str, Any]) -> None:
    """A container's spool goes to the datastore when the attempt ends: say so, not the
    container's own folder, which nobody will ever read."""
    datastore, root = attempt["ds"]
    if datastore != "local":
        exporter.spool_hint = (
            f"{str(root).rstrip('/')}/.mfotel/spool/ when the attempt ends; run "
            f"`mfotel replay --datastore {datastore}` once a collector answers"
        )


def _hand_off(attempt: Mapping[str, Any], args: _Args, warn: Callable[[str], None]) -> None:
    """The task was killed, so it cannot put the container's leftovers into the datastore:
    do it here, with Metaflow's storage for that datastore (best effort: the container may
    end first)."""
    datastore, root = attempt["ds"]
    if datastore == "local":
        return
    attrs = attempt["ctx"].get("attrs") or {}
    try:
        from mfotel._internal.handoff import hand_off, storage_for

        owners = {os.getpid()} | ({args.parent_pid} if args.parent_pid else set())
        hand_off(
            storage_for(str(datastore), str(root)),
            args.state_dir,
            args.spool_dir,
            str(attrs.get("metaflow.task.pathspec")),
            int(attrs.get("metaflow.task.attempt", 0)),
            owners,
        )
    except Exception as exc:
        warn(f"mfotel: could not put the killed task's telemetry into the datastore: {exc}")


if __name__ == "__main__":
    sys.exit(main())
