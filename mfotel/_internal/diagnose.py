"""``mfotel doctor``: what a run started here would do, and whether it can."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from mfotel import __version__, settings
from mfotel._internal.agent.spool import Spool
from mfotel._internal.otlp.config import ConfigError, resolve_target
from mfotel._internal.paths import spool_dir as default_spool_dir

SIGNALS = ("traces", "logs", "metrics")


@dataclass
class Report:
    ok: bool
    text: str


def _reachable(endpoint: str, protocol: str) -> str:
    url = urlsplit(endpoint if "://" in endpoint else "http://" + endpoint)
    host = url.hostname or "localhost"
    port = url.port or (443 if url.scheme == "https" else 4317 if protocol == "grpc" else 4318)
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return "answers"
    except OSError as exc:
        return f"does not answer ({exc.strerror or exc})"


def _extension_state(environ: Mapping[str, str]) -> str:
    """Ask a fresh interpreter, as a run would see it: is the override active?"""
    probe = (
        "import metaflow.tracing as t, metaflow.extension_support as e;"
        "print('mfotel' in e.extension_info()['installed'], t.cli.__module__)"
    )
    try:
        out = subprocess.run(
            [sys.executable, "-c", probe],
            env=dict(environ),
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unknown ({exc})"
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or ["no output"])[-1]
        return f"Metaflow does not import: {last}"
    installed, module = [*out.stdout.split(), "", ""][:2]
    if installed != "True":
        return "NOT installed: Metaflow does not see the mfotel extension (pip install mfotel)"
    if module.startswith("mfotel."):
        return "active (metaflow.tracing is mfotel's)"
    return "installed, inactive (MF_TRACING is off)"


def run(environ: Mapping[str, str], spool_folder: str | None = None) -> Report:
    ok = True
    lines = [f"mfotel {__version__} (python {sys.version.split()[0]})", "", "Settings:"]
    for var in settings.ALL:
        try:
            value = var.get_str(environ)
        except settings.SettingError as exc:
            ok = False
            value = f"INVALID: {exc}"
        lines.append(f"  {var.name:<28} {value or '(unset)'}  [{var.source(environ)}]")
    lines += ["", f"Metaflow extension: {_extension_state(environ)}", "", "OTLP export:"]
    for signal in SIGNALS:
        try:
            target = resolve_target(signal, environ)  # type: ignore[arg-type]
        except ConfigError as exc:
            ok = False
            lines.append(f"  {signal:<8} INVALID: {exc}")
            continue
        source = target.sources.get("endpoint")
        where = f" [{source.source}]" if source is not None else ""
        state = _reachable(target.endpoint, target.protocol)
        if state != "answers":
            ok = False
        lines.append(f"  {signal:<8} {target.protocol:<14} {target.endpoint}{where}: {state}")
        for warning in target.warnings:
            lines.append(f"           warning: {warning}")
    remote = settings.MFOTEL_REMOTE_ENDPOINT.get_str(environ)
    if remote:
        from mfotel._internal.remote import remote_endpoint_problem

        problem = remote_endpoint_problem(environ)
        ok = ok and problem is None
        lines.append(f"  remote steps send to {remote}: {problem or 'a usable URL'}")
    folder = os.path.abspath(spool_folder) if spool_folder else default_spool_dir(environ)
    pending = Spool(folder, 1 << 62).pending()
    waiting = sum(pending.values())
    lines += ["", f"Spool: {folder}"]
    if waiting:
        detail = ", ".join(f"{k} {v}" for k, v in pending.items() if v)
        lines.append(f"  {waiting} item(s) waiting ({detail}): run `mfotel replay`")
    else:
        lines.append("  empty")
    return Report(ok, "\n".join(lines))
