"""Turning a task's raw output into mflog lines and log-record messages.

Shared by the run's log relay and the per-task tee: both read a task's stdout or stderr in
chunks and, for each complete line, mint Metaflow's own mflog header (timestamp and line id,
with the should-persist mark) for the runtime, and a record for the agent with the same id
and timestamp. Only C-level modules are imported: this runs in lean ``python -I -S``
processes whose start-up time every run pays.
"""

from __future__ import annotations

from _json import encode_basestring  # json's C encoder, without json's import of re

from mfotel.logs._mflog import header, new_uid, now_us_ns

MAX_PARTIAL = 1024 * 1024  # a "line" this long without a newline is emitted as it is


class Stream:
    """One of a task's two output streams on its way to the runtime and the agent."""

    __slots__ = ("closed", "message_prefix", "name", "output", "partial", "pending")

    def __init__(self, output: int, name: str, context_json: bytes) -> None:
        self.output = output
        self.name = name
        self.partial = b""
        self.pending = b""  # mflog lines the runtime has not taken yet
        self.closed = False
        self.message_prefix = b'{"t":"log","ctx":' + context_json + b',"lines":['

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
        stream = self.name
        console: list[bytes] = [self.pending]
        records: list[str] = []
        for line in lines:
            uid = new_uid()
            console.append(header(time_ns, b"task", uid, True) + line + b"\n")
            text = (line[:-1] if line.endswith(b"\r") else line).decode("utf-8", "replace")
            records.append(f'["{uid}",{time_ns},"{stream}",{encode_basestring(text)}]')
        self.pending = b"".join(console)
        return self.message_prefix + ",".join(records).encode("utf-8", "replace") + b"]}\n"


def closed_message(context_json: bytes) -> bytes:
    return b'{"t":"logs_closed","ctx":' + context_json + b"}\n"
