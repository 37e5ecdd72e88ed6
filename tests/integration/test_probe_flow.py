"""One real ProbeFlow run with MF_TRACING=otlp, checked against the contract signal by signal.

The run (foreach fan-out, stdout and stderr, a subprocess, the logging module, a JSON line,
parallel_map, a step that fails once and is retried, a --tag) happens once per module; each
test reads what the real OTLP receiver decoded.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from collections.abc import Iterator

import pytest

from mfotel.logs._persisted import read_lines
from mfotel.testing import OTLPReceiver, ReceivedSpan
from tests.conftest import FLOWS, FlowRun, otlp_env, run_flow

pytestmark = pytest.mark.flow

STEPS = {"start": 1, "fan": 3, "join": 1, "flaky": 2, "end": 1}


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FlowRun, OTLPReceiver]]:
    workdir = tmp_path_factory.mktemp("probe")
    with OTLPReceiver(grpc=False, http=True) as rx:
        run = run_flow("probe_flow.py", workdir, "--tag", "probe-tag", env=otlp_env(rx))
        assert run.returncode == 0, run.output
        yield run, rx


def _attempt_spans(rx: OTLPReceiver) -> list[ReceivedSpan]:
    return [s for s in rx.spans() if "metaflow.task.attempt" in s.attributes and s.name in STEPS]


def _root(rx: OTLPReceiver) -> ReceivedSpan:
    (root,) = [s for s in rx.spans() if s.name == "RUN ProbeFlow"]
    return root


def _persisted(run: FlowRun) -> list[tuple[str, str, int, str, str, str]]:
    """(pathspec-attempt, uid, time_ns, stream, source, text) of every persisted line."""
    lines = []
    base = run.workdir / ".metaflow" / "ProbeFlow" / run.run_id
    for step, count in STEPS.items():
        for task_dir in sorted((base / step).iterdir()) if (base / step).exists() else []:
            if not task_dir.is_dir():
                continue
            attempts = range(count if step == "flaky" else 1)
            for attempt in attempts:
                for uid, time_ns, stream, source, text in read_lines(str(task_dir), attempt):
                    lines.append((f"{task_dir.name}/{attempt}", uid, time_ns, stream, source, text))
    return lines


def test_one_trace_with_a_server_root_span_per_run(probe: tuple[FlowRun, OTLPReceiver]) -> None:
    """Every span of the run shares one trace id under a SERVER root named RUN <Flow>."""
    run, rx = probe
    root = _root(rx)
    assert root.kind == 2
    assert root.parent_span_id == ""
    assert {s.trace_id for s in rx.spans()} == {root.trace_id}
    assert root.attributes["cicd.pipeline.result"] == "success"
    assert root.resource["metaflow.run.id"] == run.run_id
    assert root.resource["cicd.pipeline.run.id"] == run.run_id


def test_every_attempt_is_a_span_under_the_root(probe: tuple[FlowRun, OTLPReceiver]) -> None:
    """Each task attempt, retries included, is one span named after its step, child of the root."""
    _, rx = probe
    spans = _attempt_spans(rx)
    assert Counter(s.name for s in spans) == Counter(STEPS)
    root = _root(rx)
    assert all(s.parent_span_id == root.span_id for s in spans)
    assert all(root.start_ns <= s.start_ns <= s.end_ns <= root.end_ns for s in spans)


def test_a_failed_attempt_is_an_error_span_with_an_exception_event(
    probe: tuple[FlowRun, OTLPReceiver],
) -> None:
    """The first flaky attempt is ERROR with an exception event; its retry is a separate OK span."""
    _, rx = probe
    flaky = sorted(
        (s for s in _attempt_spans(rx) if s.name == "flaky"),
        key=lambda s: s.attributes["metaflow.task.attempt"],
    )
    assert [s.attributes["metaflow.task.attempt"] for s in flaky] == [0, 1]
    failed, retried = flaky
    assert failed.status_code == 2 and "flaky fails once" in failed.status_message
    (exception,) = [e for e in failed.events if e.name == "exception"]
    assert exception.attributes["exception.message"] == "flaky fails once"
    assert "RuntimeError" in exception.attributes["exception.type"]
    assert "probe_flow.py" in exception.attributes["exception.stacktrace"]
    assert retried.status_code != 2
    assert failed.span_id != retried.span_id
    assert failed.attributes["metaflow.task.id"] == retried.attributes["metaflow.task.id"]


def test_parallel_map_forks_are_spans_under_their_task(probe: tuple[FlowRun, OTLPReceiver]) -> None:
    """Each parallel_map child is a span whose parent is the join task's attempt span."""
    _, rx = probe
    (join,) = [s for s in _attempt_spans(rx) if s.name == "join"]
    forks = [s for s in rx.spans() if s.name == "parallel_map"]
    assert len(forks) == 2
    assert all(f.parent_span_id == join.span_id for f in forks)
    assert len({f.attributes["process.pid"] for f in forks}) == 2


