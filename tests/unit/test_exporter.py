"""The exporter against a real receiver: retries, spooling, recovery, bounds, shutdown."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest

from mfotel._internal.agent.exporter import Exporter
from mfotel._internal.agent.spool import Spool
from mfotel._internal.model import LogRecord, ResourceLogs, Scope
from mfotel._internal.otlp.encode import encode_logs
from mfotel.testing import OTLPReceiver


def _payload(text: str) -> bytes:
    record = LogRecord(time_ns=1, observed_ns=2, body=text)
    return encode_logs([ResourceLogs({"service.name": "t"}, Scope("t"), [record])])


def _dead_endpoint() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_retryable_failures_are_retried_and_nothing_is_spooled(tmp_path: Path) -> None:
    """Two 503 answers then success: the request arrives once and the spool stays empty."""
    warnings: list[str] = []
    with OTLPReceiver(grpc=False) as rx:
        rx.fail_next(2, status=503)
        spool = Spool(str(tmp_path), 1 << 20)
        exporter = Exporter(
            spool, {"OTEL_EXPORTER_OTLP_ENDPOINT": rx.http_endpoint}, warnings.append
        )
        exporter.submit("logs", _payload("a"), 1)
        exporter.shutdown(5.0)
        assert [str(r.body) for r in rx.logs()] == ["a"]
    assert spool.pending()["logs"] == 0
    assert exporter.counts[("logs", "exported")] == 1
    assert warnings == []


def test_a_dead_collector_means_spooled_with_one_warning(tmp_path: Path) -> None:
    """With nobody listening every request is spooled and one warning line is given."""
    warnings: list[str] = []
    spool = Spool(str(tmp_path), 1 << 20)
    exporter = Exporter(spool, {"OTEL_EXPORTER_OTLP_ENDPOINT": _dead_endpoint()}, warnings.append)
    for text in "abc":
        exporter.submit("logs", _payload(text), 1)
    exporter.shutdown(5.0)
    assert spool.pending()["logs"] == 3
    assert exporter.counts[("logs", "spooled")] == 3
    assert len(warnings) == 1 and "connection refused" in warnings[0]


def test_after_recovery_the_exporter_sends_what_it_spooled(tmp_path: Path) -> None:
    """Once a send succeeds again, this process's spooled requests go out too, once."""
    with OTLPReceiver(grpc=False) as rx:
        rx.fail_next(3, status=400)  # not retryable: spooled, exporter backs off
        spool = Spool(str(tmp_path), 1 << 20)
        exporter = Exporter(
            spool, {"OTEL_EXPORTER_OTLP_ENDPOINT": rx.http_endpoint}, lambda _: None
        )
        exporter.submit("logs", _payload("early"), 1)
        assert exporter.wait_idle(5.0)
        assert spool.pending()["logs"] == 1
        exporter._down_until = 0.0  # skip the back-off wait instead of sleeping through it
        rx.fail_next(0)
        exporter.submit("logs", _payload("late"), 1)
        exporter.shutdown(5.0)
        assert sorted(str(r.body) for r in rx.logs()) == ["early", "late"]
    assert spool.pending()["logs"] == 0


def test_a_full_spool_drops_and_counts(tmp_path: Path) -> None:
    """Past MFOTEL_SPOOL_MAX_MB new requests are dropped, counted, and said once."""
    warnings: list[str] = []
    spool = Spool(str(tmp_path), 150)
    exporter = Exporter(spool, {"OTEL_EXPORTER_OTLP_ENDPOINT": _dead_endpoint()}, warnings.append)
    for text in ("a" * 60, "b" * 60, "c" * 60):
        exporter.submit("logs", _payload(text), 1)
    exporter.shutdown(5.0)
    assert exporter.counts[("logs", "spooled")] == 1
    assert exporter.counts[("logs", "dropped")] == 2
    assert any("full" in w for w in warnings)


def test_spooled_requests_are_claimed_once(tmp_path: Path) -> None:
    """Two claimers never get the same spooled request; a released one can be claimed again."""
    spool = Spool(str(tmp_path), 1 << 20)
    spool.put("traces", b"x", 1)
    first = list(spool.claim_all())
    assert len(first) == 1 and list(Spool(str(tmp_path), 1 << 20).claim_all()) == []
    first[0].release()
    again = list(spool.claim_all())
    assert len(again) == 1
    again[0].done()
    assert spool.pending()["traces"] == 0


