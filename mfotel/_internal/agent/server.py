"""The per-run agent process: a Unix-socket server feeding the pipeline.

One thread multiplexes every connection with ``selectors`` and runs the pipeline; the
exporter's own thread does the network. ``serve`` returns when the runtime has said the run
ended and closed its connection, or when the runtime process is gone (after taking in what it
had sent), having read the attempts' persisted logs one last time; the caller then finishes
the pipeline, gives the exporter ``MFOTEL_SHUTDOWN_TIMEOUT_MS`` to send, and spools the rest.
"""

from __future__ import annotations

import os
import selectors
import socket
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

from mfotel._internal.agent.pipeline import Pipeline
from mfotel._internal.agent.spool import Spool
from mfotel._internal.ipc import decode, listen, read_inbox
from mfotel._internal.proc import parent_gone
from mfotel.logs._persisted import Sweeper

TICK_S = 0.05
INBOX_EVERY_S = 1.0
SETTLE_S = 1.0  # after a killed task: how long Metaflow's tee may take to write its last lines
DRAIN_S = 1.0  # ... and how long we take in what it had sent us
MAX_LINE = 64 * 1024 * 1024


class _Conn:
    __slots__ = ("buffer", "id", "role", "sock")

    def __init__(self, sock: socket.socket, conn_id: int) -> None:
        self.sock = sock
        self.id = conn_id
        self.buffer = b""
        self.role = ""


