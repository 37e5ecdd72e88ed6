"""The cheap path from a task process to the run's agent: JSON lines over a Unix socket.

Every process of a run (the runtime, each task, its log tee, its forks) holds one
:class:`AgentClient`. Sending never blocks the caller: the socket is non-blocking, what the
kernel does not take at once waits in a bounded in-memory queue and goes with the next send,
and whatever is still queued when the process closes the client (or what could never reach
an agent at all) is appended to the spool's inbox, where the agent or ``mfotel replay``
picks it up. A message is never split between the socket and the inbox: one that was only
partly written is written whole to the inbox, and the agent drops the partial line it got.

The messages. Each is one JSON object on one line; ``t`` is its kind, and all but ``hello``
carry ``ctx``, the sender's context: ``tid`` and ``sid`` (its trace and span, hex), ``res``
(resource attributes) and ``attrs`` (what to stamp on what it produced, e.g. the task's
identity). The agent reads them in :mod:`mfotel._internal.agent.server` and
:mod:`mfotel._internal.agent.pipeline`.

- ``hello``: ``role`` (``runtime``, ``task``, ``relay``, ``tee``), first on a connection.
- ``start`` / ``end``: a span's start (``sid``, ``psid``, ``name``, ``kind``, ``start_ns``;
  a task's also ``ds`` [datastore, root], and in a container ``mflog`` [stdout, stderr
  files to follow], ``owns_agent``, ``root_if_killed``) and its end (``end_ns``, ``status``,
  ``msg``, ``attrs``, ``links``, ``sampled``, and ``tee``: whether a log carrier serves it).
- ``event``: ``name``, ``time_ns``, ``payload`` (a span event, or a log record if late).
- ``metric``: ``kind`` (``counter``, ``timer``, ``gauge``, ``cumulative``), ``name``, ``value``,
  ``time_ns``.
- ``lines``: a chunk of one stream's lines from a log carrier (:mod:`mfotel.logs._lines`):
  ``s`` (``stdout``/``stderr``), ``ts`` (their time, ns, to the microsecond), ``x`` (the
  lines' text joined by ``\n``), ``p`` and ``i``: line *n* of the chunk has the id
  ``p`` + ``i + n`` in 12 hex digits, the id Metaflow persists it under.
- ``log``: one entry a line, ``lines`` = [[id, time_ns, stream, text], ...] (mfotel 0.1's
  carriers; read from an old spool).
- ``logs_closed``: a carrier has passed on every line of the attempt in ``ctx``.
- ``run_end``: the runtime (or a container's task) is done; the agent finishes.
"""

from __future__ import annotations

import errno
import os
import time

# The C modules directly: ``socket``, ``threading`` and ``collections`` would cost the log tee
# (a fresh interpreter per task) several milliseconds of imports for nothing it uses.
from _collections import deque  # type: ignore[import-not-found]
from _socket import AF_UNIX, SOCK_STREAM, gethostname
from _socket import socket as _Socket
from _thread import allocate_lock

TYPE_CHECKING = False  # typing itself costs the tee ~8 ms to import

if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

MAX_QUEUED_BYTES = 8 * 1024 * 1024
RECONNECT_INTERVAL_S = 0.25


def _dumps(message: dict[str, Any]) -> str:
    import json  # already loaded in task processes; the tee never sends dicts

    return json.dumps(message, separators=(",", ":"), ensure_ascii=False, default=str)


def socket_dir() -> str:
    """A short per-user folder for agent sockets (Unix socket paths are limited to ~100 bytes)."""
    base = "/tmp" if os.path.isdir("/tmp") else os.path.realpath(os.environ.get("TMPDIR", "."))
    return os.path.join(base, f"mfotel-{os.getuid()}")


def listen(path: str) -> _Socket:
    """A Unix socket listening at ``path``, for this user only (the agent's: its starter binds
    it, so that it can send at once while the agent's interpreter starts)."""
    sock = _Socket(AF_UNIX, SOCK_STREAM)
    try:
        os.unlink(path)
    except OSError:
        pass
    sock.bind(path)
    os.chmod(path, 0o600)
    sock.listen(256)
    return sock


