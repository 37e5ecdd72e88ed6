"""A step whose interpreter has no OpenTelemetry package (as under @pypi/@conda) still exports."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from metaflow.version import metaflow_version

from mfotel.testing import OTLPReceiver
from tests.conftest import REPO, otlp_env, run_flow

pytestmark = pytest.mark.flow

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mfotel" / "test-envs"


@pytest.fixture(scope="session")
def bare_python() -> str:
    """An interpreter with Metaflow (same version) and nothing else, cached outside the repo."""
    version = metaflow_version
    tag = f"metaflow-{version}-py{sys.version_info.major}{sys.version_info.minor}"
    folder = CACHE / tag
    python = folder / "bin" / "python"
    if not (folder / ".ready").exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(folder)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", f"metaflow=={version}"],
            check=True,
            timeout=600,
        )
        (folder / ".ready").write_text("ok\n")
    probe = subprocess.run(
        [str(python), "-c", "import importlib.util as u; print(u.find_spec('opentelemetry'))"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.strip() == "None", "the bare interpreter must not have OpenTelemetry"
    return str(python)


def test_a_task_without_opentelemetry_exports_everything(
    tmp_path: Path, receiver: OTLPReceiver, bare_python: str
) -> None:
    """Spans, log records, metrics and events of a task in an OTel-less interpreter all arrive."""
    extensions = str(REPO / "tests" / "extensions")
    env = otlp_env(
        receiver,
        PYTHONPATH=extensions,
        MFOTEL_TEST_BARE_PYTHON=bare_python,
        MFOTEL_TEST_BARE_PYTHONPATH=os.pathsep.join([str(REPO), extensions]),
    )
    run = run_flow("bare_env_flow.py", tmp_path, env=env)
    assert run.returncode == 0, run.output
    start_logs = [
        str(r.body) for r in receiver.logs() if r.attributes["metaflow.step.name"] == "start"
    ]
    assert "otel importable: False" in start_logs
    assert f"python: {bare_python}" in start_logs
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
