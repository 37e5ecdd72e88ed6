"""Capture every line a task writes to file descriptors 1 and 2.

The task's stdout and stderr are pointed at two pipes read by a tee process. For each line
the tee mints Metaflow's own mflog header (timestamp and line id) and writes the line on to
the runtime *already structured*, with the should-persist mark, so the runtime persists it
exactly as it would have, under the id the tee chose; the console shows the same text as
without mfotel. The same line, with the same id and timestamp, goes to the agent as a log
record. A live record and a later backfill of the persisted line therefore reconcile by id.

Why a process and not a thread: a crashing task (a segfault, ``os._exit``, SIGKILL) takes its
threads with it, and lines still in a pipe would be lost from Metaflow's own logs. The tee
outlives the task, drains the pipes to EOF, and the runtime waits for it naturally because
it holds the runtime's pipes until it exits.

Why spawned and not forked: a fork of a task (tens of MB after ``import metaflow``) makes the
task pay a copy for every page it writes afterwards, measured at ~20 ms of CPU per task. A
fresh ``python -I -S`` that imports only what it needs costs less, and costs it beside the
task rather than in it. The tee imports nothing heavier than ``socket``.
"""

from __future__ import annotations

import os
import select
import sys

from mfotel.logs._mflog import header, new_uid, now_us_ns

TYPE_CHECKING = False  # typing itself costs the tee ~8 ms to import
if TYPE_CHECKING:
    from collections.abc import Callable

    from mfotel._internal.ipc import AgentClient

CHUNK = 65536
MAX_PARTIAL = 1024 * 1024  # a "line" this long without a newline is emitted as it is
_STREAMS = ((1, "stdout"), (2, "stderr"))
_BOOT = "import sys; sys.path.insert(0, sys.argv[1]); from mfotel.logs._tee import main; main()"


def start(socket_path: str | None, spool_dir: str | None, context_json: bytes) -> int | None:
    """Start the tee and point fds 1 and 2 at it; returns its pid, or None if it could not."""
    import subprocess

    import mfotel

    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    pipes: list[tuple[int, int]] = []
    originals: list[int] = []
    root = os.path.dirname(os.path.dirname(os.path.abspath(mfotel.__file__)))
    try:
        for fd, _ in _STREAMS:
            pipes.append(os.pipe())
            originals.append(os.dup(fd))
        fds = [pipes[0][0], pipes[1][0], originals[0], originals[1]]
        tee = subprocess.Popen(
            [
                sys.executable,
                "-I",
                "-S",
                "-c",
                _BOOT,
                root,
                ",".join(map(str, fds)),
                socket_path or "",
                spool_dir or "",
                context_json.decode("utf-8"),
            ],
            pass_fds=fds,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C for the task must not cut its logs short
        )
    except (OSError, ValueError, subprocess.SubprocessError):
        for r, w in pipes:
            os.close(r)
            os.close(w)
        for o in originals:
            os.close(o)
        return None
    for (fd, _), (r, w), original in zip(_STREAMS, pipes, originals):
        os.dup2(w, fd)
        os.close(w)
        os.close(r)
        os.close(original)
    # The tee outlives this process by design; nobody here waits for it.
    tee.returncode = 0
    return tee.pid


def main() -> None:
    """The tee process: ``python -I -S -c _BOOT ROOT FDS SOCKET SPOOL CONTEXT``."""
    _, _, fds_text, socket_path, spool_dir, context = sys.argv
    readers_and_outputs = [int(x) for x in fds_text.split(",")]
    readers, outputs = readers_and_outputs[:2], readers_and_outputs[2:]
    try:
        from mfotel._internal.ipc import AgentClient

        def make_client() -> AgentClient:
            return AgentClient(socket_path or None, spool_dir or None, "tee")

        _run(readers, outputs, make_client, context.encode("utf-8"))
    except BaseException:
        # Whatever broke, the task's output must still reach Metaflow.
        _report_crash()
        _passthrough(readers, outputs)
        os._exit(1)
    os._exit(0)


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
    poller = select.poll()
    route = dict(zip(readers, outputs))
    for reader in readers:
        poller.register(reader, select.POLLIN)
    while route:
        for reader, _ in poller.poll():
            try:
                chunk = os.read(reader, CHUNK)
            except InterruptedError:
                continue
            except OSError:
                chunk = b""
            if chunk:
                _write_all(route[reader], chunk)
            else:
                poller.unregister(reader)
                del route[reader]


def _run(
    readers: list[int],
    outputs: list[int],
    make_client: Callable[[], AgentClient],
    context_json: bytes,
) -> None:
    from _json import encode_basestring  # json's C encoder, without json's import of re

    client = make_client()
    poller = select.poll()
    partial: dict[int, bytes] = {}
    route: dict[int, tuple[int, str]] = {}
    for reader, output, (_, stream) in zip(readers, outputs, _STREAMS):
        poller.register(reader, select.POLLIN)
        partial[reader] = b""
        route[reader] = (output, stream)
    console_ok = {output: True for output in outputs}
    prefix = b'{"t":"log","ctx":' + context_json + b',"lines":'
    open_readers = len(readers)
    while open_readers:
        for reader, _ in poller.poll():
            try:
                chunk = os.read(reader, CHUNK)
            except InterruptedError:
                continue
            output, stream = route[reader]
            if not chunk:
                poller.unregister(reader)
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
            records: list[tuple[str, int, str, str]] = []
            for line in lines:
                uid = new_uid()
                out.append(header(time_ns, b"task", uid, True) + line + b"\n")
                text = line[:-1] if line.endswith(b"\r") else line
                records.append((uid, time_ns, stream, text.decode("utf-8", "replace")))
            if console_ok[output]:
                console_ok[output] = _write_all(output, b"".join(out))
            try:
                encoded = ",".join(
                    f'["{uid}",{time_ns},"{stream}",{encode_basestring(text)}]'
                    for uid, time_ns, stream, text in records
                ).encode("utf-8", "replace")
                client.send_raw(prefix + b"[" + encoded + b"]}\n")
            except Exception:  # telemetry trouble never stops the forwarding
                pass
    client.send_raw(b'{"t":"logs_closed","ctx":' + context_json + b"}\n")
    client.close(timeout_s=2.0)