def test_identity_is_on_every_span_record_and_point(probe: tuple[FlowRun, OTLPReceiver]) -> None:
    """Spans, log records and metric points all carry the contract's identity attributes."""
    run, rx = probe
    for item in [*_attempt_spans(rx), *rx.logs(), *rx.points()]:
        if (
            item.resource.get("telemetry.sdk.name") != "mfotel"
            or "metaflow.flow.name" not in item.resource
        ):
            continue
        identity = item.identity
        assert identity["service.name"] == "metaflow"
        assert identity["deployment.environment.name"] == "dev"
        assert identity["metaflow.flow.name"] == "ProbeFlow"
        assert identity["metaflow.run.id"] == run.run_id
        assert identity["metaflow.runtime"] == "local"
        assert identity["metaflow.user"]
        assert identity["metaflow.version"]
        assert "probe-tag" in identity["metaflow.tags"]
        assert identity["cicd.pipeline.name"] == "ProbeFlow"
        step, task = identity["metaflow.step.name"], identity["metaflow.task.id"]
        assert identity["metaflow.task.pathspec"] == f"ProbeFlow/{run.run_id}/{step}/{task}"
        assert identity["cicd.pipeline.task.name"] == step
        assert isinstance(identity["metaflow.task.attempt"], int)


def test_the_run_and_its_tasks_share_one_resource(probe: tuple[FlowRun, OTLPReceiver]) -> None:
    """The runtime and every task describe the run identically, so a backend groups them."""
    _, rx = probe
    resources = {tuple(sorted((k, str(v)) for k, v in s.resource.items())) for s in rx.spans()}
    assert len(resources) == 1, resources


def test_every_persisted_line_arrives_exactly_once(probe: tuple[FlowRun, OTLPReceiver]) -> None:
    """The set of log.record.uid equals the set of line ids Metaflow persisted, with no repeats."""
    run, rx = probe
    persisted = _persisted(run)
    assert len(persisted) > 30
    uids = [r.attributes["log.record.uid"] for r in rx.logs()]
    assert len(uids) == len(set(uids)), "a line was exported twice"
    assert set(uids) == {line[1] for line in persisted}


def test_records_keep_the_mflog_time_stream_source_and_text(
    probe: tuple[FlowRun, OTLPReceiver],
) -> None:
    """Each record's time, stream, source and text equal the persisted line's."""
    run, rx = probe
    by_uid = {r.attributes["log.record.uid"]: r for r in rx.logs()}
    for _, uid, time_ns, stream, source, text in _persisted(run):
        record = by_uid[uid]
        assert record.time_ns == time_ns
        assert record.attributes["log.iostream"] == stream
        assert record.attributes["metaflow.log.source"] == source
        body = record.body if isinstance(record.body, str) else None
        if body is not None:
            assert body == text


def test_records_are_correlated_to_their_attempt_span(probe: tuple[FlowRun, OTLPReceiver]) -> None:
    """A record's trace and span ids are those of the attempt that printed it."""
    _, rx = probe
    spans = {
        (s.attributes["metaflow.task.pathspec"], s.attributes["metaflow.task.attempt"]): s
        for s in _attempt_spans(rx)
    }
    for record in rx.logs():
        key = (
            record.attributes["metaflow.task.pathspec"],
            record.attributes["metaflow.task.attempt"],
        )
        assert (record.trace_id, record.span_id) == (spans[key].trace_id, spans[key].span_id)


