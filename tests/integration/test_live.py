"""Log records reach the collector while the task still runs, within two seconds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mfotel.testing import OTLPReceiver
from tests.conftest import FLOWS, otlp_env

pytestmark = pytest.mark.flow


def test_a_line_arrives_within_two_seconds_while_its_task_runs(
    tmp_path: Path, receiver: OTLPReceiver
) -> None:
    """The first line of a still-running task is at the collector < 2 s after it was printed."""
    stop = tmp_path / "stop"
    env = dict(os.environ, **otlp_env(receiver, SLOWFLOW_STOP=str(stop), SLOWFLOW_SECONDS="60"))
    flow = subprocess.Popen(
        [sys.executable, str(FLOWS / "slow_flow.py"), "run"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        arrived = receiver.wait_for(
            lambda rx: any(r.body == "early line" for r in rx.logs()), timeout=60
        )
        seen_ns = time.time_ns()
        assert arrived, "the line never arrived while the task ran"
        (record,) = [r for r in receiver.logs() if r.body == "early line"]
        assert seen_ns - record.time_ns < 2_000_000_000
        assert flow.poll() is None, "the task must still be running"
        assert not any(s.name == "start" for s in receiver.spans())
    finally:
        stop.write_text("stop")
        assert flow.wait(timeout=120) == 0
    assert any(r.body == "late line" for r in receiver.logs())


def _agent_pids(parent: int) -> list[int]:
    """The agents ``parent`` started (other tests' agents may be running meanwhile)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path("/proc", entry, "cmdline").read_bytes()
            except OSError:
                continue
            args = cmdline.split(b"\0")
            if b"--socket" not in args or b"--parent-pid" not in args:
                continue
            if args[args.index(b"--parent-pid") + 1] == str(parent).encode():
                pids.append(int(entry))
    return pids


def test_an_exporter_killed_mid_run_hurts_nothing_and_replay_recovers(
    tmp_path: Path, receiver: OTLPReceiver
) -> None:
    """Kill the agent mid-run: the flow still succeeds, one line says so, replay sends the rest."""
    stop = tmp_path / "stop"
    spool = tmp_path / "spool"
    env = dict(
        os.environ,
        **otlp_env(
            receiver, SLOWFLOW_STOP=str(stop), SLOWFLOW_SECONDS="60", MFOTEL_SPOOL_DIR=str(spool)
        ),
    )
    flow = subprocess.Popen(
        [sys.executable, str(FLOWS / "slow_flow.py"), "run"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert receiver.wait_for(lambda rx: any(r.body == "early line" for r in rx.logs()), 60)
        (agent,) = _agent_pids(flow.pid)
        os.kill(agent, signal.SIGKILL)
    finally:
        stop.write_text("stop")
        output, _ = flow.communicate(timeout=120)
    assert flow.returncode == 0, output
    warnings = [line for line in output.splitlines() if line.startswith("mfotel")]
    assert len(warnings) == 1 and "exporter stopped during the run" in warnings[0], warnings
    assert "late line" in output
    replay = subprocess.run(
        [sys.executable, "-m", "mfotel.cli", "replay", "--spool-dir", str(spool)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert replay.returncode == 0, replay.stdout + replay.stderr
    bodies = [r.body for r in receiver.logs()]
    assert bodies.count("late line") == 1
    assert {s.name for s in receiver.spans()} >= {"end", "RUN SlowFlow"}


def test_a_runtime_killed_hard_leaves_nothing_holding_its_output(
    tmp_path: Path, receiver: OTLPReceiver
) -> None:
    """SIGKILL the runtime while its output is captured: no helper keeps the pipes open."""
    stop = tmp_path / "stop"
    env = dict(os.environ, **otlp_env(receiver, SLOWFLOW_STOP=str(stop), SLOWFLOW_SECONDS="60"))
    flow = subprocess.Popen(
        [sys.executable, str(FLOWS / "slow_flow.py"), "run"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert receiver.wait_for(lambda rx: any(r.body == "early line" for r in rx.logs()), 60)
        flow.kill()
        flow.communicate(timeout=30)  # hangs if the agent or relay still held the pipes
    finally:
        stop.write_text("stop")
    assert flow.returncode == -signal.SIGKILL


def test_a_chatty_task_delivers_every_line_live(tmp_path: Path, receiver: OTLPReceiver) -> None:
    """20,000 lines as fast as a task prints them: every one arrives live, once, by the end of
    the run; nothing is left in the spool's inbox for a replay. (The run's log relay used to
    keep its last queued lines until it exited, after the agent: they went to the inbox.)"""
    from tests.conftest import run_flow

    run = run_flow(
        "chatty_flow.py", tmp_path, env=otlp_env(receiver, CHATTY_LINES="20000"), timeout=300
    )
    assert run.returncode == 0, run.output
    uids = [r.attributes.get("log.record.uid") for r in receiver.logs()]
    bodies = [str(r.body) for r in receiver.logs() if str(r.body).startswith("step ")]
    assert len(bodies) == 20000 and len(set(uids)) == len(uids), (len(bodies), len(uids))
    inbox = tmp_path / ".metaflow" / ".mfotel" / "spool" / "inbox"
    assert not inbox.exists() or not list(inbox.iterdir()), list(inbox.iterdir())
