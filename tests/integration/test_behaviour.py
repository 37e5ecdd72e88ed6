"""Real runs under the conditions users meet: no collector, bad settings, failures, resume,
gRPC, console mode, killed tasks, other propagators, and their own OpenTelemetry code."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from mfotel.testing import OTLPReceiver
from tests.conftest import FlowRun, otlp_env, run_flow

pytestmark = pytest.mark.flow


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _mfotel_lines(run: FlowRun) -> list[str]:
    return [line for line in run.output.splitlines() if line.startswith("mfotel")]


def _replay(spool: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "MF_"))}
    full.update(env)
    return subprocess.run(
        [sys.executable, "-m", "mfotel.cli", "replay", "--spool-dir", str(spool)],
        env=full,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_no_collector_spools_with_one_warning_and_replay_sends_once(tmp_path: Path) -> None:
    """With nothing at the endpoint the run succeeds, warns once, and replay delivers all once."""
    port = _closed_port()
    spool = tmp_path / "spool"
    env = {
        "MF_TRACING": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
        "MFOTEL_SPOOL_DIR": str(spool),
    }
    run = run_flow("tiny_flow.py", tmp_path, env=env)
    assert run.returncode == 0, run.output
    warnings = _mfotel_lines(run)
    assert len(warnings) == 1, warnings
    assert "spooled" in warnings[0] and "mfotel replay" in warnings[0]
    assert "tiny start" in run.output
    with OTLPReceiver(grpc=False, http=True) as rx:
        first = _replay(spool, {"OTEL_EXPORTER_OTLP_ENDPOINT": rx.http_endpoint})
        assert first.returncode == 0, first.stdout + first.stderr
        names = sorted(s.name for s in rx.spans())
        assert names == ["RUN TinyFlow", "end", "start"]
        bodies = sorted(str(r.body) for r in rx.logs())
        assert bodies == ["tiny end", "tiny start", "tiny to stderr"]
        assert any(p.name == "metaflow.task.duration" for p in rx.points())
        second = _replay(spool, {"OTEL_EXPORTER_OTLP_ENDPOINT": rx.http_endpoint})
        assert second.returncode == 0
        assert "sent nothing" in second.stdout
        assert len(rx.spans()) == 3 and len(rx.logs()) == 3


def test_replay_keeps_the_spool_when_the_collector_is_still_down(tmp_path: Path) -> None:
    """Replay against a dead endpoint exits non-zero, says why in one line, and loses nothing."""
    spool = tmp_path / "spool"
    env = {
        "MF_TRACING": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{_closed_port()}",
        "MFOTEL_SPOOL_DIR": str(spool),
    }
    assert run_flow("tiny_flow.py", tmp_path, env=env).returncode == 0
    before = sorted(p.name for p in spool.rglob("*.pb"))
    failed = _replay(spool, {"OTEL_EXPORTER_OTLP_ENDPOINT": env["OTEL_EXPORTER_OTLP_ENDPOINT"]})
    assert failed.returncode == 1
    assert "connection refused" in failed.stdout and len(failed.stdout.strip().splitlines()) == 1
    assert sorted(p.name for p in spool.rglob("*.pb")) == before


def test_a_failing_flow_keeps_its_exit_code_and_reports_failure(
    tmp_path: Path, receiver: OTLPReceiver
) -> None:
    """A flow that fails exits as it would without mfotel; its run span says failure."""
    plain = run_flow("fail_flow.py", tmp_path)
    traced = run_flow("fail_flow.py", tmp_path, env=otlp_env(receiver))
    assert plain.returncode != 0
    assert traced.returncode == plain.returncode
    (root,) = [s for s in receiver.spans() if s.name == "RUN FailFlow"]
    assert root.attributes["cicd.pipeline.result"] == "failure"
    assert root.status_code == 2
    (middle,) = [s for s in receiver.spans() if s.name == "middle"]
    assert middle.status_code == 2
    assert "middle is broken" in middle.status_message


def test_resume_starts_a_new_trace_linked_to_the_resumed_run(
    tmp_path: Path, receiver: OTLPReceiver
) -> None:
    """resume makes a new trace whose root span links to the origin run's root span."""
    origin = run_flow("fail_flow.py", tmp_path, env=otlp_env(receiver))
    assert origin.returncode != 0
    (origin_root,) = [s for s in receiver.spans() if s.name == "RUN FailFlow"]
    receiver.clear()
    resumed = run_flow(
        "fail_flow.py", tmp_path, command="resume", env=otlp_env(receiver, FAILFLOW_FIX="1")
    )
    assert resumed.returncode == 0, resumed.output
    (root,) = [s for s in receiver.spans() if s.name == "RUN FailFlow"]
    assert root.trace_id != origin_root.trace_id
    assert [(lk.trace_id, lk.span_id) for lk in root.links] == [
        (origin_root.trace_id, origin_root.span_id)
    ]
    assert root.links[0].attributes["metaflow.run.id"] == origin.run_id
    assert root.resource["metaflow.run.id"] == resumed.run_id
    assert {s.name for s in receiver.spans()} >= {"middle", "end"}


