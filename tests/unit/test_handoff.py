"""A container attempt's spool and ledger go to the datastore, and only then leave its disk."""

from __future__ import annotations

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
            self.saved[key] = handle.read()


AGENT, OTHER = 4242, 999999


def _attempt(tmp_path: Path) -> tuple[Path, Path]:
    state, spool = tmp_path / "state", tmp_path / "state" / "spool"
    ledger = state / "delivered" / "F" / "argo-1" / "start" / "t-1"
    ledger.mkdir(parents=True)
    (ledger / "0.uids").write_text("a\nb\n")
    (state / "delivered" / "F" / "argo-1" / "trace").write_text("ab" * 16 + "\n")
    other = state / "delivered" / "F" / "argo-1" / "fan" / "t-2"
    other.mkdir(parents=True)
    (other / "0.uids").write_text("c\n")  # another task's, on a shared volume
    (spool / "logs").mkdir(parents=True)
    (spool / "logs" / f"0001-{AGENT}-000000-3.pb").write_bytes(b"\x0a\x00")
    (spool / "logs" / f".0002-{AGENT}-000001-3.pb").write_bytes(b"half written")
    (spool / "logs" / f"0003-{OTHER}-000000-1.pb").write_bytes(b"another agent's")
    (spool / "inbox").mkdir()
    (spool / "inbox" / f"pod-a-b-{AGENT}-17.jsonl").write_bytes(b'{"t":"event"}\n')
    return state, spool


def test_this_attempts_ledger_trace_note_and_spool_go_then_leave(tmp_path: Path) -> None:
    """Keys mirror the local layout below .mfotel/; what went is deleted; a file still being
    written (dot-named), another writer's request and another attempt's ledger stay."""
    state, spool = _attempt(tmp_path)
    storage = Storage()
    assert hand_off(storage, str(state), str(spool), "F/argo-1/start/t-1", 0, {AGENT}) == 4
    assert storage.saved == {
        ".mfotel/delivered/F/argo-1/start/t-1/0.uids": b"a\nb\n",
        ".mfotel/delivered/F/argo-1/trace": ("ab" * 16 + "\n").encode(),
        f".mfotel/spool/F/argo-1/start/t-1/0/logs/0001-{AGENT}-000000-3.pb": b"\x0a\x00",
        f".mfotel/spool/F/argo-1/start/t-1/0/inbox/pod-a-b-{AGENT}-17.jsonl": b'{"t":"event"}\n',
    }
    left = sorted(p.name for p in spool.rglob("*") if p.is_file())
    assert left == [f".0002-{AGENT}-000001-3.pb", f"0003-{OTHER}-000000-1.pb"]
    assert [p.parent.name for p in (state / "delivered").rglob("*.uids")] == ["t-2"]


def test_a_request_claimed_by_a_sender_that_died_goes_too(tmp_path: Path) -> None:
    """A claim (rename) by a process that is gone is given back first, then handed off."""
    state, spool = _attempt(tmp_path)
    claimed = spool / "logs" / f".claimed-{OTHER}-0009-{AGENT}-000002-2.pb"
    claimed.write_bytes(b"claimed")
    storage = Storage()
    hand_off(storage, str(state), str(spool), "F/argo-1/start/t-1", 0, {AGENT})
    key = f".mfotel/spool/F/argo-1/start/t-1/0/logs/0009-{AGENT}-000002-2.pb"
    assert storage.saved[key] == b"claimed" and not claimed.exists()


def test_a_datastore_that_refuses_keeps_everything_here(tmp_path: Path) -> None:
    """The storage's error reaches the caller (who says it in one line); nothing is deleted."""
    state, spool = _attempt(tmp_path)
    with pytest.raises(OSError, match="AccessDenied"):
        hand_off(Storage(fail=True), str(state), str(spool), "F/argo-1/start/t-1", 0, {AGENT})
    assert (spool / "logs" / f"0001-{AGENT}-000000-3.pb").exists()
    assert (state / "delivered" / "F" / "argo-1" / "start" / "t-1" / "0.uids").exists()
