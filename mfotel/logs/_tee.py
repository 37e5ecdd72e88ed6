"""Capture every line a task writes to file descriptors 1 and 2.

The task's stdout and stderr are pointed at two pipes read by a forked tee process. For each
line the tee mints Metaflow's own mflog header (timestamp and line id) and writes the line on
to the runtime *already structured*, with the should-persist mark, so the runtime persists it
exactly as it would have, under the id the tee chose; the console shows the same text as
without mfotel. The same line, with the same id and timestamp, goes to the agent as a log
record. A live record and a later backfill of the persisted line therefore reconcile by id.

Why a process and not a thread: a crashing task (a segfault, ``os._exit``, SIGKILL) takes its
threads with it, and lines still in a pipe would be lost from Metaflow's own logs. The tee
outlives the task, drains the pipes to EOF, and the runtime waits for it naturally because
it holds the runtime's pipes until it exits. It is forked, not executed, so it costs no
interpreter start-up; it touches only ``os``-level calls and modules imported before the fork.
"""

from __future__ import annotations

import json
import os
import selectors
import sys
from typing import Callable

from mfotel._internal.ipc import AgentClient
from mfotel.logs._mflog import header, new_uid, now_us_ns

CHUNK = 65536
MAX_PARTIAL = 1024 * 1024  # a "line" this long without a newline is emitted as it is
_STREAMS = ((1, "stdout"), (2, "stderr"))


def start(make_client: Callable[[], AgentClient], context_json: bytes) -> int | None:
    """Fork the tee and point fds 1 and 2 at it; returns its pid, or None if it could not."""
    if not hasattr(os, "fork"):
        return None
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    pipes: list[tuple[int, int]] = []
    originals: list[int] = []
    try:
        for fd, _ in _STREAMS:
            pipes.append(os.pipe())
            originals.append(os.dup(fd))
        pid = os.fork()
    except OSError:
        for r, w in pipes:
            os.close(r)
            os.close(w)
        for o in originals:
            os.close(o)
        return None
    if pid == 0:  # the tee
        code = 0
        readers = [r for r, _ in pipes]
        try:
            for _, w in pipes:
                os.close(w)
            _run(readers, originals, make_client, context_json)
        except BaseException:
            # Whatever broke, the task's output must still reach Metaflow.
            code = 1
            _report_crash()
            _passthrough(readers, originals)
        finally:
            os._exit(code)
    for (fd, _), (r, w), original in zip(_STREAMS, pipes, originals):
        os.dup2(w, fd)
        os.close(w)
        os.close(r)
        os.close(original)
    return pid


def _report_crash() -> None:
    if os.environ.get("MFOTEL_DEBUG", "").lower() in ("1", "true", "yes", "on"):
        import traceback

        with open(f"/tmp/mfotel-tee-{os.getpid()}.err", "w") as handle:
            traceback.print_exc(file=handle)


def _write_all(fd: int, data: bytes) -> bool:
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except InterruptedError:
            continue
        except OSError:
            return False  # the runtime went away; keep feeding the agent
        view = view[written:]
    return True


def _passthrough(readers: list[int], outputs: list[int]) -> None:
    """Copy the pipes to the runtime unchanged until EOF (the runtime then mints line ids)."""
    selector = selectors.DefaultSelector()
    route = dict(zip(readers, outputs))
    for reader in readers:
        try:
            selector.register(reader, selectors.EVENT_READ)
        except (KeyError, ValueError, OSError):
            pass
    while selector.get_map():
        for key, _ in selector.select():
            try:
                chunk = os.read(int(key.fd), CHUNK)
            except InterruptedError:
                continue
            except OSError:
                chunk = b""
            if chunk:
                _write_all(route[int(key.fd)], chunk)
            else:
                selector.unregister(key.fd)


def _run(
    readers: list[int],
    outputs: list[int],
    make_client: Callable[[], AgentClient],
    context_json: bytes,
) -> None:
    client = make_client()
    selector = selectors.DefaultSelector()
    partial: dict[int, bytes] = {}
    route: dict[int, tuple[int, str]] = {}
    for reader, output, (_, stream) in zip(readers, outputs, _STREAMS):
        selector.register(reader, selectors.EVENT_READ)
        partial[reader] = b""
        route[reader] = (output, stream)
    console_ok = {output: True for output in outputs}
    prefix = b'{"t":"log","ctx":' + context_json + b',"lines":'
    open_readers = len(readers)
    while open_readers:
        for key, _ in selector.select():
            reader = int(key.fd)
            try:
                chunk = os.read(reader, CHUNK)
            except InterruptedError:
                continue
            output, stream = route[reader]
            if not chunk:
                selector.unregister(reader)
                open_readers -= 1
                lines = [partial[reader]] if partial[reader] else []
                partial[reader] = b""
            else:
                data = partial[reader] + chunk
                lines = data.split(b"\n")
                rest = lines.pop()
                if len(rest) > MAX_PARTIAL:
                    lines.append(rest)
                    rest = b""
                partial[reader] = rest
            if not lines:
                continue
            time_ns = now_us_ns()
            out: list[bytes] = []
            records: list[list[object]] = []
            for line in lines:
                uid = new_uid()
                out.append(header(time_ns, b"task", uid, True) + line + b"\n")
                text = line[:-1] if line.endswith(b"\r") else line
                records.append([uid, time_ns, stream, text.decode("utf-8", "replace")])
            if console_ok[output]:
                console_ok[output] = _write_all(output, b"".join(out))
            try:
                encoded = json.dumps(records, ensure_ascii=False).encode("utf-8", "replace")
                client.send_raw(prefix + encoded + b"}\n")
            except Exception:  # telemetry trouble never stops the forwarding
                pass
    client.send_raw(b'{"t":"logs_closed","ctx":' + context_json + b"}\n")
    client.close(timeout_s=2.0)
