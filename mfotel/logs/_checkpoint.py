"""``mfotel backfill``'s checkpoints: how far into each persisted log a collector has taken.

One JSON file per run, ``<state>/backfill/<Flow>/<run>.json``::

    {"version": 1, "files": {"s3://bucket/metaflow/ProbeFlow/17…/fan/3/0.task_stdout.log": 4096}}

Each value is the byte offset just past the last line a collector accepted. A second backfill
starts every file there, so it sends nothing twice. Deleting the file (or
``mfotel backfill --reset``) makes the next backfill start over. Files are replaced
atomically; a crash between a collector's acceptance and the write re-sends at most that
one request.
"""

from __future__ import annotations

import json
import os
import threading
import time

VERSION = 1
SAVE_EVERY_S = 1.0


class CheckpointError(Exception):
    """A checkpoint file that cannot be read or written; the message names the fix."""


class Checkpoints:
    def __init__(self, folder: str) -> None:
        self.folder = folder
        self._runs: dict[tuple[str, str], dict[str, int]] = {}
        self._dirty: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        self._saved_at = time.monotonic()

    def path(self, flow: str, run: str) -> str:
        return os.path.join(self.folder, flow, f"{run}.json")

    def offset(self, flow: str, run: str, url: str) -> int:
        with self._lock:
            return self._load(flow, run).get(url, 0)

    def advance(self, flow: str, run: str, url: str, offset: int) -> None:
        with self._lock:
            files = self._load(flow, run)
            if offset > files.get(url, 0):
                files[url] = offset
                self._dirty.add((flow, run))
        if time.monotonic() - self._saved_at >= SAVE_EVERY_S:
            self.save()

    def save(self) -> None:
        with self._lock:
            dirty, self._dirty = self._dirty, set()
            self._saved_at = time.monotonic()
            for flow, run in dirty:
                self._write(flow, run, self._runs[(flow, run)])

    def reset(self, flow: str, run: str, under: str | None = None) -> int:
        """Forget the offsets of a run (or of the files whose address contains ``under``);
        returns how many were forgotten."""
        with self._lock:
            files = self._load(flow, run)
            gone = [url for url in files if under is None or under in url]
            for url in gone:
                del files[url]
            if files:
                self._write(flow, run, files)
            else:
                try:
                    os.unlink(self.path(flow, run))
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    raise CheckpointError(
                        f"cannot remove {self.path(flow, run)}: {exc.strerror}: remove it by hand"
                    ) from None
            self._dirty.discard((flow, run))
            return len(gone)

    def _load(self, flow: str, run: str) -> dict[str, int]:
        files = self._runs.get((flow, run))
        if files is not None:
            return files
        path = self.path(flow, run)
        try:
            with open(path, encoding="utf-8") as handle:
                data = json.load(handle)
            loaded = data["files"]
            if not isinstance(loaded, dict):
                raise TypeError
            files = {str(k): int(v) for k, v in loaded.items()}
        except FileNotFoundError:
            files = {}
        except (OSError, ValueError, TypeError, KeyError):
            raise CheckpointError(
                f"checkpoint {path} is unreadable: delete it (or run `mfotel backfill --reset "
                f"{flow}/{run}`) to start this run over"
            ) from None
        self._runs[(flow, run)] = files
        return files

    def _write(self, flow: str, run: str, files: dict[str, int]) -> None:
        path = self.path(flow, run)
        tmp = f"{path}.{os.getpid()}.tmp"
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(tmp, "w", encoding="utf-8") as handle:
                json.dump({"version": VERSION, "files": files}, handle, indent=1, sort_keys=True)
            os.replace(tmp, path)
        except OSError as exc:
            raise CheckpointError(
                f"cannot write checkpoint {path}: {exc.strerror}: make its folder writable "
                "or set MFOTEL_STATE_DIR"
            ) from None
