"""The run's log relay: one process that tees the output of every task on this host.

A per-task tee costs each task a Python start-up (~15-20 ms of CPU); the relay pays it once
per run. A task hands the relay its two output pipes and the runtime's two pipes over a Unix
socket (``SCM_RIGHTS``), waits for a one-byte acknowledgement, and only then points its
stdout and stderr at the pipes. If the relay does not answer, the task starts its own tee
(:mod:`mfotel.logs._tee`), so a missing or stuck relay never costs a line.

The relay never blocks on one task: writes to the runtime's pipes are non-blocking, and what
the runtime has not taken yet waits per stream. When both of a task's pipes reach EOF and its
lines have all been handed on, the relay closes the task's runtime pipes (which is how the
runtime learns that the task ended) and tells the agent the task's logs are complete.

Like the tee it imports only C-level modules, and it outlives the tasks it serves: it leaves
when the runtime is gone and no task is left.
"""

from __future__ import annotations

import os
import select
import sys
from _socket import AF_UNIX, CMSG_LEN, SCM_RIGHTS, SOCK_STREAM, SOL_SOCKET
from _socket import socket as _Socket
from array import array

from mfotel._internal.proc import parent_gone
from mfotel.logs._lines import Stream, closed_message

TYPE_CHECKING = False  # typing itself costs ~8 ms to import
if TYPE_CHECKING:
    from mfotel._internal.ipc import AgentClient

CHUNK = 65536
# While this much of a task's output waits for the runtime, the relay stops reading that
# task's pipe, so a task that prints faster than Metaflow takes its lines waits in its own
# writes, as it would without mfotel, and the relay's memory stays bounded.
MAX_PENDING = 1 << 20
MAX_HELLO = 1 << 20
IDLE_POLL_MS = 500
PUMP_POLL_MS = 10  # while messages wait for the agent
_NAMES = ("stdout", "stderr")


class _Task:
    __slots__ = ("context_json", "streams")

    def __init__(self, context_json: bytes, streams: list[Stream]) -> None:
        self.context_json = context_json
        self.streams = streams


