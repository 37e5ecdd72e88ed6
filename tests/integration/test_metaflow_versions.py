"""The Metaflow releases mfotel covers, each in a user's environment with mfotel installed from
its wheel: the floor (2.16.0, the first with the package machinery mfotel's code package
relies on) and the newest run the core flow and an Argo Workflows deployment on a stock
image; older releases run with one line saying telemetry is off, and nothing else changes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mfotel.testing import OTLPReceiver
from tests.conftest import otlp_env, run_flow
from tests.containers import user_python
from tests.emulators import MotoServer
from tests.integration.test_argo_workflows import Deployment, deployed

pytestmark = pytest.mark.flow

FLOOR = "2.16.0"
BELOW = ("2.12.39", "2.15.21")  # 2.12: the tracing API was cli_entrypoint; 2.15: no packaging_sys
STEPS = {"start": 1, "fan": 3, "join": 1, "flaky": 2, "end": 1}


@pytest.fixture(scope="module")
def floor_python(mfotel_wheel: Path) -> Path:
    return user_python(FLOOR, mfotel_wheel)


def test_the_floor_exports_every_signal_of_a_local_run(tmp_path: Path, floor_python: Path) -> None:
    """ProbeFlow on Metaflow 2.16.0: the run's root span, every attempt's span, each line, the
    monitor's metrics and the event logger's events."""
    with OTLPReceiver(grpc=False, http=True) as rx:
        run = run_flow("probe_flow.py", tmp_path, env=otlp_env(rx), python=str(floor_python))
        assert run.returncode == 0, run.output
        assert "mfotel:" not in run.output, run.output
        assert rx.wait_for(lambda r: any(s.name == "RUN ProbeFlow" for s in r.spans()), 20)
        (root,) = [s for s in rx.spans() if s.name == "RUN ProbeFlow"]
        attempts = [
            s for s in rx.spans() if s.name in STEPS and "metaflow.task.attempt" in s.attributes
        ]
        assert sorted(s.name for s in attempts) == sorted(
            n for n, c in STEPS.items() for _ in range(c)
        )
        assert all(s.trace_id == root.trace_id for s in attempts)
        assert root.resource["metaflow.version"] == FLOOR
        bodies = {str(r.body) for r in rx.logs()}
        assert "fan 1 stdout" in bodies, sorted(bodies)[:20]
        names = {p.name for p in rx.points()}
        assert "metaflow.task.duration" in names
        assert any(e.name == "metaflow.task.start" for s in attempts for e in s.events)


@pytest.fixture(scope="module")
def floor_deployment(
    tmp_path_factory: pytest.TempPathFactory,
    moto_server: MotoServer,
    floor_python: Path,
    stock_image_python: Path,
) -> Iterator[Deployment]:
    yield from deployed(
        tmp_path_factory, moto_server, floor_python, stock_image_python, "argo-floor"
    )


def test_the_floor_deploys_to_argo_and_runs_on_a_stock_image(floor_deployment: Deployment) -> None:
    """An Argo Workflows template compiled by Metaflow 2.16.0 carries the settings; its steps
    succeed on a stock image and export a whole trace."""
    assert [c.returncode for c in floor_deployment.containers] == [0] * 5, [
        c.output for c in floor_deployment.containers
    ]
    spans = floor_deployment.receiver.spans()
    (root,) = [s for s in spans if s.name == "RUN RemoteProbeFlow"]
    tasks = [s for s in spans if s.name in ("start", "fan", "join", "end")]
    assert len(tasks) == 5 and all(s.parent_span_id == root.span_id for s in tasks)
    assert {"start out 0", "fan 1", "end out"} <= {r.body for r in floor_deployment.receiver.logs()}


@pytest.mark.parametrize("version", BELOW)
def test_an_older_metaflow_runs_untouched_with_one_line(
    version: str, tmp_path: Path, mfotel_wheel: Path
) -> None:
    """MF_TRACING=otlp on a Metaflow older than the floor: the run succeeds, as it would
    without mfotel, and says once that telemetry is off and why."""
    python = user_python(version, mfotel_wheel)
    with OTLPReceiver(grpc=False, http=True) as rx:
        run = run_flow("tiny_flow.py", tmp_path, env=otlp_env(rx), python=str(python))
        assert run.returncode == 0, run.output
        lines = [line for line in run.output.splitlines() if "mfotel:" in line]
        assert len(lines) == 1, run.output
        assert "needs Metaflow >= 2.16" in lines[0], lines
        assert not rx.spans() and not rx.logs()
