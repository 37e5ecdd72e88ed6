"""`mfotel backfill` and `mfotel tail` against real ProbeFlow runs in the local datastore.

What a backfill sent is checked against the persisted logs as Metaflow's own mflog parser
reads them, so the test does not trust the kit's parser to check the kit's parser.
"""

from __future__ import annotations

import calendar
import os
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from metaflow.mflog.mflog import parse as metaflow_parse

from mfotel.logs import _ledger
from mfotel.testing import OTLPReceiver, ReceivedLog, free_port
from tests.conftest import FlowRun, otlp_env, run_flow, run_mfotel

pytestmark = pytest.mark.flow


def persisted_lines(root: Path, flow: str, run_id: str) -> dict[str, dict[str, Any]]:
    """uid → (pathspec, attempt, stream, time_ns, text) of every persisted line, by Metaflow."""
    lines: dict[str, dict[str, Any]] = {}
    for path in sorted((root / flow / run_id).glob("*/*/*.log")):
        attempt, _, rest = path.name.partition(".")
        stream = "stderr" if rest.endswith("stderr.log") else "stdout"
        for raw in path.read_bytes().splitlines():
            parsed = metaflow_parse(raw)
            assert parsed is not None, (path, raw)
            stamp = parsed.utc_tstamp
            lines[parsed.id.decode()] = {
                "pathspec": f"{flow}/{run_id}/{path.parent.parent.name}/{path.parent.name}",
                "attempt": int(attempt),
                "stream": stream,
                "time_ns": calendar.timegm(stamp.timetuple()) * 10**9 + stamp.microsecond * 1000,
                "text": parsed.msg.decode("utf-8", "replace"),
            }
    return lines


