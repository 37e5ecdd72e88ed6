"""Where the kit keeps things on disk."""

from __future__ import annotations

import os
from collections.abc import Mapping

from mfotel.settings import MFOTEL_SPOOL_DIR, MFOTEL_STATE_DIR


def find_local_root(start: str) -> str:
    """Metaflow's local datastore root as a run from ``start`` would find it (``.metaflow``)."""
    folder = os.path.abspath(start)
    while True:
        candidate = os.path.join(folder, ".metaflow")
        if os.path.isdir(candidate):
            return candidate
        parent = os.path.dirname(folder)
        if parent == folder:
            return os.path.join(os.path.abspath(start), ".metaflow")
        folder = parent


def state_dir(environ: Mapping[str, str], local_root: str | None = None, cwd: str = ".") -> str:
    """MFOTEL_STATE_DIR, else ``.mfotel`` under the local datastore root."""
    configured = MFOTEL_STATE_DIR.get_str(environ)
    if configured:
        return os.path.abspath(configured)
    root = local_root or environ.get("METAFLOW_DATASTORE_SYSROOT_LOCAL") or find_local_root(cwd)
    return os.path.join(os.path.abspath(root), ".mfotel")


def spool_dir(environ: Mapping[str, str], local_root: str | None = None, cwd: str = ".") -> str:
    """MFOTEL_SPOOL_DIR, else ``spool`` in the state folder."""
    configured = MFOTEL_SPOOL_DIR.get_str(environ)
    if configured:
        return os.path.abspath(configured)
    return os.path.join(state_dir(environ, local_root, cwd), "spool")


def delivered_dir(state: str) -> str:
    """The ledger of log lines the live path delivered (see :mod:`mfotel.logs._ledger`)."""
    return os.path.join(state, "delivered")


def checkpoint_dir(state: str) -> str:
    """``mfotel backfill``'s checkpoints, one file per run."""
    return os.path.join(state, "backfill")