def test_grpc_protocol_delivers_every_signal(tmp_path: Path, receiver: OTLPReceiver) -> None:
    """With OTEL_EXPORTER_OTLP_PROTOCOL=grpc all three signals arrive over gRPC."""
    run = run_flow("tiny_flow.py", tmp_path, env=otlp_env(receiver, protocol="grpc"))
    assert run.returncode == 0, run.output
    assert {r.transport for r in receiver.requests} == {"grpc"}
    assert {r.signal for r in receiver.requests} == {"traces", "logs", "metrics"}
    assert sorted(str(r.body) for r in receiver.logs()) == [
        "tiny end",
        "tiny start",
        "tiny to stderr",
    ]


def test_headers_reach_the_collector(tmp_path: Path, receiver: OTLPReceiver) -> None:
    """OTEL_EXPORTER_OTLP_HEADERS arrive on every export request, percent-decoded."""
    env = otlp_env(receiver, OTEL_EXPORTER_OTLP_HEADERS="x-team=ml%20platform,authorization=k")
    assert run_flow("tiny_flow.py", tmp_path, env=env).returncode == 0
    assert receiver.requests
    assert all(r.headers.get("x-team") == "ml platform" for r in receiver.requests)


def test_tracing_off_changes_nothing(tmp_path: Path, receiver: OTLPReceiver) -> None:
    """With MF_TRACING unset nothing is sent, nothing spooled, and no mfotel line is printed."""
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.http_endpoint}
    run = run_flow("tiny_flow.py", tmp_path, env=env)
    assert run.returncode == 0
    assert _mfotel_lines(run) == [] and "mfotel" not in run.output
    assert receiver.requests == []
    assert not (tmp_path / ".metaflow" / ".mfotel").exists()
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import metaflow.tracing as t, sys; print(t.__name__);"
            "print(any(m.startswith('mfotel') for m in sys.modules))",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if k != "MF_TRACING"},
    )
    assert probe.stdout.split() == ["metaflow.tracing", "False"]


def test_a_runtime_that_cannot_load_turns_telemetry_off_with_one_line(
    tmp_path: Path, receiver: OTLPReceiver
) -> None:
    """An mfotel that fails to import (a broken install shadowing the real one): the run, its
    tasks and their plugin names (monitor, event logger, @mfotel) go on, inert; one line."""
    broken = tmp_path / "broken" / "mfotel"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text("raise ImportError('this mfotel is broken')\n")
    env = otlp_env(receiver, PYTHONPATH=str(broken.parent))
    run = run_flow("tiny_flow.py", tmp_path, env=env)
    assert run.returncode == 0, run.output
    assert "tiny start" in run.output
    lines = _mfotel_lines(run)
    assert len(lines) == 1 and "this mfotel is broken" in lines[0], lines
    assert receiver.requests == []


