"""A container attempt's leftovers go to the datastore, not down with the container's disk.

What an attempt in a container keeps on its own disk dies with it: requests its agent could
not send (the spool) and the ids of the lines a collector accepted (the ledger, which lets a
later ``mfotel backfill`` send only the rest). When the attempt ends, both go to the flow's
datastore, beside Metaflow's own folders, under the names a local run uses below its
``.metaflow`` folder:

- ``.mfotel/delivered/<Flow>/<run>/<step>/<task>/<attempt>.uids`` (and the run's ``trace``)
- ``.mfotel/spool/<Flow>/<run>/<step>/<task>/<attempt>/<signal>/<request>.pb`` (and
  ``inbox/<messages>.jsonl``), which ``mfotel replay --datastore s3|gs|azure`` sends.

Only this attempt's files go: its ledger, and the requests and messages its own processes
wrote (their names carry the writer's pid), so a spool folder shared by several tasks is not
emptied by one of them. The task process hands off with the storage client Metaflow already
made for it; an agent whose task was killed, or stopped waiting, does it itself, with
Metaflow's storage class for the datastore. A file is deleted here only once the datastore
has it. Standard library only, apart from Metaflow's storage, which the task's environment
has.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterator
from typing import Any

from mfotel._internal.paths import delivered_dir

PREFIX = ".mfotel"
SPOOL_FOLDERS = ("traces", "logs", "metrics", "inbox")
BATCH = 64  # files per save, so that a full spool never holds thousands of files open


def _writer(name: str, folder: str) -> int | None:
    """The pid in a spool file's name: ``<time>-<pid>-<seq>-<n>.pb``, or the inbox's
    ``<host>-<pid>-<time>.jsonl``."""
    parts = name.rsplit(".", 1)[0].split("-")
    text = parts[-2] if folder == "inbox" else (parts[1] if len(parts) > 1 else "")
    return int(text) if text.isdigit() else None


def _files(
    state_dir: str, spool_dir: str, pathspec: str, attempt: int, owners: Collection[int] | None
) -> Iterator[tuple[str, str]]:
    """(local path, datastore key) of everything of this attempt worth keeping."""
    ledger = delivered_dir(state_dir)
    flow_run = "/".join(pathspec.split("/")[:2])
    for rel in (f"{pathspec}/{attempt}.uids", f"{flow_run}/trace"):
        path = os.path.join(ledger, *rel.split("/"))
        if os.path.isfile(path):
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
            if owners is not None and _writer(name, sub) not in owners:
                continue
            yield os.path.join(folder, name), f"{PREFIX}/spool/{pathspec}/{attempt}/{sub}/{name}"


def hand_off(
    storage: Any,
    state_dir: str,
    spool_dir: str,
    pathspec: str,
    attempt: int,
    owners: Collection[int] | None = None,
) -> int:
    """Put the attempt's ledger and the spool files ``owners`` (pids) wrote into ``storage``
    (a Metaflow ``DataStoreStorage``); returns how many files went. Raises what the storage
    raises; what it had not stored by then stays here."""
    from mfotel._internal.agent.spool import Spool

    Spool(spool_dir, 0).recover_stale_claims()  # a sender that died gives its request back
    found = list(_files(state_dir, spool_dir, pathspec, attempt, owners))
    for start in range(0, len(found), BATCH):
        batch = found[start : start + BATCH]
        handles = [open(path, "rb") for path, _ in batch]  # noqa: SIM115 - closed below
        try:
            storage.save_bytes(
                iter([(key, handle) for (_, key), handle in zip(batch, handles)]),
                overwrite=True,
                len_hint=len(batch),
            )
        finally:
            for handle in handles:
                handle.close()
        for path, _ in batch:
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