def _hold_path(pathspec: str, attempt: int) -> str:
    import hashlib

    key = hashlib.sha1(f"{pathspec}/{attempt}".encode("utf-8", "replace")).hexdigest()[:20]
    return os.path.join(socket_dir(), f"attempt-{key}.hold")


def hold_attempt(pathspec: str, attempt: int) -> int | None:
    """An open file descriptor holding an exclusive lock named after this attempt, for its
    agent to inherit and keep until it has handed everything off (the lock goes when the last
    descriptor closes, so an agent that dies releases it too). None when it cannot be had."""
    import fcntl

    try:
        os.makedirs(socket_dir(), mode=0o700, exist_ok=True)
        fd = os.open(_hold_path(pathspec, attempt), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def await_attempt(pathspec: str, attempt: int, timeout_s: float) -> float:
    """Wait (at most ``timeout_s``) while an agent still holds this attempt (see
    :func:`hold_attempt`); the seconds waited. Returns at once when none does."""
    import fcntl

    began = time.monotonic()
    try:
        fd = os.open(_hold_path(pathspec, attempt), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return 0.0
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                return time.monotonic() - began
            except OSError:
                if time.monotonic() - began >= timeout_s:
                    return time.monotonic() - began
                time.sleep(0.02)
    finally:
        os.close(fd)


def inbox_dir(spool_dir: str) -> str:
    return os.path.join(spool_dir, "inbox")


def decode(line: bytes) -> dict[str, Any] | None:
    """One message from its JSON line; None for anything else (a partial or foreign line)."""
    import json

    try:
        message = json.loads(line)
    except ValueError:
        return None
    return message if isinstance(message, dict) else None


def read_inbox(path: str) -> Iterator[dict[str, Any]]:
    """The messages of one inbox file (which the agent and ``mfotel replay`` both read)."""
    with open(path, "rb") as handle:
        for line in handle:
            message = decode(line.rstrip(b"\n"))
            if message is not None:
                yield message


class AgentClient:
    """Sends messages (dicts) to the agent listening at ``path``; see the module docstring."""

    def __init__(self, path: str | None, spool_dir: str | None, role: str) -> None:
        self._path = path
        self._spool_dir = spool_dir
        self._role = role
        self._lock = allocate_lock()
        self._pid = os.getpid()
        self._sock: _Socket | None = None
        self._queue: deque[bytes] = deque()
        self._queued_bytes = 0
        self._head_sent = 0  # bytes of _queue[0] already written to the socket
        self._next_connect = 0.0
        self._closed = False
        if hasattr(os, "register_at_fork"):
            # A lock held by another thread at fork time would stay held in the child.
            os.register_at_fork(after_in_child=self._new_lock)

    def _new_lock(self) -> None:
        self._lock = allocate_lock()

    # -- public -------------------------------------------------------------------------

    def send(self, message: dict[str, Any]) -> None:
        try:
            data = _dumps(message).encode("utf-8", "surrogatepass") + b"\n"
        except (TypeError, ValueError):
            return
        self.send_raw(data)

    def send_raw(self, data: bytes) -> None:
        """Send one already-encoded JSON line (it must end with a newline)."""
        with self._lock:
            if os.getpid() != self._pid:
                self._after_fork()
            if self._closed:
                self._spill([data])
                return
            self._queue.append(data)
            self._queued_bytes += len(data)
            self._pump()
            if self._queued_bytes > MAX_QUEUED_BYTES:
                self._spill_queue()

    def close(self, timeout_s: float = 1.0) -> None:
        """Deliver what is queued within ``timeout_s``, spool the rest, and close. Safe twice."""
        with self._lock:
            if os.getpid() != self._pid:
                self._after_fork()
            if self._closed:
                return
            deadline = time.monotonic() + timeout_s
            while self._queue and time.monotonic() < deadline:
                if self._sock is None:
                    self._next_connect = 0.0
                    if not self._connect():
                        break
                self._pump()
                if self._queue and self._sock is not None:
                    self._wait_writable(deadline)
            self._spill_queue()
            self._closed = True
            if self._sock is not None:
                self._sock.close()
                self._sock = None

    def spill_if_disconnected(self) -> None:
        """With no agent reachable now, write what is queued to the inbox rather than wait."""
        with self._lock:
            if self._closed or not self._queue:
                return
            if self._sock is None:
                self._next_connect = 0.0
                if self._connect():
                    self._pump()
                    return
                self._spill_queue()

    def pump(self) -> None:
        """Push what is queued as far as the socket takes it now; never blocks. (A sender that
        goes quiet, such as the run's log relay between tasks, calls this so that its last
        messages do not wait for its next one.)"""
        with self._lock:
            if not self._closed and self._queue and os.getpid() == self._pid:
                self._pump()

    @property
    def queued(self) -> bool:
        """Whether messages wait to be sent."""
        return bool(self._queue)

    @property
    def connected(self) -> bool:
        return self._sock is not None

    # -- machinery ----------------------------------------------------------------------

    def _after_fork(self) -> None:
        # The parent still owns its queue and its connection; the child starts afresh.
        self._pid = os.getpid()
        if self._sock is not None:
            try:
                self._sock.detach()
            except OSError:
                pass
        self._sock = None
        self._queue.clear()
        self._queued_bytes = 0
        self._head_sent = 0
        self._next_connect = 0.0
        self._closed = False

    def _connect(self) -> bool:
        if self._path is None or time.monotonic() < self._next_connect:
            return False
        self._next_connect = time.monotonic() + RECONNECT_INTERVAL_S
        sock = _Socket(AF_UNIX, SOCK_STREAM)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            return False
        sock.setblocking(False)
        self._sock = sock
        hello = _dumps({"t": "hello", "role": self._role, "pid": self._pid}).encode() + b"\n"
        self._queue.appendleft(hello)
        self._queued_bytes += len(hello)
        self._head_sent = 0
        return True

    def _pump(self) -> None:
        if self._sock is None and not self._connect():
            return
        sock = self._sock
        assert sock is not None
        while self._queue:
            head = self._queue[0]
            try:
                sent = sock.send(memoryview(head)[self._head_sent :])
            except BlockingIOError:
                return
            except OSError as exc:
                self._drop_connection(exc)
                return
            self._head_sent += sent
            if self._head_sent == len(head):
                self._queue.popleft()
                self._queued_bytes -= len(head)
                self._head_sent = 0
            else:
                return

    def _drop_connection(self, exc: OSError) -> None:
        if self._sock is not None:
            self._sock.close()
        self._sock = None
        # The agent drops a partial line at EOF, so the head goes again in full.
        self._head_sent = 0
        if exc.errno not in (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN):
            self._next_connect = time.monotonic() + RECONNECT_INTERVAL_S

    def _wait_writable(self, deadline: float) -> None:
        import select

        sock = self._sock
        if sock is None:
            return
        remaining = max(0.0, deadline - time.monotonic())
        try:
            select.select([], [sock], [], min(remaining, 0.05))
        except (OSError, ValueError):
            pass

    def _spill_queue(self) -> None:
        if not self._queue:
            return
        if self._head_sent and self._sock is not None:
            # The agent has half of the head; closing makes it drop that half.
            self._sock.close()
            self._sock = None
        self._spill(list(self._queue))
        self._queue.clear()
        self._queued_bytes = 0
        self._head_sent = 0

    def _spill(self, chunks: list[bytes]) -> None:
        chunks = [c for c in chunks if not c.startswith(b'{"t":"hello"')]
        if not chunks or not self._spool_dir:
            return
        folder = inbox_dir(self._spool_dir)
        name = f"{gethostname()}-{self._pid}-{time.time_ns()}.jsonl"
        try:
            os.makedirs(folder, exist_ok=True)
            tmp = os.path.join(folder, "." + name)
            with open(tmp, "ab") as handle:
                for chunk in chunks:
                    handle.write(chunk)
            os.replace(tmp, os.path.join(folder, name))
        except OSError:
            pass  # a full or read-only disk must never fail the task