def mfotel(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return run_mfotel(*args, cwd=cwd, env=env, timeout=120)


def to(rx: OTLPReceiver) -> dict[str, str]:
    # Another USER than the run's: the run's user must come from Metaflow's metadata.
    return {"OTEL_EXPORTER_OTLP_ENDPOINT": rx.http_endpoint, "USER": "backfiller"}


def by_uid(logs: list[ReceivedLog]) -> Counter[str]:
    return Counter(str(log.attributes.get("log.record.uid")) for log in logs)


@pytest.fixture(scope="module")
def untraced(tmp_path_factory: pytest.TempPathFactory) -> FlowRun:
    """A ProbeFlow run made without mfotel (telemetry off), as runs made before it was set up."""
    workdir = tmp_path_factory.mktemp("untraced")
    run = run_flow("probe_flow.py", workdir, "--tag", "probe-tag")
    assert run.returncode == 0, run.output
    return run


@pytest.fixture
def copy_of(tmp_path: Path) -> Iterator[Any]:
    """A private copy of a run's work folder, so a test can change its logs or state."""

    def copy(run: FlowRun) -> Path:
        target = tmp_path / "work"
        shutil.copytree(run.workdir, target, symlinks=True)
        return target

    yield copy


def test_backfill_sends_every_persisted_line_once_with_its_timestamp(
    untraced: FlowRun, copy_of: Any
) -> None:
    """Every persisted line arrives once, with its mflog id, timestamp, text and identity."""
    work = copy_of(untraced)
    expected = persisted_lines(work / ".metaflow", "ProbeFlow", untraced.run_id)
    assert len(expected) > 20
    with OTLPReceiver(http=True) as rx:
        done = mfotel("backfill", f"ProbeFlow/{untraced.run_id}", cwd=work, env=to(rx))
        assert done.returncode == 0, done.stderr
        assert rx.wait_for(lambda r: len(r.logs()) >= len(expected))
        logs = rx.logs()
    assert by_uid(logs) == Counter(dict.fromkeys(expected, 1))
    for log in logs:
        line = expected[str(log.attributes["log.record.uid"])]
        ident = log.identity
        assert log.time_ns == line["time_ns"]
        body = log.body if isinstance(log.body, str) else None
        if body is not None:
            assert body == line["text"]
        assert log.attributes["log.iostream"] == line["stream"]
        assert ident["metaflow.task.pathspec"] == line["pathspec"]
        assert ident["metaflow.task.attempt"] == line["attempt"]
        assert ident["metaflow.flow.name"] == "ProbeFlow"
        assert ident["metaflow.run.id"] == untraced.run_id
        assert ident["metaflow.user"] == os.environ["USER"]  # who ran it (run_flow's USER)
        assert "probe-tag" in ident["metaflow.tags"]
        assert log.trace_id == ""  # never traced: no trace to point at
    structured = [log for log in logs if isinstance(log.body, dict)]
    assert len(structured) == 3 and all(log.severity_text == "WARN" for log in structured)
    assert f"sent {len(expected)} line(s)" in done.stdout
    assert "not correlated with a trace" in done.stderr


def test_a_second_backfill_sends_nothing(untraced: FlowRun, copy_of: Any) -> None:
    """Running the same backfill twice sends each line once; --reset sends them all again."""
    work = copy_of(untraced)
    spec = f"ProbeFlow/{untraced.run_id}"
    expected = persisted_lines(work / ".metaflow", "ProbeFlow", untraced.run_id)
    with OTLPReceiver(http=True) as rx:
        assert mfotel("backfill", spec, cwd=work, env=to(rx)).returncode == 0
        again = mfotel("backfill", spec, cwd=work, env=to(rx))
        assert again.returncode == 0, again.stderr
        assert "sent 0 line(s)" in again.stdout and "already sent (checkpoint)" in again.stdout
        assert by_uid(rx.logs()) == Counter(dict.fromkeys(expected, 1))
        checkpoint = (
            work / ".metaflow" / ".mfotel" / "backfill" / "ProbeFlow" / f"{untraced.run_id}.json"
        )
        assert checkpoint.exists()
        reset = mfotel("backfill", spec, "--reset", cwd=work, env=to(rx))
        assert reset.returncode == 0, reset.stderr
        assert rx.wait_for(lambda r: len(r.logs()) >= 2 * len(expected))
        assert by_uid(rx.logs()) == Counter(dict.fromkeys(expected, 2))


def test_step_task_and_several_pathspecs(untraced: FlowRun, copy_of: Any) -> None:
    """A step, a task and several pathspecs each send exactly the lines they name."""
    work = copy_of(untraced)
    expected = persisted_lines(work / ".metaflow", "ProbeFlow", untraced.run_id)
    run = f"ProbeFlow/{untraced.run_id}"
    fan = {u for u, line in expected.items() if "/fan/" in line["pathspec"]}
    end = {u for u, line in expected.items() if "/end/" in line["pathspec"]}
    end_task = next(line["pathspec"] for line in expected.values() if "/end/" in line["pathspec"])
    with OTLPReceiver(http=True) as rx:
        done = mfotel("backfill", f"{run}/fan", end_task, cwd=work, env=to(rx))
        assert done.returncode == 0, done.stderr
        assert rx.wait_for(lambda r: len(r.logs()) >= len(fan | end))
        assert set(by_uid(rx.logs())) == fan | end
        assert max(by_uid(rx.logs()).values()) == 1


def test_a_whole_flow_since_a_time(untraced: FlowRun, copy_of: Any) -> None:
    """A flow with --since sends the runs persisted since then; without --since it is refused."""
    work = copy_of(untraced)
    expected = persisted_lines(work / ".metaflow", "ProbeFlow", untraced.run_id)
    with OTLPReceiver(http=True) as rx:
        refused = mfotel("backfill", "ProbeFlow", cwd=work, env=to(rx))
        assert refused.returncode == 2 and "--since" in refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1
        future = mfotel("backfill", "ProbeFlow", "--since", "2999-01-01", cwd=work, env=to(rx))
        assert future.returncode == 2 and "no persisted logs modified since then" in future.stderr
        done = mfotel("backfill", "ProbeFlow", "--since", "1d", cwd=work, env=to(rx))
        assert done.returncode == 0, done.stderr
        assert rx.wait_for(lambda r: len(r.logs()) >= len(expected))
        assert by_uid(rx.logs()) == Counter(dict.fromkeys(expected, 1))


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FlowRun, OTLPReceiver]]:
    """A ProbeFlow run with MF_TRACING=otlp, and what its live path delivered."""
    workdir = tmp_path_factory.mktemp("traced")
    with OTLPReceiver(http=True) as rx:
        run = run_flow("probe_flow.py", workdir, env=otlp_env(rx))
        assert run.returncode == 0, run.output
        yield run, rx


