"""A step whose interpreter has neither mfotel nor OpenTelemetry (as under @pypi/@conda, which
run the task with the environment's interpreter and the run's code package on its path)
exports everything, from the mfotel the code package carries; nothing of this checkout is on
its path."""

from __future__ import annotations

from pathlib import Path

import pytest

from mfotel.testing import OTLPReceiver
from tests.conftest import REPO, otlp_env, run_flow

pytestmark = pytest.mark.flow


def test_a_task_without_mfotel_or_opentelemetry_exports_everything(
    tmp_path: Path, receiver: OTLPReceiver, stock_image_python: Path
) -> None:
    """Spans, log records, metrics and events of that task all arrive; its mfotel is the code
    package's, extracted as Metaflow extracts it for @pypi/@conda."""
    env = otlp_env(
        receiver,
        PYTHONPATH=str(REPO / "tests" / "extensions"),
        MFOTEL_TEST_BARE_PYTHON=str(stock_image_python),
    )
    run = run_flow("bare_env_flow.py", tmp_path, env=env)
    assert run.returncode == 0, run.output
    start_logs = [
        str(r.body) for r in receiver.logs() if r.attributes["metaflow.step.name"] == "start"
    ]
    assert "otel importable: False" in start_logs
    assert f"python: {stock_image_python}" in start_logs
    for module in ("mfotel", "metaflow"):
        (origin,) = [line for line in start_logs if line.startswith(f"{module} from: ")]
        assert "/mfotel-bare-" in origin and str(REPO) not in origin, origin
    (start,) = [s for s in receiver.spans() if s.name == "start"]
    assert "metaflow.task.start" in [e.name for e in start.events]
    durations = [
        p
        for p in receiver.points()
        if p.name == "metaflow.task.duration" and p.attributes["metaflow.step.name"] == "start"
    ]
    assert len(durations) == 1
    # The other step ran in the main interpreter, which does have OpenTelemetry.
    assert "otel importable: True" in [str(r.body) for r in receiver.logs()]