def test_a_claim_left_by_a_dead_sender_goes_back_to_the_spool(tmp_path: Path) -> None:
    """A request claimed by a process that died is returned to the spool, not lost."""
    import subprocess
    import sys

    spool = Spool(str(tmp_path), 1 << 20)
    spool.put("logs", b"x", 1)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    (path,) = list((tmp_path / "logs").iterdir())
    path.rename(path.with_name(f".claimed-{dead.stdout.strip()}-{path.name}"))
    assert spool.pending()["logs"] == 0
    assert spool.recover_stale_claims() == 1
    assert spool.pending()["logs"] == 1
    assert spool.recover_stale_claims() == 0


def test_a_collector_that_does_not_keep_up_costs_bounded_memory_and_a_bounded_wait(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Requests beyond the queue's byte budget wait a moment for room, then go to the spool:
    submitting never waits long for the collector, and once it keeps up again the spooled
    ones are sent from there; every request arrives once."""
    from mfotel._internal.agent import exporter as module

    monkeypatch.setattr(module, "ROOM_WAIT_S", 0.01)

    payloads = [_payload(f"{n}" + "x" * 400_000) for n in range(60)]  # 24 MB
    with OTLPReceiver(grpc=False) as rx:
        rx.set_delay(0.05)
        spool = Spool(str(tmp_path), 1 << 30)
        warnings: list[str] = []
        exporter = Exporter(
            spool, {"OTEL_EXPORTER_OTLP_ENDPOINT": rx.http_endpoint}, warnings.append
        )
        began = time.monotonic()
        for payload in payloads:
            exporter.submit("logs", payload, 1)
            assert exporter._queued_bytes <= module.QUEUE_BYTES
        assert time.monotonic() - began < 2.0, "submitting waited for the collector"
        assert exporter.counts[("logs", "spooled")] > 0
        assert len(warnings) == 1 and "does not keep up" in warnings[0]
        rx.set_delay(0)
        exporter.submit("logs", _payload("after"), 1)  # a success sends the spooled ones too
        assert rx.wait_for(lambda r: len(r.logs()) >= 61, 30)
        exporter.shutdown(5.0)
        bodies = sorted(str(r.body)[:3] for r in rx.logs())
    assert len(bodies) == 61 and len(set(bodies)) == 61, bodies[:5]
    assert spool.pending()["logs"] == 0


def test_replay_and_the_exporter_retry_what_the_collector_says_to_retry(tmp_path: Path) -> None:
    """One retry policy for every sender: a spooled request the collector answers 503 twice is
    still sent by one `mfotel replay`, once."""
    from mfotel._internal.replay import replay

    spool = Spool(str(tmp_path), 1 << 20)
    exporter = Exporter(spool, {"OTEL_EXPORTER_OTLP_ENDPOINT": _dead_endpoint()}, lambda _: None)
    exporter.submit("logs", _payload("spooled"), 1)
    exporter.shutdown(5.0)
    assert spool.pending()["logs"] == 1
    with OTLPReceiver(grpc=False) as rx:
        rx.fail_next(2, status=503)
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": rx.http_endpoint, "MFOTEL_STATE_DIR": str(tmp_path)}
        result = replay(env, str(tmp_path))
        assert result.ok, result.summary
        assert [str(r.body) for r in rx.logs()] == ["spooled"]
    assert spool.pending()["logs"] == 0


def test_replay_sends_a_carriers_chunk_from_the_inbox_and_counts_its_lines(
    tmp_path: Path,
) -> None:
    """What a log carrier could not hand the agent (a ``lines`` message in the inbox) is sent
    by `mfotel replay`: every line once, each counted."""
    from mfotel._internal.ipc import inbox_dir
    from mfotel._internal.replay import replay
    from mfotel.logs._lines import Stream

    ctx = b'{"tid":"0af7651916cd43dd8448eb211c80319c","sid":"00f067aa0ba902b7","attrs":{}}'
    message = Stream(-1, "stdout", ctx).feed(b"one\ntwo\nthree\n")
    assert message is not None
    os.makedirs(inbox_dir(str(tmp_path)))
    (Path(inbox_dir(str(tmp_path))) / "host-1-2.jsonl").write_bytes(message)
    with OTLPReceiver(grpc=False) as rx:
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": rx.http_endpoint, "MFOTEL_STATE_DIR": str(tmp_path)}
        result = replay(env, str(tmp_path))
        assert result.ok and result.sent["logs"] == 3, result.summary
        assert [str(r.body) for r in rx.logs()] == ["one", "two", "three"]