def test_live_and_backfill_together_send_every_line_once(
    traced: tuple[FlowRun, OTLPReceiver], copy_of: Any
) -> None:
    """After a live run, a backfill sends only what the live path did not deliver, in its trace."""
    run, live = traced
    work = copy_of(run)
    root = work / ".metaflow"
    expected = persisted_lines(root, "ProbeFlow", run.run_id)
    delivered = by_uid(live.logs())
    assert set(delivered) == set(expected)
    # As if the live path had lost one attempt's lines: drop its part of the ledger.
    ledger = root / ".mfotel" / "delivered" / "ProbeFlow" / run.run_id
    lost_file = next(ledger.glob("fan/*/0.uids"))
    lost = set(_ledger.parse_ids(lost_file.read_bytes()))
    lost_file.unlink()
    with OTLPReceiver(http=True) as rx:
        done = mfotel("backfill", f"ProbeFlow/{run.run_id}", cwd=work, env=to(rx))
        assert done.returncode == 0, done.stderr
        assert rx.wait_for(lambda r: len(r.logs()) >= len(lost))
        sent = rx.logs()
    assert set(by_uid(sent)) == lost and max(by_uid(sent).values()) == 1
    assert f"{len(expected) - len(lost)} line(s) already delivered live" in done.stdout
    assert "not correlated" not in done.stderr
    spans = {
        (s.attributes["metaflow.task.pathspec"], s.attributes["metaflow.task.attempt"]): s
        for s in live.spans()
        if "metaflow.task.pathspec" in s.attributes and s.name != "parallel_map"
    }
    live_by_uid = {str(log.attributes["log.record.uid"]): log for log in live.logs()}
    for log in sent:
        span = spans[
            (log.identity["metaflow.task.pathspec"], log.identity["metaflow.task.attempt"])
        ]
        assert (log.trace_id, log.span_id) == (span.trace_id, span.span_id)
        original = live_by_uid[str(log.attributes["log.record.uid"])]
        assert log.time_ns == original.time_ns and log.body == original.body
        assert log.attributes == {
            k: v for k, v in original.attributes.items() if k != "process.pid"
        }


def test_a_dead_collector_fails_the_backfill_and_loses_nothing(
    untraced: FlowRun, copy_of: Any
) -> None:
    """With no collector the backfill exits 1 saying so; once one answers, every line goes, once."""
    work = copy_of(untraced)
    spec = f"ProbeFlow/{untraced.run_id}"
    expected = persisted_lines(work / ".metaflow", "ProbeFlow", untraced.run_id)
    dead = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{free_port()}"}
    failed = mfotel("backfill", spec, cwd=work, env=dead)
    assert failed.returncode == 1
    assert (
        "did not take the logs" in failed.stderr and "run the same command again" in failed.stderr
    )
    with OTLPReceiver(http=True) as rx:
        done = mfotel("backfill", spec, cwd=work, env=to(rx))
        assert done.returncode == 0, done.stderr
        assert rx.wait_for(lambda r: len(r.logs()) >= len(expected))
        assert by_uid(rx.logs()) == Counter(dict.fromkeys(expected, 1))


def test_corrupt_truncated_and_non_utf8_lines(untraced: FlowRun, copy_of: Any) -> None:
    """Corrupt and truncated lines are counted and named, a non-UTF-8 line repaired."""
    work = copy_of(untraced)
    expected = persisted_lines(work / ".metaflow", "ProbeFlow", untraced.run_id)
    log = next(
        (work / ".metaflow" / "ProbeFlow" / untraced.run_id / "end").glob("*/0.runtime_stdout.log")
    )
    good = log.read_bytes()
    header = b"[MFLOG|0|2026-12-01T10:00:00.000001Z|task|bad-utf8-line]"
    log.write_bytes(
        good + b"garbage without a header\n" + header + b"caf\xe9\n" + b"[MFLOG|0|2026-12-01T1"
    )
    with OTLPReceiver(http=True) as rx:
        done = mfotel("backfill", f"ProbeFlow/{untraced.run_id}", cwd=work, env=to(rx))
        assert done.returncode == 0, done.stderr
        assert rx.wait_for(lambda r: len(r.logs()) >= len(expected) + 1)
        logs = {str(entry.attributes["log.record.uid"]): entry for entry in rx.logs()}
    assert set(logs) == set(expected) | {"bad-utf8-line"}
    assert logs["bad-utf8-line"].body == "caf\ufffd"
    assert "2 corrupt line(s) not sent (first: " in done.stdout
    assert f"{log} at byte {len(good)}" in done.stdout
    assert "1 line(s) not UTF-8" in done.stdout


