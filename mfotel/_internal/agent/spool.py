"""The on-disk spool: telemetry that could not be sent yet.

Layout under the spool folder:

- ``traces/``, ``logs/``, ``metrics/``: one file per OTLP export request (``*.pb``, the
  exact protobuf bytes a collector would have received), written atomically.
- ``inbox/``: JSON-line message files written by processes that could not reach an agent.

A sender *claims* a file by renaming it (atomic on one filesystem), so the agent and
``mfotel replay`` never send the same file twice; a file is deleted once sent, and renamed
back if sending failed.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass

SIGNALS = ("traces", "logs", "metrics")
_CLAIM = ".claimed-"
_seq = itertools.count()


@dataclass
class Claimed:
    signal: str
    path: str
    original: str

    def done(self) -> None:
        try:
            os.unlink(self.path)
        except OSError:
            pass

    def release(self) -> None:
        try:
            os.replace(self.path, self.original)
        except OSError:
            pass


class Spool:
    def __init__(self, folder: str, max_bytes: int) -> None:
        self.folder = folder
        self.max_bytes = max_bytes
        self._used: int | None = None
        self.dropped_records = 0

    def used_bytes(self) -> int:
        if self._used is None:
            self._used = sum(os.path.getsize(path) for _, path in self._files())
        return self._used

    def put(self, signal: str, payload: bytes, records: int) -> bool:
        """Write one request; False (and the records counted as dropped) when over the bound."""
        if self.used_bytes() + len(payload) > self.max_bytes:
            self.dropped_records += records
            return False
        folder = os.path.join(self.folder, signal)
        name = f"{time.time_ns():020d}-{os.getpid()}-{next(_seq):06d}-{records}.pb"
        try:
            os.makedirs(folder, exist_ok=True)
            tmp = os.path.join(folder, "." + name)
            with open(tmp, "wb") as handle:
                handle.write(payload)
            os.replace(tmp, os.path.join(folder, name))
        except OSError:
            self.dropped_records += records
            return False
        self._used = self.used_bytes() + len(payload)
        return True

    def recover_stale_claims(self) -> int:
        """Give back requests claimed by a sender that died before finishing; returns how many.

        A claim is ``.claimed-<pid>-<name>``; if that process is gone, nobody will send or
        release the request, so it goes back to the spool under its own name.
        """
        from mfotel._internal.proc import alive

        recovered = 0
        for folder in [os.path.join(self.folder, s) for s in SIGNALS] + [
            os.path.join(self.folder, "inbox")
        ]:
            try:
                names = os.listdir(folder)
            except OSError:
                continue
            for name in names:
                if not name.startswith(_CLAIM):
                    continue
                pid_text, _, original = name[len(_CLAIM) :].partition("-")
                if not pid_text.isdigit() or alive(int(pid_text)):
                    continue
                try:
                    os.rename(os.path.join(folder, name), os.path.join(folder, original))
                    recovered += 1
                except OSError:
                    pass
        self._used = None
        return recovered

    def claim_all(self, owner_pid: int | None = None) -> Iterator[Claimed]:
        """Claim spooled requests oldest first; with ``owner_pid``, only that process's."""
        for signal, path in sorted(self._files(), key=lambda item: os.path.basename(item[1])):
            name = os.path.basename(path)
            if owner_pid is not None and name.split("-")[1:2] != [str(owner_pid)]:
                continue
            claimed = os.path.join(os.path.dirname(path), f"{_CLAIM}{os.getpid()}-{name}")
            try:
                os.rename(path, claimed)
            except OSError:
                continue  # someone else has it
            size = os.path.getsize(claimed)
            if self._used is not None:
                self._used -= size
            yield Claimed(signal, claimed, path)

    @staticmethod
    def records_in(path: str) -> int:
        try:
            return int(os.path.basename(path).rsplit("-", 1)[1].split(".")[0])
        except (IndexError, ValueError):
            return 0

    def claim_inbox(self) -> Iterator[str]:
        folder = os.path.join(self.folder, "inbox")
        try:
            names = sorted(n for n in os.listdir(folder) if n.endswith(".jsonl") and n[0] != ".")
        except OSError:
            return
        for name in names:
            path = os.path.join(folder, name)
            claimed = os.path.join(folder, f"{_CLAIM}{os.getpid()}-{name}")
            try:
                os.rename(path, claimed)
            except OSError:
                continue
            yield claimed

    def pending(self) -> dict[str, int]:
        """Spooled requests per signal, and inbox files, for ``mfotel doctor``."""
        counts = {signal: 0 for signal in SIGNALS}
        for signal, _ in self._files():
            counts[signal] += 1
        try:
            counts["inbox"] = sum(
                1 for n in os.listdir(os.path.join(self.folder, "inbox")) if n.endswith(".jsonl")
            )
        except OSError:
            counts["inbox"] = 0
        return counts

    def _files(self) -> Iterator[tuple[str, str]]:
        for signal in SIGNALS:
            folder = os.path.join(self.folder, signal)
            try:
                names = os.listdir(folder)
            except OSError:
                continue
            for name in names:
                if name.endswith(".pb") and not name.startswith("."):
                    yield signal, os.path.join(folder, name)
