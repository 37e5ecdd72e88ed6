"""Metaflow's mflog line format, written and read without importing Metaflow.

A persisted line is ``[MFLOG|0|2026-11-22T10:00:00.123456Z|task|<id>]<text>``; a leading
``[!`` asks the runtime to persist a line it receives already structured. The timestamp has
microseconds, so a record's time is the header's time truncated to the microsecond: the live
path and a later backfill of the same line agree to the nanosecond.
"""

from __future__ import annotations

import os
import time

PERSIST_PREFIX = b"[![MFLOG|0|"
_PREFIX = b"[MFLOG|0|"


class MflogLine:
    """One parsed line. (Not a NamedTuple: the tee must not pay for importing typing.)"""

    __slots__ = ("should_persist", "source", "text", "time_ns", "uid")

    def __init__(
        self, time_ns: int, source: str, uid: str, text: bytes, should_persist: bool
    ) -> None:
        self.time_ns = time_ns
        self.source = source
        self.uid = uid
        self.text = text
        self.should_persist = should_persist


def new_uid() -> str:
    """A random (version 4) UUID as text, the form Metaflow's own line ids take."""
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40
    raw[8] = (raw[8] & 0x3F) | 0x80
    return uuid_text(raw.hex())


def stream_id_prefix() -> str:
    """The first 24 characters of the ids of one stream's lines, ``xxxxxxxx-xxxx-4xxx-yxxx-``
    (random, with a version 4 UUID's marks); a 12-digit hex sequence number completes each."""
    raw = bytearray(os.urandom(10))
    raw[6] = (raw[6] & 0x0F) | 0x40
    raw[8] = (raw[8] & 0x3F) | 0x80
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-"


SEQ_DIGITS = 12  # a minted id: the stream's 24-character prefix, then this many hex digits


def sequential_id(prefix: str, seq: int) -> str:
    """Line ``seq`` of the stream whose ids start with ``prefix`` (the carriers and the agent
    write the same with bytes formatting, on their hot paths)."""
    return f"{prefix}{seq:012x}"


def split_sequential(uid: str) -> tuple[str, int] | None:
    """(prefix, sequence number) of an id shaped like a minted one, else None. (Any UUID has
    that shape; only ids recorded as a range are ever looked up as one.)"""
    if len(uid) <= SEQ_DIGITS:
        return None
    try:
        return uid[:-SEQ_DIGITS], int(uid[-SEQ_DIGITS:], 16)
    except ValueError:
        return None


def uuid_text(h: str) -> str:
    """32 hex digits in the 8-4-4-4-12 form of a UUID."""
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def now_us_ns() -> int:
    """Now, truncated to the microsecond that the mflog header can hold, in nanoseconds."""
    return time.time_ns() // 1000 * 1000


def format_timestamp(time_ns: int) -> bytes:
    seconds, nanos = divmod(time_ns, 1_000_000_000)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    return f"{stamp}.{nanos // 1000:06d}Z".encode("ascii")


def header(time_ns: int, source: bytes, uid: str, should_persist: bool) -> bytes:
    prefix = PERSIST_PREFIX if should_persist else _PREFIX
    return b"".join((prefix, format_timestamp(time_ns), b"|", source, b"|", uid.encode(), b"]"))


_SECONDS: dict[bytes, int] = {}  # "2026-11-22T10:00:00" → ns; lines of a log share seconds


def parse_timestamp(stamp: bytes) -> int | None:
    """``2026-11-22T10:00:00.123456`` (UTC, no Z) → ns since the epoch, or None."""
    whole, _, frac = stamp.partition(b".")
    seconds = _SECONDS.get(whole)
    try:
        if seconds is None:
            import calendar  # only readers parse; the tee, which only writes, never imports it

            parsed = time.strptime(whole.decode("ascii"), "%Y-%m-%dT%H:%M:%S")
            seconds = calendar.timegm(parsed) * 1_000_000_000
            if len(_SECONDS) >= 4096:
                _SECONDS.clear()
            _SECONDS[whole] = seconds
        micros = int((frac + b"000000")[:6]) if frac else 0
    except (ValueError, UnicodeDecodeError):
        return None
    if micros < 0:  # int() accepts a sign
        return None
    return seconds + micros * 1000


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