def test_pre_mflog_log_files(untraced: FlowRun, copy_of: Any) -> None:
    """Old-style plain `0.stdout.log` files are sent too, once, without a made-up timestamp."""
    work = copy_of(untraced)
    task = next((work / ".metaflow" / "ProbeFlow" / untraced.run_id / "end").glob("*/"))
    (task / "1.stdout.log").write_bytes(b"old line one\nold line two\n")
    spec = f"ProbeFlow/{untraced.run_id}/end/{task.name}"
    with OTLPReceiver(http=True) as rx:
        assert mfotel("backfill", spec, cwd=work, env=to(rx)).returncode == 0
        assert mfotel("backfill", spec, cwd=work, env=to(rx)).returncode == 0
        old = [log for log in rx.logs() if log.identity["metaflow.task.attempt"] == 1]
    assert sorted(log.body for log in old) == ["old line one", "old line two"]
    assert all(log.time_ns == 0 and log.observed_ns > 0 for log in old)
    assert len(by_uid(old)) == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ProbeFlow/"], "is a whole flow"),
        (["ProbeFlow/bad id"], "is not a run id"),
        (["probe-flow/1"], "is not a flow name"),
        (["ProbeFlow/1/2/3/4/5"], "is not Flow/run"),
        (["ProbeFlow/123"], "no persisted logs for ProbeFlow/123"),
        (["ProbeFlow/123", "--datastore-root", "/nonexistent"], "is not a folder"),
        (["ProbeFlow/123", "--since", "yesterday"], "--since 'yesterday'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(untraced: FlowRun, args: list[str], message: str) -> None:
    """Each kind of bad input gets one line naming it and the fix, and exit code 2."""
    done = mfotel(
        "backfill",
        *args,
        cwd=untraced.workdir,
        env={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"},
    )
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_tail_prints_a_finished_task_like_metaflow_logs(untraced: FlowRun, copy_of: Any) -> None:
    """`mfotel tail` of a task prints its lines as `flow.py logs` does, and exports them once."""
    work = copy_of(untraced)
    expected = persisted_lines(work / ".metaflow", "ProbeFlow", untraced.run_id)
    spec = next(line["pathspec"] for line in expected.values() if "/fan/" in line["pathspec"])
    mine = {u: line for u, line in expected.items() if line["pathspec"] == spec}
    with OTLPReceiver(http=True) as rx:
        done = mfotel("tail", spec, "--export", "--interval", "0.1", cwd=work, env=to(rx))
        assert done.returncode == 0, done.stderr
        assert rx.wait_for(lambda r: len(r.logs()) >= len(mine))
        assert by_uid(rx.logs()) == Counter(dict.fromkeys(mine, 1))
        after = mfotel("backfill", spec, cwd=work, env=to(rx))
        assert "sent 0 line(s)" in after.stdout
    out = [line["text"] for line in mine.values() if line["stream"] == "stdout"]
    assert sorted(done.stdout.splitlines()) == sorted(out)
    err = [line["text"] for line in mine.values() if line["stream"] == "stderr"]
    assert sorted(done.stderr.splitlines()) == sorted(err)


def test_tail_follows_a_log_as_it_grows(tmp_path: Path) -> None:
    """Tail prints a line as soon as it is persisted, holds back a half-written one, and ends
    once the attempt's DONE.lock is there."""
    import select

    task = tmp_path / ".metaflow" / "GrowFlow" / "5" / "train" / "2"
    task.mkdir(parents=True)
    log = task / "0.task_stdout.log"
    header = "[MFLOG|0|2026-12-01T10:00:0{}.000000Z|task|uid-{}]"
    log.write_text(header.format(1, 1) + "first line\n" + header.format(2, 2) + "second ha")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "MFOTEL_"))}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mfotel.cli", "tail", "GrowFlow/5/train/2", "--interval", "0.05"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 30)
        assert ready, "tail printed nothing"
        assert proc.stdout.readline() == "first line\n"
        assert proc.poll() is None  # still following: the attempt is not done
        with log.open("a") as handle:
            handle.write("lf\n" + header.format(3, 3) + "third line\n")
        (task / "0.DONE.lock").write_text("")
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert out.splitlines() == ["second half", "third line"]


def test_progress_bar_on_a_terminal(untraced: FlowRun, copy_of: Any) -> None:
    """On a terminal, a progress bar on stderr reaches 100%; stdout keeps only the summary."""
    import pty

    work = copy_of(untraced)
    main_fd, terminal = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "MFOTEL_"))}
    with OTLPReceiver(http=True) as rx:
        env.update(to(rx))
        done = subprocess.run(
            [sys.executable, "-m", "mfotel.cli", "backfill", f"ProbeFlow/{untraced.run_id}"],
            cwd=work,
            env=env,
            stdout=subprocess.PIPE,
            stderr=terminal,
            text=True,
            timeout=120,
        )
    os.close(terminal)
    shown = b""
    try:
        while chunk := os.read(main_fd, 65536):
            shown += chunk
    except OSError:  # the terminal's other end is closed: all of it was read
        pass
    os.close(main_fd)
    assert done.returncode == 0
    assert b"backfill" in shown and b"100%" in shown, shown
    assert done.stdout.startswith("mfotel backfill: ") and len(done.stdout.splitlines()) == 1