def test_every_kind_of_output_is_captured(probe: tuple[FlowRun, OTLPReceiver]) -> None:
    """print, stderr, a subprocess, the logging module and parallel_map workers all arrive."""
    _, rx = probe
    texts = {(str(r.body), r.attributes["log.iostream"]) for r in rx.logs()}
    for item in (1, 2, 3):
        assert (f"fan {item} stdout", "stdout") in texts
        assert (f"fan {item} stderr", "stderr") in texts
        assert (f"subprocess {item}", "stdout") in texts
        assert (f"INFO:probe:logging {item}", "stderr") in texts
    assert ("worker 1", "stdout") in texts and ("worker 2", "stdout") in texts
    assert ("flaky recovered", "stdout") in texts


def test_json_lines_become_structured_bodies(probe: tuple[FlowRun, OTLPReceiver]) -> None:
    """A JSON-object line is a map body and its level is the record's severity."""
    _, rx = probe
    structured = [r for r in rx.logs() if isinstance(r.body, dict)]
    assert sorted(r.body["item"] for r in structured) == [1, 2, 3]  # type: ignore[index]
    assert all(r.severity_number == 13 and r.severity_text == "WARN" for r in structured)


def test_runtime_minted_lines_arrive_with_source_runtime(
    probe: tuple[FlowRun, OTLPReceiver],
) -> None:
    """Lines the runtime itself writes into a task's log (Task failed.) arrive as source=runtime."""
    _, rx = probe
    failed = [r for r in rx.logs() if r.body == "Task failed."]
    assert len(failed) == 1
    assert failed[0].attributes["metaflow.log.source"] == "runtime"
    assert failed[0].attributes["metaflow.task.attempt"] == 0


def test_monitor_metrics_arrive_as_histograms_and_sums(probe: tuple[FlowRun, OTLPReceiver]) -> None:
    """metaflow.task.duration is a seconds histogram per attempt; task counters are sums."""
    _, rx = probe
    durations = [p for p in rx.points() if p.name == "metaflow.task.duration"]
    assert len(durations) == sum(STEPS.values())
    assert all(p.kind == "histogram" and p.unit == "s" and p.count == 1 for p in durations)
    assert all(0 < p.sum < 60 for p in durations)
    starts = [p for p in rx.points() if p.name == "metaflow.task.start"]
    assert starts and all(p.kind == "sum" and p.monotonic for p in starts)
    assert sum(p.value for p in starts) == sum(STEPS.values())  # type: ignore[misc]


def test_events_are_span_events_on_their_span(probe: tuple[FlowRun, OTLPReceiver]) -> None:
    """Task events sit on the attempt span as <module>.<name>; run events on the run span."""
    _, rx = probe
    for span in _attempt_spans(rx):
        names = [e.name for e in span.events]
        assert "metaflow.task.start" in names, (span.name, names)
    (flaky0,) = [
        s
        for s in _attempt_spans(rx)
        if s.name == "flaky" and s.attributes["metaflow.task.attempt"] == 0
    ]
    assert "metaflow.task.exception" in [e.name for e in flaky0.events]
    assert "metaflow.run.start" in [e.name for e in _root(rx).events]


def test_console_output_and_metaflow_logs_are_unchanged(
    probe: tuple[FlowRun, OTLPReceiver],
) -> None:
    """The console shows plain lines (no mflog headers) and `logs` shows the same messages."""
    run, _ = probe
    assert "fan 1 stdout" in run.output and "[MFLOG" not in run.output
    shown = subprocess.run(
        [sys.executable, str(FLOWS / "probe_flow.py"), "logs", f"{run.run_id}/flaky"],
        cwd=run.workdir,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shown.returncode == 0, shown.stderr
    assert "flaky recovered" in shown.stdout + shown.stderr
    assert "[MFLOG" not in shown.stdout + shown.stderr


def test_the_exporter_reports_its_own_counts(probe: tuple[FlowRun, OTLPReceiver]) -> None:
    """mfotel.exporter.records counts exported records per signal, and none dropped."""
    _, rx = probe
    counts = {
        (p.attributes["signal"], p.attributes["outcome"]): p.value
        for p in rx.points()
        if p.name == "mfotel.exporter.records"
    }
    assert counts.get(("logs", "exported"), 0) == len(rx.logs())
    assert not any(outcome == "dropped" for _, outcome in counts)
