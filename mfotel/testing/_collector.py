"""A real OpenTelemetry Collector for tests: rendered config in, running process out.

``CollectorProcess`` runs a collector binary (the kit's ocb build, or any otelcol) on loopback
ports chosen at start; ``render_for`` renders a target's config onto those ports. Where a Docker
engine exists the same interface could start the official contrib image instead; the binary is
what runs here, and on every machine with Go.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from mfotel.collector import render


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class CollectorProcess:
    """A collector process on loopback; use as a context manager.

    ``grpc_endpoint`` / ``http_endpoint`` are where flows send OTLP (``http://127.0.0.1:P``);
    ``output()`` is what the collector printed so far.
    """

    def __init__(self, binary: Path, workdir: Path | None = None) -> None:
        self.binary = binary
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="mfotel-collector-"))
        self.grpc_port = free_port()
        self.http_port = free_port()
        self.health_port = free_port()
        self.telemetry_port = free_port()
        self.grpc_endpoint = f"http://127.0.0.1:{self.grpc_port}"
        self.http_endpoint = f"http://127.0.0.1:{self.http_port}"
        self.config_path = self.workdir / "otelcol.yaml"
        self._log = self.workdir / "collector.log"
        self._proc: subprocess.Popen[bytes] | None = None

    def render_for(
        self, targets: Sequence[str], profile: str = "dev", assignments: Sequence[str] = ()
    ) -> str:
        """Render ``targets`` onto this process's ports; the text is also written to config_path."""
        text = render(
            list(targets),
            profile,
            [
                f"grpc_endpoint=127.0.0.1:{self.grpc_port}",
                f"http_endpoint=127.0.0.1:{self.http_port}",
                f"health_endpoint=127.0.0.1:{self.health_port}",
                f"telemetry_endpoint=127.0.0.1:{self.telemetry_port}",
                *assignments,
            ],
        )
        self.config_path.write_text(text)
        return text

    def start(self, env: dict[str, str] | None = None, timeout: float = 30.0) -> None:
        """Start with config_path and wait until the health check says the collector is ready."""
        log = self._log.open("ab")
        self._proc = subprocess.Popen(
            [str(self.binary), f"--config={self.config_path}"],
            cwd=self.workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
        log.close()
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.health_port}/"
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                code = self._proc.returncode
                raise RuntimeError(f"the collector exited {code}:\n{self.output()}")
            try:
                with urllib.request.urlopen(url, timeout=1) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the collector was not ready in {timeout}s:\n{self.output()}")

    def stop(self, timeout: float = 30.0) -> int | None:
        """Stop it gracefully (SIGTERM flushes its queues); its exit code."""
        proc, self._proc = self._proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return proc.returncode

    def output(self) -> str:
        return self._log.read_text(errors="replace") if self._log.exists() else ""

    def __enter__(self) -> CollectorProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
