"""Metaflow's mflog line format, written and read without importing Metaflow.

A persisted line is ``[MFLOG|0|2026-11-22T10:00:00.123456Z|task|<id>]<text>``; a leading
``[!`` asks the runtime to persist a line it receives already structured. The timestamp has
microseconds, so a record's time is the header's time truncated to the microsecond: the live
path and a later backfill of the same line agree to the nanosecond.
"""

from __future__ import annotations

import calendar
import os
import time
import uuid
from typing import NamedTuple

_PERSIST_PREFIX = b"[![MFLOG|0|"
_PREFIX = b"[MFLOG|0|"


class MflogLine(NamedTuple):
    time_ns: int
    source: str
    uid: str
    text: bytes
    should_persist: bool


def new_uid() -> str:
    return str(uuid.UUID(bytes=os.urandom(16), version=4))


def now_us_ns() -> int:
    """Now, truncated to the microsecond that the mflog header can hold, in nanoseconds."""
    return time.time_ns() // 1000 * 1000


def format_timestamp(time_ns: int) -> bytes:
    seconds, nanos = divmod(time_ns, 1_000_000_000)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    return f"{stamp}.{nanos // 1000:06d}Z".encode("ascii")


def header(time_ns: int, source: bytes, uid: str, should_persist: bool) -> bytes:
    prefix = _PERSIST_PREFIX if should_persist else _PREFIX
    return b"".join((prefix, format_timestamp(time_ns), b"|", source, b"|", uid.encode(), b"]"))


def parse_timestamp(stamp: bytes) -> int | None:
    """``2026-11-22T10:00:00.123456`` (UTC, no Z) → ns since the epoch, or None."""
    try:
        whole, _, frac = stamp.partition(b".")
        parsed = time.strptime(whole.decode("ascii"), "%Y-%m-%dT%H:%M:%S")
        micros = int((frac + b"000000")[:6]) if frac else 0
    except (ValueError, UnicodeDecodeError):
        return None
    return calendar.timegm(parsed) * 1_000_000_000 + micros * 1000


def parse(line: bytes) -> MflogLine | None:
    """Parse one mflog line (without its newline); None when it is not a valid mflog line."""
    should_persist = line.startswith(b"[!")
    start = 2 if should_persist else 0
    if not line.startswith(_PREFIX, start):
        return None
    fields = line[start + len(_PREFIX) :].split(b"|", 2)
    if len(fields) != 3:
        return None
    stamp, source, rest = fields
    uid, sep, text = rest.partition(b"]")
    if not sep or not stamp.endswith(b"Z") or not uid:
        return None
    time_ns = parse_timestamp(stamp[:-1])
    if time_ns is None:
        return None
    try:
        return MflogLine(time_ns, source.decode("ascii"), uid.decode("ascii"), text, should_persist)
    except UnicodeDecodeError:
        return None
