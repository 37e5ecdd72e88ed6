"""Log records reach the collector while the task still runs, within two seconds."""

from __future__ import annotations

import os
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