class Relay:
    def __init__(self, listen_path: str, client: AgentClient, parent_pid: int) -> None:
        self.client = client
        self.parent_pid = parent_pid
        self.listener = _Socket(AF_UNIX, SOCK_STREAM)
        self.listener.bind(listen_path)
        os.chmod(listen_path, 0o600)
        self.listener.listen(128)
        self.listener.setblocking(False)
        self.poller = select.poll()
        self.poller.register(self.listener.fileno(), select.POLLIN)
        self.readers: dict[int, tuple[_Task, Stream]] = {}
        self.blocked: dict[int, tuple[_Task, Stream]] = {}  # output fd -> stream with pending
        self.paused: dict[int, int] = {}  # output fd -> the reader not read until it drains
        self.tasks: set[_Task] = set()

    def serve(self) -> None:
        while self.tasks or not parent_gone(self.parent_pid):
            # While messages wait for the agent, come back soon to push them on.
            timeout = PUMP_POLL_MS if self.client.queued else IDLE_POLL_MS
            for fd, events in self.poller.poll(timeout):
                try:
                    if events & select.POLLNVAL:
                        self.poller.unregister(fd)  # closed under us; nothing left to serve
                    elif fd == self.listener.fileno():
                        self._accept()
                    elif fd in self.readers:
                        self._read(fd)
                    elif fd in self.blocked:
                        self._flush(*self.blocked[fd])
                except Exception:
                    # The relay serves every task of the run: one task's trouble must not
                    # stop it. (Per-chunk trouble is already handled in _read.)
                    pass
            if self.client.queued:
                self.client.pump()

    def _accept(self) -> None:
        while True:
            try:
                # The C socket's accept: a bare fd.
                fd, _ = self.listener._accept()  # type: ignore[attr-defined]
            except OSError:  # BlockingIOError included: nothing more to accept
                return
            conn = _Socket(AF_UNIX, SOCK_STREAM, 0, fd)
            try:
                self._register(conn)
            except Exception:
                pass  # no acknowledgement: the task falls back to its own tee
            finally:
                conn.close()

    def _register(self, conn: _Socket) -> None:
        conn.settimeout(0.5)  # a hand-over is one message, sent right after connecting
        data, ancdata, _, _ = conn.recvmsg(MAX_HELLO, CMSG_LEN(4 * array("i").itemsize))
        fds = array("i")
        for level, kind, payload in ancdata:
            if level == SOL_SOCKET and kind == SCM_RIGHTS:
                fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
        if len(fds) != 4 or not data.endswith(b"\n"):
            for fd in fds:
                os.close(fd)
            raise ValueError("a task sent a malformed hand-over")
        reader_out, reader_err, output_out, output_err = fds
        context_json = data[:-1]
        streams = [
            Stream(output_out, _NAMES[0], context_json),
            Stream(output_err, _NAMES[1], context_json),
        ]
        task = _Task(context_json, streams)
        for reader, stream in zip((reader_out, reader_err), streams):
            os.set_blocking(stream.output, False)
            self.readers[reader] = (task, stream)
            self.poller.register(reader, select.POLLIN)
        self.tasks.add(task)
        conn.send(b"1")

    def _read(self, reader: int) -> None:
        task, stream = self.readers[reader]
        try:
            chunk = os.read(reader, CHUNK)
        except InterruptedError:
            return
        except OSError:
            chunk = b""
        try:
            message = stream.feed(chunk)
        except Exception:
            # Could not make lines of it: hand the bytes on unchanged (the runtime then mints
            # their ids) rather than lose them.
            stream.pending += stream.partial
            stream.pending += chunk
            stream.partial = b""
            stream.closed = not chunk
            message = None
        if message is not None:
            try:
                self.client.send_raw(message)
            except Exception:
                pass
        if stream.closed:
            self.poller.unregister(reader)
            del self.readers[reader]
            os.close(reader)
        self._flush(task, stream)
        if not stream.closed and len(stream.pending) > MAX_PENDING:
            self.poller.unregister(reader)  # until the runtime has taken some (see _flush)
            self.paused[stream.output] = reader

    def _flush(self, task: _Task, stream: Stream) -> None:
        """Hand the runtime what it will take now; wait for POLLOUT for the rest."""
        while stream.pending:
            try:
                written = os.write(stream.output, stream.pending)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                stream.pending.clear()  # the runtime is gone; the agent still gets the lines
                break
            del stream.pending[:written]
        output = stream.output
        if output in self.paused and len(stream.pending) <= MAX_PENDING // 2:
            self.poller.register(self.paused.pop(output), select.POLLIN)
        if stream.pending:
            if output not in self.blocked:
                self.blocked[output] = (task, stream)
                self.poller.register(output, select.POLLOUT)
            return
        if output in self.blocked:
            del self.blocked[output]
            self.poller.unregister(output)
        if task in self.tasks and all(s.closed and not s.pending for s in task.streams):
            self.tasks.discard(task)
            try:
                self.client.send_raw(closed_message(task.context_json))
                # With no agent to take them, this task's lines go to the spool now, before
                # the runtime learns the task ended (below), not whenever the relay exits.
                self.client.spill_if_disconnected()
            except Exception:
                pass
            for finished in task.streams:
                os.close(finished.output)  # the runtime sees its pipes close: the task is over
                finished.output = -1


def main() -> None:
    """``python -I -S -c _BOOT ROOT LISTEN_PATH AGENT_SOCKET SPOOL_DIR PARENT_PID``."""
    from mfotel._internal.ipc import AgentClient

    _, listen_path, socket_path, spool_dir, parent = sys.argv
    client = AgentClient(socket_path or None, spool_dir or None, "relay")
    relay = Relay(listen_path, client, int(parent))
    try:
        relay.serve()
    finally:
        client.close(timeout_s=2.0)
        try:
            os.unlink(listen_path)
        except OSError:
            pass


def start(listen_path: str, socket_path: str, spool_dir: str) -> int | None:
    """Start the relay for this run (from the runtime process); returns its pid."""
    from mfotel._internal.proc import spawn_lean

    try:
        return spawn_lean(
            "mfotel.logs._relay", [listen_path, socket_path, spool_dir, str(os.getpid())]
        )
    except OSError:
        return None


def hand_over(listen_path: str, context_json: bytes, fds: list[int], timeout_s: float) -> bool:
    """From a task: give the relay our pipes; True once it has acknowledged them."""
    sock = _Socket(AF_UNIX, SOCK_STREAM)
    try:
        sock.settimeout(timeout_s)
        sock.connect(listen_path)
        sock.sendmsg([context_json + b"\n"], [(SOL_SOCKET, SCM_RIGHTS, array("i", fds).tobytes())])
        return sock.recv(1) == b"1"
    except OSError:
        return False
    finally:
        sock.close()
