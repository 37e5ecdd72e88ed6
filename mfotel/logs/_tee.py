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

TYPE_CHECKING = False  # typing itself costs the tee ~8 ms to import
if TYPE_CHECKING:
    from collections.abc import Callable

    from mfotel._internal.ipc import AgentClient

CHUNK = 65536
_STREAMS = ((1, "stdout"), (2, "stderr"))


def start(
    socket_path: str | None,
    spool_dir: str | None,
    context_json: bytes,
    relay_path: str | None = None,
) -> bool:
    """Point fds 1 and 2 at the run's log relay, or at a tee of our own; False if neither."""
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
        fds = [pipes[0][0], pipes[1][0], originals[0], originals[1]]
        handed = False
        if relay_path:
            from mfotel.logs._relay import hand_over

            handed = hand_over(relay_path, context_json, fds, timeout_s=1.0)
        if not handed:
            _spawn(fds, socket_path, spool_dir, context_json)
    except (OSError, ValueError):
        for r, w in pipes:
            os.close(r)
            os.close(w)
        for o in originals:
            os.close(o)
        return False
    for (fd, _), (r, w), original in zip(_STREAMS, pipes, originals):
        os.dup2(w, fd)
        os.close(w)
        os.close(r)
        os.close(original)
    return True


def _spawn(fds: list[int], socket_path: str | None, spool_dir: str | None, ctx: bytes) -> None:
    from mfotel._internal.proc import spawn_lean

    args = [",".join(map(str, fds)), socket_path or "", spool_dir or "", ctx.decode("utf-8")]
    spawn_lean("mfotel.logs._tee", args, pass_fds=tuple(fds))


def main() -> None:
    """The tee process: ``python -I -S -c _BOOT ROOT FDS SOCKET SPOOL CONTEXT``."""
    _, fds_text, socket_path, spool_dir, context = sys.argv
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


def _write_all(fd: int, data: bytes | bytearray) -> bool:
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
    from mfotel.logs._lines import Stream, closed_message

    client = make_client()
    poller = select.poll()
    streams: dict[int, Stream] = {}
    for reader, output, (_, name) in zip(readers, outputs, _STREAMS):
        poller.register(reader, select.POLLIN)
        streams[reader] = Stream(output, name, context_json)
    console_ok = {output: True for output in outputs}
    while streams:
        for reader, _ in poller.poll():
            try:
                chunk = os.read(reader, CHUNK)
            except InterruptedError:
                continue
            stream = streams[reader]
            message = stream.feed(chunk)
            if stream.pending:
                if console_ok[stream.output]:
                    console_ok[stream.output] = _write_all(stream.output, stream.pending)
                stream.pending.clear()
            if message is not None:
                try:
                    client.send_raw(message)
                except Exception:  # telemetry trouble never stops the forwarding
                    pass
            if stream.closed:
                poller.unregister(reader)
                del streams[reader]
    client.send_raw(closed_message(context_json))
    client.close(timeout_s=2.0)
