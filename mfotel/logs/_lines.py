"""Turning a task's raw output into mflog lines and log-record messages.

Shared by the run's log relay and the per-task tee: both read a task's stdout or stderr in
chunks and, for each complete line, mint Metaflow's own mflog header (timestamp and line id,
with the should-persist mark) for the runtime, and a record for the agent with the same id
and timestamp. Only C-level modules are imported: this runs in lean ``python -I -S``
processes whose start-up time every run pays.
"""

from __future__ import annotations

from _json import encode_basestring  # json's C encoder, without json's import of re

from mfotel.logs._mflog import (
    PERSIST_PREFIX,
    format_timestamp,
    now_us_ns,
    sequential_id,
    stream_id_prefix,
)

MAX_PARTIAL = 1024 * 1024  # a "line" this long without a newline is emitted as it is


class Stream:
    """One of a task's two output streams on its way to the runtime and the agent.

    Each chunk read becomes, for the runtime, one mflog line per line (Metaflow's header with
    the should-persist mark, the chunk's time, the line's id), and for the agent one
    ``lines`` message (see :mod:`mfotel._internal.ipc`): the chunk's text, its time, and the
    id of its first line. Line ids are this stream's random prefix and a 12-digit hex
    sequence number, so the agent knows every id of a chunk from the first one, and a
    persisted line's id says which stream and chunk it came from."""

    __slots__ = ("closed", "head", "message_prefix", "name", "output", "partial", "pending", "seq")

    def __init__(self, output: int, name: str, context_json: bytes) -> None:
        self.output = output
        self.name = name
        self.partial = b""
        # mflog lines the runtime has not taken yet (a bytearray: appending at the end and
        # deleting what was written from the front are both cheap)
        self.pending = bytearray()
        self.closed = False
        self.seq = 0
        prefix = stream_id_prefix()
        self.head = b"|task|" + prefix.encode("ascii")
        self.message_prefix = (
            b'{"t":"lines","ctx":' + context_json + b',"s":"' + name.encode("ascii") + b'","p":"'
        ) + prefix.encode("ascii")

    def feed(self, chunk: bytes) -> bytes | None:
        """Take a chunk (``b""`` at EOF); queue mflog lines; return the agent message, if any."""
        if chunk:
            lines = (self.partial + chunk).split(b"\n")
            rest = lines.pop()
            if len(rest) > MAX_PARTIAL:
                lines.append(rest)
                rest = b""
            self.partial = rest
        else:
            self.closed = True
            lines = [self.partial] if self.partial else []
            self.partial = b""
        if not lines:
            return None
        time_ns = now_us_ns()
        first = self.seq
        self.seq = first + len(lines)
        head = PERSIST_PREFIX + format_timestamp(time_ns) + self.head
        self.pending += b"".join(
            # sequential_id's format, in bytes: this runs for every line
            [b"%s%012x]%s\n" % (head, seq, line) for seq, line in enumerate(lines, first)]
        )
        text = b"\n".join(lines)
        if b"\r" in text:  # a line's trailing \r is the console's, not the record's
            text = b"\n".join([line[:-1] if line.endswith(b"\r") else line for line in lines])
        body = encode_basestring(text.decode("utf-8", "replace")).encode("utf-8")
        return b'%s","i":%d,"ts":%d,"x":%s}\n' % (self.message_prefix, first, time_ns, body)


def expand(message: dict) -> list[tuple[str, int, str, str]]:  # type: ignore[type-arg]
    """A ``lines`` message's lines: (id, time_ns, stream, text) each (for readers that want
    them one by one; the agent takes the chunk whole)."""
    prefix, first, time_ns, stream = message["p"], message["i"], message["ts"], message["s"]
    return [
        (sequential_id(prefix, first + n), time_ns, stream, text)
        for n, text in enumerate(message["x"].split("\n"))
    ]


def closed_message(context_json: bytes) -> bytes:
    return b'{"t":"logs_closed","ctx":' + context_json + b"}\n"
