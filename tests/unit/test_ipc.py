"""The task-side client: never blocks, never splits a message, spools what it cannot send."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from mfotel._internal.ipc import AgentClient, await_attempt, hold_attempt


def _server(path: str) -> socket.socket:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(8)
    return server


def _read_all(conn: socket.socket) -> list[dict[str, object]]:
    data = b""
    while chunk := conn.recv(65536):
        data += chunk
    return [json.loads(line) for line in data.split(b"\n") if line]


def _inbox(spool: Path) -> list[dict[str, object]]:
    folder = spool / "inbox"
    messages = []
    for name in sorted(os.listdir(folder)) if folder.exists() else []:
        messages += [json.loads(x) for x in (folder / name).read_bytes().splitlines()]
    return messages


def test_messages_arrive_in_order_after_a_hello(tmp_path: Path) -> None:
    """A connected client sends a hello naming its role, then every message in order."""
    path = str(tmp_path / "a.sock")
    server = _server(path)
    client = AgentClient(path, str(tmp_path / "spool"), "task")
    for i in range(100):
        client.send({"t": "x", "i": i})
    client.close()
    conn, _ = server.accept()
    messages = _read_all(conn)
    assert messages[0] == {"t": "hello", "role": "task", "pid": os.getpid()}
    assert [m["i"] for m in messages[1:]] == list(range(100))
    assert not (tmp_path / "spool" / "inbox").exists()


def test_no_agent_means_everything_goes_to_the_inbox(tmp_path: Path) -> None:
    """With nothing listening, sends return at once and close() writes them to the inbox."""
    spool = tmp_path / "spool"
    client = AgentClient(str(tmp_path / "missing.sock"), str(spool), "task")
    for i in range(10):
        client.send({"t": "x", "i": i})
    client.close()
    assert [m["i"] for m in _inbox(spool)] == list(range(10))


def test_a_stalled_agent_never_blocks_and_nothing_is_lost(tmp_path: Path) -> None:
    """When the agent does not read, sends still return; close() spools the unsent whole."""
    path = str(tmp_path / "a.sock")
    server = _server(path)
    spool = tmp_path / "spool"
    client = AgentClient(path, str(spool), "task")
    big = "x" * 10_000
    done = threading.Event()

    def produce() -> None:
        for i in range(400):  # ~4 MB, far beyond the socket buffers
            client.send({"t": "x", "i": i, "pad": big})
        done.set()

    worker = threading.Thread(target=produce)
    worker.start()
    assert done.wait(10), "send() blocked on a stalled agent"
    client.close(timeout_s=0.2)
    conn, _ = server.accept()
    received = [m for m in _read_all(conn) if m.get("t") == "x"]
    spooled = _inbox(spool)
    indexes = sorted(m["i"] for m in received + spooled)  # type: ignore[type-var]
    assert indexes == list(range(400)), "a message was lost or sent twice"


def test_a_fork_gets_its_own_connection(tmp_path: Path) -> None:
    """After fork the child reconnects and the parent's queue is not sent twice."""
    path = str(tmp_path / "a.sock")
    server = _server(path)
    client = AgentClient(path, str(tmp_path / "spool"), "task")
    client.send({"t": "x", "who": "parent-before"})
    pid = os.fork()
    if pid == 0:
        client.send({"t": "x", "who": "child"})
        client.close()
        os._exit(0)
    os.waitpid(pid, 0)
    client.send({"t": "x", "who": "parent-after"})
    client.close()
    seen = []
    for _ in range(2):
        conn, _ = server.accept()
        seen.append([m.get("who") for m in _read_all(conn) if m.get("t") == "x"])
    assert sorted(seen) == sorted([["parent-before", "parent-after"], ["child"]])


def _holder(pathspec: str, attempt: int, code: str) -> subprocess.Popen[bytes]:
    """A process that inherits the attempt's hold, as the agent does, and runs ``code``."""
    fd = hold_attempt(pathspec, attempt)
    assert fd is not None
    try:
        return subprocess.Popen([sys.executable, "-c", code], pass_fds=(fd,))
    finally:
        os.close(fd)  # the child's copy keeps the lock


def test_save_logs_waits_for_the_agent_holding_the_attempt_and_no_longer() -> None:
    """The hold is the agent's until it exits (or lets go): a waiter returns when it does, at
    its own limit if the agent takes longer, and at once when no agent holds the attempt."""
    pathspec = f"HoldFlow/{os.getpid()}/step/{time.time_ns()}"
    assert await_attempt(pathspec, 0, 5.0) == 0.0  # never held
    agent = _holder(pathspec, 0, "import time; time.sleep(0.6)")
    waited = await_attempt(pathspec, 0, 10.0)
    assert agent.poll() is not None and 0.3 < waited < 5.0, waited
    agent = _holder(pathspec, 1, "import time; time.sleep(30)")
    try:
        assert 0.2 <= await_attempt(pathspec, 1, 0.2) < 2.0
        assert await_attempt(pathspec, 0, 5.0) < 0.5  # another attempt's hold is not this one's
        agent.send_signal(signal.SIGKILL)  # an agent killed with its container lets go too
        agent.wait()
        assert await_attempt(pathspec, 1, 10.0) < 0.5
    finally:
        agent.kill()
        agent.wait()