def test_an_unknown_mode_warns_once_and_the_flow_runs(
    tmp_path: Path, receiver: OTLPReceiver
) -> None:
    """MF_TRACING=otpl (a typo) gives one line naming value and fix; the run is untouched."""
    run = run_flow("tiny_flow.py", tmp_path, env=otlp_env(receiver, MF_TRACING="otpl"))
    assert run.returncode == 0
    lines = _mfotel_lines(run)
    assert len(lines) == 1 and "'otpl'" in lines[0] and "MF_TRACING=otlp" in lines[0]
    assert receiver.requests == []


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "htp:/nowhere",
            "OTEL_EXPORTER_OTLP_ENDPOINT='htp:/nowhere'",
        ),
        ("OTEL_EXPORTER_OTLP_HEADERS", "api-key", "OTEL_EXPORTER_OTLP_HEADERS"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/xml", "OTEL_EXPORTER_OTLP_PROTOCOL='http/xml'"),
    ],
)
def test_a_malformed_exporter_setting_warns_once_and_spools(
    tmp_path: Path, variable: str, value: str, named: str
) -> None:
    """A malformed exporter setting is named in one line; the run completes and is spooled."""
    spool = tmp_path / "spool"
    env = {"MF_TRACING": "otlp", variable: value, "MFOTEL_SPOOL_DIR": str(spool)}
    run = run_flow("tiny_flow.py", tmp_path, env=env)
    assert run.returncode == 0, run.output
    assert "tiny start" in run.output
    lines = _mfotel_lines(run)
    assert any(named in line for line in lines), lines
    assert any("mfotel replay" in line for line in lines), lines
    # One line for the setting; an unusable one also says where telemetry went, in the same line.
    assert len(lines) <= 2, lines
    assert list(spool.rglob("*.pb"))


def test_console_mode_prints_signals_on_stderr(tmp_path: Path, receiver: OTLPReceiver) -> None:
    """MF_TRACING=console shows spans, logs and metrics on stderr and sends nothing."""
    run = run_flow("tiny_flow.py", tmp_path, env=otlp_env(receiver, MF_TRACING="console"))
    assert run.returncode == 0
    err = run.result.stderr
    assert "[mfotel] span   RUN TinyFlow" in err
    assert "[mfotel] log" in err and "tiny start" in err
    assert "[mfotel] metric metaflow.task.duration" in err
    assert receiver.requests == []


def test_a_killed_task_still_gets_an_error_span_and_its_lines(
    tmp_path: Path, receiver: OTLPReceiver
) -> None:
    """A task killed by SIGKILL gets an ERROR span and every line it printed arrives."""
    plain = run_flow("killed_flow.py", tmp_path)
    run = run_flow("killed_flow.py", tmp_path, env=otlp_env(receiver))
    assert run.returncode == plain.returncode != 0
    (span,) = [s for s in receiver.spans() if s.name == "start"]
    assert span.status_code == 2 and "ended without ending" in span.status_message
    bodies = [str(r.body) for r in receiver.logs()]
    assert "about to be killed" in bodies
    assert "Task failed." in bodies or any("Task failed" in b for b in bodies)


def test_b3multi_propagation_reaches_subprocesses(tmp_path: Path, receiver: OTLPReceiver) -> None:
    """OTEL_PROPAGATORS=b3multi puts the attempt's ids in X_B3_* for subprocesses."""
    env = otlp_env(receiver, OTEL_PROPAGATORS="b3multi", TINY_SHOW_ENV="X_B3_TRACEID,X_B3_SPANID")
    assert run_flow("tiny_flow.py", tmp_path, env=env).returncode == 0
    (start,) = [s for s in receiver.spans() if s.name == "start"]
    shown = [str(r.body) for r in receiver.logs() if str(r.body).startswith("X_B3_TRACEID=")]
    assert shown == [f"X_B3_TRACEID={start.trace_id} X_B3_SPANID={start.span_id}"]


