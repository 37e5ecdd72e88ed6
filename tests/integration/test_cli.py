"""The mfotel command: doctor and demo, as a user runs them."""

from __future__ import annotations

from pathlib import Path

import pytest

from mfotel.testing import OTLPReceiver
from tests.conftest import run_mfotel as _mfotel


def test_doctor_shows_settings_sources_extension_and_endpoints(
    tmp_path: Path, receiver: OTLPReceiver
) -> None:
    """doctor lists each setting with its source, sees the active extension and a live endpoint."""
    env = {
        "MF_TRACING": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.http_endpoint,
        "MFOTEL_SPOOL_DIR": str(tmp_path / "spool"),
    }
    result = _mfotel("doctor", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "MF_TRACING                   otlp  [environment]" in out
    assert "MFOTEL_PROFILE               dev  [default]" in out
    assert "Metaflow extension: active" in out
    assert f"logs     http/protobuf  {receiver.http_endpoint}/v1/logs" in out
    assert out.count(": answers") == 3
    assert "Spool: " in out and "empty" in out


def test_doctor_names_a_bad_setting_and_fails(tmp_path: Path) -> None:
    """A malformed endpoint and an unknown mode are named with their fix; exit code is 1."""
    env = {
        "MF_TRACING": "otpl",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "htp:/x",
        "MFOTEL_SPOOL_DIR": str(tmp_path),
    }
    result = _mfotel("doctor", env=env)
    assert result.returncode == 1
    assert "MF_TRACING='otpl' is not one of off, otlp, console" in result.stdout
    assert "OTEL_EXPORTER_OTLP_ENDPOINT='htp:/x' is not a URL" in result.stdout


def test_doctor_reports_the_extension_inactive_when_tracing_is_off(tmp_path: Path) -> None:
    """With MF_TRACING unset doctor says the extension is installed but inactive."""
    result = _mfotel("doctor", env={"MFOTEL_SPOOL_DIR": str(tmp_path)})
    assert "Metaflow extension: installed, inactive" in result.stdout


@pytest.mark.flow
def test_demo_runs_the_example_and_shows_what_arrived(tmp_path: Path) -> None:
    """demo runs DemoFlow against its own receiver and prints the span tree and counts."""
    result = _mfotel("demo", "--keep", str(tmp_path / "demo"), env={"USER": "tester"})
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "RUN DemoFlow" in out
    assert out.count("    train  DemoFlow/") == 3
    assert "Log records: 15 (3 stderr, 12 stdout)" in out
    assert "of which structured (JSON lines): 9" in out
    assert "metaflow.task.duration x6" in out