class Agent:
    def __init__(
        self,
        socket_path: str,
        pipeline: Pipeline,
        spool: Spool,
        parent_pid: int | None,
        debug: bool = False,
        listen_fd: int | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.spool = spool
        self.parent_pid = parent_pid
        self.debug = debug
        self.sweeper = Sweeper()
        self.selector = selectors.DefaultSelector()
        if listen_fd is not None:
            # Bound and listening already, by the process that started us: it could connect
            # and send at once, without waiting for this interpreter to start.
            self.listener = socket.socket(fileno=listen_fd)
        else:
            listener = listen(socket_path)
            self.listener = socket.socket(fileno=listener.detach())
        self.listener.setblocking(False)
        self.socket_path = socket_path
        self.selector.register(self.listener, selectors.EVENT_READ, None)
        self._next_id = 0
        self._runtime_conns: set[int] = set()
        self._runtime_seen = False
        # Captured attempts whose log carrier (relay, tee) has not yet said it handed over
        # their last line: the run's end waits for them, at most ``logs_wait_s``.
        self._logs_open: set[str] = set()
        self._logs_closed: set[str] = set()
        self.logs_wait_s = 0.0
        self.run_end_at: float | None = None
        self._last_inbox = 0.0
        # The attempt an agent of a container task serves: where it ran and where it keeps
        # its logs, for when that task is killed (see hand_off in __main__).
        self.attempt: dict[str, Any] | None = None
        self.on_attempt: Callable[[Mapping[str, Any]], None] | None = None
        self.killed = False

    def serve(self) -> None:
        try:
            while not self._done():
                self._poll(TICK_S)
                self._tick()
            if not self.pipeline.run_ended:
                # Our starter is gone without saying so (killed): what it and its helpers
                # sent before that is still in our sockets and queue; take all of it.
                self._drain(DRAIN_S)
        finally:
            self.selector.close()
            self.listener.close()
            try:
                os.unlink(self.socket_path)
            except OSError:
                pass
        self.killed = not self.pipeline.run_ended
        if self.killed:
            self.sweeper.settle(SETTLE_S)
            if self.attempt is not None and isinstance(self.attempt.get("root"), dict):
                root = dict(self.attempt["root"])
                root["end_ns"] = time.time_ns()
                self.pipeline.handle(root, 0)
        self._ingest_inbox()
        for ctx, lines, fresh in self.sweeper.due(final=True, seen=self.pipeline.seen_lines):
            self.pipeline.add_persisted_lines(ctx, lines, fresh)

    # -- machinery ----------------------------------------------------------------------------

    def _poll(self, timeout: float) -> int:
        events = self.selector.select(timeout)
        for key, _ in events:
            if key.data is None:
                self._accept()
            else:
                self._read(key.data)
        return len(events)

    def _drain(self, timeout: float) -> None:
        """Accept and read until nothing more arrives (or ``timeout``): connections still
        waiting to be accepted, and what is buffered in the open ones."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self._poll(0.05):
            pass

    def _done(self) -> bool:
        if self.pipeline.run_ended and self._runtime_seen and not self._runtime_conns:
            # A chatty task's last lines may still be on their way from its log carrier.
            waited = time.monotonic() - (self.run_end_at or 0.0)
            if not self._logs_open or waited >= self.logs_wait_s:
                return True
        return self.parent_pid is not None and parent_gone(self.parent_pid)

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            sock.setblocking(False)
            self._next_id += 1
            self.selector.register(sock, selectors.EVENT_READ, _Conn(sock, self._next_id))

    def _read(self, conn: _Conn) -> None:
        try:
            chunk = conn.sock.recv(1 << 20)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        if not chunk:
            self._close(conn)
            return
        data = conn.buffer + chunk
        lines = data.split(b"\n")
        conn.buffer = lines.pop()
        if len(conn.buffer) > MAX_LINE:
            conn.buffer = b""
        for line in lines:
            self._dispatch(line, conn)

    def _dispatch(self, line: bytes, conn: _Conn | None) -> None:
        message = decode(line)
        if message is not None:
            self._handle(message, conn)

    def _handle(self, message: dict[str, Any], conn: _Conn | None) -> None:
        kind = message.get("t")
        if kind == "hello" and conn is not None:
            conn.role = str(message.get("role", ""))
            if conn.role == "runtime":
                self._runtime_conns.add(conn.id)
                self._runtime_seen = True
            return
        try:
            self.pipeline.handle(message, conn.id if conn is not None else 0)
        except Exception as exc:  # one bad message must not stop the agent
            if self.debug:
                print(f"mfotel agent: dropped a message: {exc!r}", file=sys.stderr)
            return
        if kind == "start":
            if "ds" in message:
                self.sweeper.remember_root(str(message["sid"]), message["ds"])
            if "mflog" in message:
                self.sweeper.follow(message["ctx"], message["mflog"])
            owner = message.get("owns_agent") and isinstance(message.get("ds"), list)
            if owner and self.attempt is None:
                self.attempt = {
                    "ctx": message["ctx"],
                    "ds": message["ds"],
                    "root": message.get("root_if_killed"),
                }
                if self.on_attempt is not None:
                    self.on_attempt(self.attempt)
        elif kind == "logs_closed" or (kind == "end" and message.get("tee") is False):
            self.sweeper.schedule(message["ctx"])
            if kind == "logs_closed":
                sid = str(message["ctx"].get("sid"))
                self._logs_open.discard(sid)
                self._logs_closed.add(sid)
        if kind == "end" and message.get("tee") is True and message["sid"] not in self._logs_closed:
            self._logs_open.add(str(message["sid"]))
        elif kind == "run_end" and self.run_end_at is None:
            self.run_end_at = time.monotonic()

    def _close(self, conn: _Conn) -> None:
        # A partial last line means the sender spooled that message whole; drop our half.
        self.selector.unregister(conn.sock)
        conn.sock.close()
        self._runtime_conns.discard(conn.id)
        self.pipeline.closed(conn.id)

    def _tick(self) -> None:
        now = time.monotonic()
        if now - self._last_inbox >= INBOX_EVERY_S:
            self._last_inbox = now
            self._ingest_inbox()
        for ctx, lines, fresh in self.sweeper.due(seen=self.pipeline.seen_lines):
            self.pipeline.add_persisted_lines(ctx, lines, fresh)
        self.pipeline.tick()

    def _ingest_inbox(self) -> None:
        for path in self.spool.claim_inbox():
            try:
                for message in read_inbox(path):
                    self._handle(message, None)
            except OSError:
                continue
            try:
                os.unlink(path)
            except OSError:
                pass
