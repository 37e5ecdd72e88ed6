"""A container attempt's spool and ledger go to the datastore, and only then leave its disk."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from mfotel._internal.handoff import hand_off


class Storage:
    """Metaflow's DataStoreStorage.save_bytes, recorded (or failing, as a full bucket does)."""

    def __init__(self, fail: bool = False) -> None:
        self.saved: dict[str, bytes] = {}
        self.fail = fail

    def save_bytes(self, items: Any, overwrite: bool = False, len_hint: int = 0) -> None:
        if self.fail:
            raise OSError("AccessDenied: the bucket refuses writes")
        assert overwrite
        for key, handle in items:
            assert isinstance(handle, io.BytesIO)
            self.saved[key] = handle.getvalue()


def _attempt(tmp_path: Path) -> tuple[Path, Path]:
    state, spool = tmp_path / "state", tmp_path / "state" / "spool"
    ledger = state / "delivered" / "F" / "argo-1" / "start" / "t-1"
    ledger.mkdir(parents=True)
    (ledger / "0.uids").write_text("a\nb\n")
    (state / "delivered" / "F" / "argo-1" / "trace").write_text("ab" * 16 + "\n")
    (spool / "logs").mkdir(parents=True)
    (spool / "logs" / "0001-7-000000-3.pb").write_bytes(b"\x0a\x00")
    (spool / "logs" / ".0002-7-000001-3.pb").write_bytes(b"half written")
    return state, spool


def test_ledger_trace_note_and_spool_go_under_their_keys_then_leave(tmp_path: Path) -> None:
    """Keys mirror the local layout below .mfotel/; written files are deleted, a file still
    being written (dot-named) is left alone."""
    state, spool = _attempt(tmp_path)
    storage = Storage()
    assert hand_off(storage, str(state), str(spool), "F/argo-1/start/t-1", 0) == 3
    assert storage.saved == {
        ".mfotel/delivered/F/argo-1/start/t-1/0.uids": b"a\nb\n",
        ".mfotel/delivered/F/argo-1/trace": ("ab" * 16 + "\n").encode(),
        ".mfotel/spool/F/argo-1/start/t-1/0/logs/0001-7-000000-3.pb": b"\x0a\x00",
    }
    assert [p.name for p in spool.rglob("*") if p.is_file()] == [".0002-7-000001-3.pb"]
    assert not list((state / "delivered").rglob("*.uids"))


def test_a_datastore_that_refuses_keeps_everything_here(tmp_path: Path) -> None:
    """The storage's error reaches the caller (who says it in one line); nothing is deleted."""
    state, spool = _attempt(tmp_path)
    with pytest.raises(OSError, match="AccessDenied"):
        hand_off(Storage(fail=True), str(state), str(spool), "F/argo-1/start/t-1", 0)
    assert (spool / "logs" / "0001-7-000000-3.pb").exists()
    assert (state / "delivered" / "F" / "argo-1" / "start" / "t-1" / "0.uids").exists()
