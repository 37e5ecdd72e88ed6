"""Where the kit keeps things on disk."""

from __future__ import annotations

import os
from collections.abc import Mapping

from mfotel.settings import MFOTEL_SPOOL_DIR


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


def spool_dir(environ: Mapping[str, str], local_root: str | None = None, cwd: str = ".") -> str:
    """MFOTEL_SPOOL_DIR, else ``.mfotel/spool`` under the local datastore root."""
    configured = MFOTEL_SPOOL_DIR.get_str(environ)
    if configured:
        return os.path.abspath(configured)
    root = local_root or environ.get("METAFLOW_DATASTORE_SYSROOT_LOCAL") or find_local_root(cwd)
    return os.path.join(os.path.abspath(root), ".mfotel", "spool")
