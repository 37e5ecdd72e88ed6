"""Run the collector binary: validate a config, or run it in the foreground."""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from mfotel.collector._build import (
    CONTRIB_IMAGE,
    NOT_IN_SLIM_BUILD,
    CollectorError,
    find_binary,
)


@dataclass(frozen=True)
class Verdict:
    """The collector's own verdict on a config: ``ok``, and what it printed, verbatim."""

    ok: bool
    output: str
    binary: Path


def require_binary() -> Path:
    binary = find_binary()
    if binary is None:
        raise CollectorError(
            "no collector binary yet: run `mfotel collector build` (needs Go), "
            "or set MFOTEL_COLLECTOR_BIN to an otelcol binary"
        )
    return binary


def validate(config: Path, binary: Path | None = None, timeout: float = 120.0) -> Verdict:
    """Load ``config`` in a real collector without running it (``otelcol validate``)."""
    if not config.is_file():
        raise CollectorError(
            f"{config}: no such file; render one with `mfotel render-config -o {config}`"
        )
    exe = binary or require_binary()
    proc = subprocess.run(
        [str(exe), "validate", f"--config={config}"],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    output = (proc.stdout + proc.stderr).strip()
    if proc.returncode != 0:
        unset = missing_env(config.read_text())
        if unset:
            output += (
                f"\n(hint: {', '.join(unset)} {'is' if len(unset) == 1 else 'are'} not set in "
                "this environment; the config reads them with ${env:…}: export them first)"
            )
        lacking = [c for c in NOT_IN_SLIM_BUILD if f'unknown type: "{c}"' in output]
        if lacking:
            output += (
                f"\n(hint: this collector has no {', '.join(lacking)}: mfotel's own build cannot "
                f"include it; run the config with the contrib distribution ({CONTRIB_IMAGE}) "
                "or point MFOTEL_COLLECTOR_BIN at an otelcol-contrib binary)"
            )
        if "could not retrieve credential provider" in output:
            output += (
                "\n(hint: the sigv4auth extension needs AWS credentials when the collector "
                "starts: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or a role)"
            )
    return Verdict(ok=proc.returncode == 0, output=output, binary=exe)


def missing_env(text: str) -> list[str]:
    """The ${env:NAME} references without a default whose variable is unset here."""
    names = re.findall(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}", text)
    return sorted({n for n in names if not os.environ.get(n)})


def run(config: Path, binary: Path | None = None) -> int:
    """Run the collector in the foreground with ``config`` until it exits; its exit code."""
    exe = binary or require_binary()
    try:
        return subprocess.call([str(exe), f"--config={config}"])
    except KeyboardInterrupt:
        return 130
