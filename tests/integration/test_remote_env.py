"""What a launcher of remote tasks hands on: Metaflow's Kubernetes job (and Argo) builds the
pod's environment with ``metaflow.tracing.inject_tracing_vars({})`` in a process that is
neither the runtime nor a task (``kubernetes step``); with mfotel that environment carries
the trace context and the telemetry settings, and nothing host-only or secret."""

from __future__ import annotations

import json
import os
import subprocess
import sys

PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
PROBE = (
    "import json; from metaflow.tracing import inject_tracing_vars; "
    "print(json.dumps(inject_tracing_vars({})))"
)


def _pod_env(**env: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "MFOTEL_", "MF_"))}
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result: dict[str, str] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_a_pod_gets_the_trace_context_and_the_settings() -> None:
    pod = _pod_env(
        MF_TRACING="otlp",
        TRACEPARENT=PARENT,
        OTEL_EXPORTER_OTLP_ENDPOINT="http://otel-collector.observability:4318",
        OTEL_SERVICE_NAME="ml-platform",
        MFOTEL_PROFILE="prod",
        MFOTEL_TAGS="team:ml",
    )
    assert pod["TRACEPARENT"] == PARENT and pod["traceparent"] == PARENT
    assert pod["MF_TRACING"] == "otlp"
    assert pod["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector.observability:4318"
    assert (pod["OTEL_SERVICE_NAME"], pod["MFOTEL_PROFILE"]) == ("ml-platform", "prod")
    assert pod["MFOTEL_TAGS"] == "team:ml"


def test_nothing_host_only_or_secret_reaches_the_pod() -> None:
    pod = _pod_env(
        MF_TRACING="otlp",
        OTEL_EXPORTER_OTLP_HEADERS="dd-api-key=0123456789abcdef",
        OTEL_EXPORTER_OTLP_LOGS_HEADERS="x-sf-token=abc",
        OTEL_EXPORTER_OTLP_CLIENT_KEY="/home/me/key.pem",
        OTEL_EXPORTER_OTLP_CERTIFICATE="/home/me/ca.pem",
        MFOTEL_AGENT_SOCKET="/tmp/mfotel/1.sock",
        MFOTEL_RELAY_SOCKET="/tmp/mfotel/1.relay",
        MFOTEL_SPOOL_DIR="/home/me/.metaflow/.mfotel/spool",
        MFOTEL_STATE_DIR="/home/me/.metaflow/.mfotel",
        MFOTEL_LAUNCH_NS="1",
    )
    assert set(pod) == {"MF_TRACING"}, pod


def test_without_mfotel_metaflows_own_tracing_answers() -> None:
    """MF_TRACING unset: Metaflow's own metaflow.tracing, which passes nothing here."""
    assert _pod_env(TRACEPARENT=PARENT) == {}


def _decospecs(**env: str) -> str:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "MFOTEL_", "MF_"))}
    base = {k: v for k, v in base.items() if k != "METAFLOW_DEFAULT_DECOSPECS"}
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from metaflow import metaflow_config as c; print(c.DEFAULT_DECOSPECS)",
        ],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""


def test_every_step_gets_mfotel_beside_the_users_own_default_decorators() -> None:
    """With tracing on, @mfotel joins the default decorators (the user's kept); off, nothing."""
    assert _decospecs(MF_TRACING="otlp") == "mfotel"
    assert _decospecs(MF_TRACING="otlp", METAFLOW_DEFAULT_DECOSPECS="retry:times=2") == (
        "retry:times=2 mfotel"
    )
    assert _decospecs() == ""
    assert _decospecs(METAFLOW_DEFAULT_DECOSPECS="retry") == "retry"