def test_an_external_traceparent_becomes_the_runs_parent(
    tmp_path: Path, receiver: OTLPReceiver
) -> None:
    """A TRACEPARENT in the launching environment (a CI job) is the root span's parent."""
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    run_flow("tiny_flow.py", tmp_path, env=otlp_env(receiver, TRACEPARENT=parent))
    (root,) = [s for s in receiver.spans() if s.name == "RUN TinyFlow"]
    assert root.trace_id == "0af7651916cd43dd8448eb211c80319c"
    assert root.parent_span_id == "b7ad6b7169203331"
    assert {s.trace_id for s in receiver.spans()} == {root.trace_id}


def test_user_opentelemetry_code_joins_the_task_trace(
    tmp_path: Path, receiver: OTLPReceiver
) -> None:
    """Spans a step makes with the OpenTelemetry SDK, in process or in a subprocess, are children
    of the task attempt's span."""
    run = run_flow("otel_user_flow.py", tmp_path, env=otlp_env(receiver))
    assert run.returncode == 0, run.output
    assert receiver.wait_for(lambda rx: len(rx.spans()) >= 5, timeout=10)
    spans = {s.name: s for s in receiver.spans()}
    start = spans["start"]
    for name in ("user-in-process", "user-subprocess"):
        assert spans[name].trace_id == start.trace_id, name
        assert spans[name].parent_span_id == start.span_id, name


def test_invalid_extra_tags_are_skipped_with_a_warning(
    tmp_path: Path, receiver: OTLPReceiver
) -> None:
    """An MFOTEL_TAGS entry that breaks Metaflow's tag rules is named, skipped, and harmless."""
    long_tag = "x" * 501
    env = otlp_env(receiver, MFOTEL_TAGS=f"team:ml,{long_tag}")
    run = run_flow("tiny_flow.py", tmp_path, env=env)
    assert run.returncode == 0
    lines = _mfotel_lines(run)
    assert len(lines) == 1 and "longer than 500" in lines[0]
    (root,) = [s for s in receiver.spans() if s.name == "RUN TinyFlow"]
    assert "team:ml" in root.resource["metaflow.tags"]
    assert long_tag not in root.resource["metaflow.tags"]


def test_an_invalid_kit_setting_turns_telemetry_off_with_one_line(
    tmp_path: Path, receiver: OTLPReceiver
) -> None:
    """A bad MFOTEL_* value names itself once; the run and its tasks go on without telemetry."""
    run = run_flow("tiny_flow.py", tmp_path, env=otlp_env(receiver, MFOTEL_CAPTURE_LOGS="maybe"))
    assert run.returncode == 0, run.output
    lines = _mfotel_lines(run)
    assert len(lines) == 1, lines
    assert "MFOTEL_CAPTURE_LOGS='maybe' is not a boolean" in lines[0]
    assert "tiny start" in run.output and "tiny end" in run.output


def test_a_slow_collector_delays_the_end_of_a_run_by_the_shutdown_bound_at_most(
    tmp_path: Path, receiver: OTLPReceiver
) -> None:
    """A collector that takes 3 s per request holds a run's end for MFOTEL_SHUTDOWN_TIMEOUT_MS
    (+1 s) at most; the run succeeds and says where the rest went."""
    import time

    receiver.set_delay(3.0)
    spool = tmp_path / "spool"
    env = otlp_env(receiver, MFOTEL_SHUTDOWN_TIMEOUT_MS="500", MFOTEL_SPOOL_DIR=str(spool))
    started = time.monotonic()
    run = run_flow("tiny_flow.py", tmp_path, env=env)
    elapsed = time.monotonic() - started
    assert run.returncode == 0, run.output
    assert "tiny start" in run.output and "tiny end" in run.output
    plain_started = time.monotonic()
    assert run_flow("tiny_flow.py", tmp_path).returncode == 0
    plain = time.monotonic() - plain_started
    assert elapsed < plain + 0.5 + 1.0 + 1.5, (elapsed, plain)  # bound, +1 s, + scheduling
    lines = _mfotel_lines(run)
    assert lines and all(("spooled" in x or "still sending" in x) for x in lines), lines
    # Whatever the collector had not acknowledged is in the spool: replay can deliver it.
    assert list(spool.rglob("*.pb"))
