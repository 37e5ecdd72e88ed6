"""A container attempt's leftovers go to the datastore, not down with the container's disk.

What an attempt in a container keeps on its own disk dies with it: requests its agent could
not send (the spool) and the ids of the lines a collector accepted (the ledger, which lets a
later ``mfotel backfill`` send only the rest). When the attempt ends, both go to the flow's
datastore, beside Metaflow's own folders, under the same names a local run uses below its
``.metaflow`` folder:

- ``.mfotel/delivered/<Flow>/<run>/<step>/<task>/<attempt>.uids``
- ``.mfotel/spool/<Flow>/<run>/<step>/<task>/<attempt>/<signal>/<request>.pb`` (and
  ``inbox/<messages>.jsonl``), which ``mfotel replay --datastore s3|gs|azure`` sends.

The task process hands off with the storage client Metaflow already made for it; an agent
whose task was killed does it itself, with Metaflow's storage class for the datastore. A file
is deleted here only once the datastore has it. Standard library only, apart from Metaflow's
storage, which the task's environment has.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from typing import Any

from mfotel._internal.paths import delivered_dir

PREFIX = ".mfotel"
SPOOL_FOLDERS = ("traces", "logs", "metrics", "inbox")


def _files(
    state_dir: str, spool_dir: str, pathspec: str, attempt: int
) -> Iterator[tuple[str, str]]:
    """(local path, datastore key) of everything worth keeping."""
    ledger = delivered_dir(state_dir)
    for folder, _, names in os.walk(ledger):
        for name in names:
            if name.endswith(".uids") or name == "trace":
                path = os.path.join(folder, name)
                rel = os.path.relpath(path, ledger).replace(os.sep, "/")
                yield path, f"{PREFIX}/delivered/{rel}"
    for sub in SPOOL_FOLDERS:
        folder = os.path.join(spool_dir, sub)
        try:
            names = sorted(os.listdir(folder))
        except OSError:
            continue
        for name in names:
            if name.startswith(".") or not name.endswith((".pb", ".jsonl")):
                continue
            yield os.path.join(folder, name), f"{PREFIX}/spool/{pathspec}/{attempt}/{sub}/{name}"


def hand_off(storage: Any, state_dir: str, spool_dir: str, pathspec: str, attempt: int) -> int:
    """Put the attempt's ledger and spool into ``storage`` (a Metaflow ``DataStoreStorage``);
    returns how many files went. Raises what the storage raises; then nothing was deleted."""
    found = list(_files(state_dir, spool_dir, pathspec, attempt))
    if not found:
        return 0
    contents = []
    for path, key in found:
        with open(path, "rb") as handle:
            contents.append((key, io.BytesIO(handle.read())))
    storage.save_bytes(iter(contents), overwrite=True, len_hint=len(contents))
    for path, _ in found:
        try:
            os.unlink(path)
        except OSError:
            pass
    return len(found)


def storage_for(datastore: str, root: str) -> Any:
    """Metaflow's storage for ``datastore`` at ``root`` (in a process that has not made one)."""
    from metaflow.plugins import DATASTORES

    for storage in DATASTORES:
        if datastore == storage.TYPE:
            return storage(root)
    raise ValueError(f"Metaflow has no datastore {datastore!r}")
