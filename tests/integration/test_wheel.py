"""What a user installs: mfotel from its wheel (`pip install .` builds the same), not an
editable checkout. Every command that reads the package's own files runs from it, in a
folder far from this checkout."""

from __future__ import annotations

import os
import subprocess
import zipfile
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, aws_env, replace_splunk_hec

TARGETS = ("datadog", "splunk", "cloudwatch", "debug", "otlp")


def mfotel(user_env: Path, *args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    basics = {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}
    return subprocess.run(
        [str(user_env.parent / "mfotel"), *args],
        cwd=cwd,
        env={**basics, "USER": "tester", **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_wheel_holds_every_file_the_package_reads(mfotel_wheel: Path) -> None:
    """Every non-Python file under mfotel/ in the checkout is in the wheel (the collector
    templates, their shared macros, the manifest, the demo flow)."""
    names = set(zipfile.ZipFile(mfotel_wheel).namelist())
    wanted = {
        str(path.relative_to(REPO))
        for path in (REPO / "mfotel").rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    assert wanted <= names, sorted(wanted - names)


def test_the_installed_mfotel_is_the_wheels(user_env: Path, tmp_path: Path) -> None:
    """The user's environment imports mfotel from site-packages, not from this checkout."""
    done = subprocess.run(
        [str(user_env), "-c", "import mfotel; print(mfotel.__file__)"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "site-packages" in done.stdout and str(REPO) not in done.stdout, done.stdout


@pytest.mark.parametrize("target", TARGETS)
def test_render_and_validate_every_target_from_the_wheel(
    target: str, user_env: Path, tmp_path: Path, collector_binary: Path
) -> None:
    """`mfotel render-config --target T` writes a config the real collector accepts."""
    out = tmp_path / f"{target}.yaml"
    rendered = mfotel(user_env, "render-config", "--target", target, "-o", str(out), cwd=tmp_path)
    assert rendered.returncode == 0, rendered.stderr
    assert "service" in yaml.safe_load(out.read_text())
    if target == "splunk":  # splunk_hec cannot be in the kit's own build (see conftest)
        replace_splunk_hec(out, "http://127.0.0.1:4318")
    checked = mfotel(
        user_env,
        "validate-config",
        str(out),
        cwd=tmp_path,
        MFOTEL_COLLECTOR_BIN=str(collector_binary),
        DD_API_KEY="0123456789abcdef0123456789abcdef",
        SPLUNK_HEC_TOKEN="00000000-0000-0000-0000-000000000000",
        SPLUNK_HEC_ENDPOINT="https://splunk.example:8088/services/collector",
        **aws_env("us-east-1"),
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.flow
def test_the_demo_runs_from_the_wheel(user_env: Path, tmp_path: Path) -> None:
    """`mfotel demo`: the example flow, telemetry on, and the span tree that arrived."""
    done = mfotel(user_env, "demo", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "  RUN DemoFlow" in done.stdout, done.stdout
    assert "log.record.uid:" in done.stdout and "metaflow.task.pathspec: DemoFlow/" in done.stdout
