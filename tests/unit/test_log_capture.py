"""Log capture with real processes: through the run's relay, and through a task's own tee."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from metaflow.mflog import mflog

from mfotel.logs import _relay
from mfotel.logs._lines import expand

TASK = """
import os, signal, sys
from mfotel.logs import _tee
ok = _tee.start(sys.argv[1], sys.argv[2], b'{"tid":"t","sid":"s"}', sys.argv[3] or None)
print("captured %s" % ok)
print("to stderr", file=sys.stderr)
os.write(1, b"raw fd line\\n")
sys.stdout.write("no newline at the end")
sys.stdout.flush()
if sys.argv[4] == "kill":
    os.kill(os.getpid(), signal.SIGKILL)
"""


class FakeAgent:
    """Collects the JSON lines the tee or relay sends (a stand-in for the agent's socket)."""

    def __init__(self, path: str) -> None:
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(path)
        self.server.listen(8)
        self.messages: list[dict[str, object]] = []
        self.cond = threading.Condition()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            conn, _ = self.server.accept()
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        buffer = b""
        while chunk := conn.recv(65536):
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            with self.cond:
                self.messages += [json.loads(line) for line in lines]
                self.cond.notify_all()

    def wait_closed(self, timeout: float = 10) -> bool:
        with self.cond:
            return self.cond.wait_for(
                lambda: any(m["t"] == "logs_closed" for m in self.messages), timeout
            )


@pytest.fixture
def agent(tmp_path: Path) -> FakeAgent:
    return FakeAgent(str(tmp_path / "agent.sock"))


def _until(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    """True once ``predicate()`` holds, False after ``timeout`` s (for states of other
    processes, which nothing here can signal)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)
    return True


def _start_relay(tmp_path: Path) -> tuple[str, int]:
    """The run's relay for a test, listening: (its socket, its pid)."""
    listen = str(tmp_path / "relay.sock")
    pid = _relay.start(listen, str(tmp_path / "agent.sock"), str(tmp_path))
    assert pid is not None
    assert _until(lambda: os.path.exists(listen)), "the relay never listened"
    return listen, pid


def _run_task(tmp_path: Path, relay: str, how: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-c", TASK, str(tmp_path / "agent.sock"), str(tmp_path), relay, how],
        capture_output=True,
        timeout=60,
    )


def _check(result: subprocess.CompletedProcess[bytes], agent: FakeAgent, via: str) -> None:
    assert agent.wait_closed(), "the capture never said the task's logs were complete"
    roles = {m["role"] for m in agent.messages if m["t"] == "hello"}
    assert roles == {via}, f"expected the lines to come through the {via}, got {roles}"
    runtime_lines = {
        stream: [mflog.parse(line) for line in data.splitlines()]
        for stream, data in (("stdout", result.stdout), ("stderr", result.stderr))
    }
    sent = {
        uid: (stream, text)
        for m in agent.messages
        if m["t"] == "lines"
        for uid, _, stream, text in expand(m)
    }
    seen = {}
    for stream, parsed in runtime_lines.items():
        for line in parsed:
            assert line is not None and line.should_persist, "every line reaches Metaflow marked"
            seen[line.id.decode()] = (stream, line.msg.decode())
    assert seen == sent, "Metaflow and the agent must see the same lines under the same ids"
    texts = sorted(text for _, text in seen.values())
    assert texts == sorted(["captured True", "to stderr", "raw fd line", "no newline at the end"])


def test_a_tasks_own_tee_captures_every_line(tmp_path: Path, agent: FakeAgent) -> None:
    """Without a relay the task's own tee forwards each line marked, and the agent gets it too."""
    result = _run_task(tmp_path, relay="", how="exit")
    assert result.returncode == 0
    _check(result, agent, "tee")


def test_the_runs_relay_captures_every_line(tmp_path: Path, agent: FakeAgent) -> None:
    """Through the run's relay the same lines reach Metaflow and the agent under the same ids."""
    listen, _ = _start_relay(tmp_path)
    result = _run_task(tmp_path, relay=listen, how="exit")
    assert result.returncode == 0
    _check(result, agent, "relay")


def test_a_dead_relay_falls_back_to_the_tasks_own_tee(tmp_path: Path, agent: FakeAgent) -> None:
    """If nothing answers at the relay's socket, the task's output is still fully captured."""
    result = _run_task(tmp_path, relay=str(tmp_path / "no-relay.sock"), how="exit")
    assert result.returncode == 0
    _check(result, agent, "tee")


@pytest.mark.parametrize("relay", [False, True])
def test_a_killed_task_loses_no_line(tmp_path: Path, agent: FakeAgent, relay: bool) -> None:
    """A task killed by SIGKILL right after writing still has every line delivered."""
    listen = _start_relay(tmp_path)[0] if relay else ""
    result = _run_task(tmp_path, relay=listen, how="kill")
    assert result.returncode == -9
    _check(result, agent, "relay" if relay else "tee")


BURST = """
import os, sys
from mfotel.logs import _tee
assert _tee.start(sys.argv[1], sys.argv[2], b'{"tid":"t","sid":"s"}', sys.argv[3])
line = b"x" * 99 + b"\\n"
for _ in range(80):  # 8 MB, as fast as it goes
    os.write(1, line * 1000)
open(sys.argv[4], "w").close()
"""


def test_the_relay_holds_back_a_task_the_runtime_does_not_keep_up_with(
    tmp_path: Path, agent: FakeAgent
) -> None:
    """A task printing faster than Metaflow's runtime reads waits in its own writes, as it
    would without mfotel: the relay stops reading it (its memory stays bounded) until the
    runtime has taken the backlog, and then every line arrives, at both ends."""
    listen, relay_pid = _start_relay(tmp_path)
    written = tmp_path / "written"
    task = subprocess.Popen(
        [sys.executable, "-c", BURST, str(tmp_path / "agent.sock"), str(tmp_path), listen, written],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert task.stdout is not None
    # The runtime reads nothing: the relay fills the runtime's pipe, and then a relay that did
    # not hold back would take the rest of the 8 MB within a fraction of a second.
    runtime = task.stdout.fileno()
    assert _until(lambda: _unread(runtime) >= 32_768), "the relay never wrote to the runtime"
    threading.Event().wait(1.0)
    assert not written.exists(), "the task should wait for the runtime, not the relay buffer"
    status = Path(f"/proc/{relay_pid}/status").read_text()
    rss_kb = int(next(ln for ln in status.splitlines() if ln.startswith("VmRSS:")).split()[1])
    assert rss_kb < 40_000, f"the relay holds {rss_kb} kB"
    out = task.stdout.read()
    assert task.wait(30) == 0 and written.exists()
    runtime_ids = [mflog.parse(line).id.decode() for line in out.splitlines()]
    assert len(runtime_ids) == 80_000 == len(set(runtime_ids))
    assert agent.wait_closed(20)
    sent = [uid for m in agent.messages if m["t"] == "lines" for uid, *_ in expand(m)]
    assert sent == runtime_ids


def _unread(fd: int) -> int:
    """Bytes waiting in the pipe behind ``fd``."""
    import fcntl
    import struct
    import termios

    return int(struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0])
