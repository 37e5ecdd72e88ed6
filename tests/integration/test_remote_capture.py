"""A task run the way Metaflow runs it in a Batch or Kubernetes container (``@fake_remote``:
Metaflow's own bash log capture, no runtime agent or relay on the host).

There, Metaflow's ``mflog.tee`` already turns every line the task prints into a persisted
mflog line and passes the plain line to the container's output (CloudWatch, ``kubectl
logs``). mfotel must leave both exactly as Metaflow makes them.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from metaflow.mflog.mflog import parse

from mfotel.testing import OTLPReceiver
from mfotel.testing._collector import free_port
from tests.conftest import REPO, otlp_env, run_flow

pytestmark = pytest.mark.flow

OUT = [f"remote out {i}" for i in range(5)]
ERR = [f"remote err {i}" for i in range(5)]


@pytest.mark.parametrize("slow_tee", [False, True], ids=["tee", "slow-tee"])
def test_a_container_task_keeps_metaflows_own_log_capture(
    tmp_path: Path, receiver: OTLPReceiver, slow_tee: bool
) -> None:
    """slow-tee: the task ends before Metaflow's tee has read a line; none may be missed."""
    remote = tmp_path / "container"
    remote.mkdir()
    env = otlp_env(
        receiver,
        PYTHONPATH=str(REPO / "tests" / "extensions"),
        MFOTEL_TEST_REMOTE_DIR=str(remote),
        **({"MFOTEL_TEST_SLOW_TEE": "1"} if slow_tee else {}),
    )
    run = run_flow("remote_capture_flow.py", tmp_path, env=env)
    assert run.returncode == 0, run.output

    # What the container prints (CloudWatch / kubectl logs): the task's lines, untouched.
    console = (remote / "start.0.console").read_text().splitlines()
    assert [line for line in console if line.startswith("remote out")] == OUT, console
    assert [line for line in console if line.startswith("remote err")] == ERR, console
    assert not any("[MFLOG|" in line for line in console), console
    assert not any(line.startswith("mfotel:") for line in console), console  # nothing to say

    # What Metaflow uploads as the task's logs: each line once, under one mflog header.
    persisted = {}
    for name, expected in (("stdout", OUT), ("stderr", ERR)):
        texts = []
        for raw in (remote / f"start.0.{name}").read_bytes().splitlines():
            parsed = parse(raw)
            assert parsed is not None, raw
            texts.append(parsed.msg.decode())
            persisted[parsed.msg.decode()] = (parsed.id.decode(), name)
        assert [t for t in texts if t.startswith("remote")] == expected, texts
        assert not any("[MFLOG|" in t for t in texts), texts

    # The container task exported on its own (no runtime agent there): its span, in the run's
    # trace, and every line once, with the id and stream Metaflow persisted it under.
    def start_lines(r: OTLPReceiver) -> int:
        return sum(1 for x in r.logs() if x.identity.get("metaflow.step.name") == "start")

    receiver.wait_for(lambda r: {"start", "end"} <= {s.name for s in r.spans()}, 20)
    receiver.wait_for(lambda r: start_lines(r) >= len(OUT + ERR), 10)
    spans = {s.name: s for s in receiver.spans()}
    assert spans["start"].trace_id == spans["end"].trace_id
    assert spans["start"].attributes["metaflow.task.attempt"] == 0
    records = [r for r in receiver.logs() if r.identity.get("metaflow.step.name") == "start"]
    by_text = {r.body: r for r in records}
    assert sorted(r.body for r in records) == sorted(OUT + ERR), [r.body for r in records]
    for text, (uid, stream) in persisted.items():
        record = by_text[text]
        assert record.attributes["log.record.uid"] == uid
        assert record.attributes["log.iostream"] == stream
        assert record.span_id == spans["start"].span_id


def test_a_container_task_with_no_collector_still_succeeds_and_spools(tmp_path: Path) -> None:
    """No collector answers in the container: the run's result and the task's output are
    untouched; the task says so in one line, and its telemetry is in its spool."""
    remote = tmp_path / "container"
    remote.mkdir()
    env = {
        "MF_TRACING": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{free_port()}",
        "MFOTEL_SHUTDOWN_TIMEOUT_MS": "500",
        "PYTHONPATH": str(REPO / "tests" / "extensions"),
        "MFOTEL_TEST_REMOTE_DIR": str(remote),
    }
    run = run_flow("remote_capture_flow.py", tmp_path, env=env)
    assert run.returncode == 0, run.output
    console = (remote / "start.0.console").read_text().splitlines()
    assert [line for line in console if line.startswith("remote out")] == OUT, console
    warnings = [line for line in console if line.startswith("mfotel:")]
    assert len(warnings) <= 1, warnings
    spooled = [p for p in (tmp_path / ".metaflow" / ".mfotel" / "spool").rglob("*") if p.is_file()]
    pathspec = f"RemoteCaptureFlow/{run.run_id}/start/".encode()
    assert any(pathspec in path.read_bytes() for path in spooled), spooled  # the task's own
