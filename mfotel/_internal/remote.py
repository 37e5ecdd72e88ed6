"""What a step that runs elsewhere gets from the machine that launches or deploys it.

A step runs elsewhere when it has ``@batch`` or ``@kubernetes``, or when the command compiles
a deployment (Argo Workflows, Step Functions, Airflow), whose every step runs in a container
days later. Such a step's container gets, through its ``@environment`` variables (which every
one of Metaflow's launchers and compilers reads): ``MF_TRACING``, the kit's own settings, the
``OTEL_*`` exporter settings (never headers, certificates or client keys: those belong in the
platform's secret store), and either the trace context of the run that launches it or, in a
deployment, the scheduler's expression for the run's start time, with which the tasks make
each run's root span (a deployment's runs are not this process's trace).

Standard library only: the task side imports this too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, MutableMapping, Sequence

ENV_SOCKET = "MFOTEL_AGENT_SOCKET"
ENV_REMOTE_ENDPOINT = "MFOTEL_REMOTE_ENDPOINT"
ENV_RUN_START = "MFOTEL_RUN_START"
ENDPOINT = "OTEL_EXPORTER_OTLP_ENDPOINT"
SIGNAL_ENDPOINTS = tuple(f"OTEL_EXPORTER_OTLP_{s}_ENDPOINT" for s in ("TRACES", "LOGS", "METRICS"))
REMOTE_DECORATORS = ("batch", "kubernetes")

# Each scheduler's own expression for "when this run started", filled in by the scheduler in
# the step's environment: an Argo workflow variable, a Step Functions context path (Metaflow
# passes a value starting with "$$." as a path), an Airflow template.
RUN_START = {
    "argo-workflows": "{{workflow.creationTimestamp}}",
    "step-functions": "$$.Execution.StartTime",
    "airflow": "{{ dag_run.start_date.isoformat() if dag_run and dag_run.start_date else '' }}",
}

# Paths and sockets of the launching host, and marks that only mean something there.
_HOST_ONLY = frozenset(
    {
        ENV_SOCKET,
        "MFOTEL_SPOOL_DIR",
        "MFOTEL_STATE_DIR",
        "MFOTEL_LAUNCH_NS",
        "MFOTEL_RELAY_SOCKET",
        "MFOTEL_WARNED",
        "MFOTEL_INERT",
        "MFOTEL_COLLECTOR_BIN",
        ENV_RUN_START,
    }
)
# Exporter headers, TLS files and anything named like a credential stay on this machine.
_SECRET_WORDS = ("HEADERS", "CERTIFICATE", "KEY", "PASSWORD", "TOKEN", "SECRET", "CREDENTIAL")
_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/@]*@")


def metaflow_command() -> list[str]:
    """What this Metaflow process was asked to do after its top-level options, as Metaflow's
    own CLI keeps it (``["argo-workflows", "create", ...]``); [] outside a command."""
    try:
        from metaflow._vendor import click

        context = click.get_current_context(silent=True)
        saved = getattr(context.find_root(), "saved_args", None) if context else None
    except Exception:
        return []
    return [str(arg) for arg in saved] if saved else []


def deployer(command: Sequence[str]) -> str | None:
    """``argo-workflows``, ``step-functions`` or ``airflow`` when ``command`` compiles one.
    (Decided from the command itself, never from any word on the command line: a tag or a
    step may well be called ``airflow``.)"""
    if command and command[0] in RUN_START and "create" in command[1:]:
        return command[0]
    return None


def runs_elsewhere(decorator_names: Iterable[str], command: Sequence[str] | None = None) -> bool:
    """Whether a step with these decorators, in this command, runs in another machine (a
    task itself, ``step``, launches nothing: it is the step that ran elsewhere)."""
    command = metaflow_command() if command is None else command
    if command[:1] in (["step"], ["init"]):
        return False
    if any(name in REMOTE_DECORATORS for name in decorator_names):
        return True
    return deployer(command) is not None


def forwarded(key: str) -> bool:
    """Whether a launcher passes this variable of its own on to a remote step."""
    if key == "MF_TRACING":
        return True
    if key.startswith("MFOTEL_"):
        return key not in _HOST_ONLY
    if key.startswith("OTEL_"):
        return not any(word in key for word in _SECRET_WORDS)
    return False


def container_env(
    environ: Mapping[str, str], command: Sequence[str] | None = None
) -> dict[str, str]:
    """The variables a remote step's container gets from a launcher whose env is ``environ``."""
    env = {key: value for key, value in environ.items() if forwarded(key)}
    for key, value in env.items():
        if key.endswith("ENDPOINT"):
            env[key] = _USERINFO.sub(r"\1", value)  # never a user:password@ in a URL
    if environ.get(ENV_REMOTE_ENDPOINT, "").strip():
        # The launching machine's own endpoints mean nothing in the container.
        for key in (ENDPOINT, *SIGNAL_ENDPOINTS):
            env.pop(key, None)
    deploy = deployer(metaflow_command() if command is None else command)
    if deploy is not None:
        # Every run of the deployment starts its own trace, whose root the tasks make.
        env[ENV_RUN_START] = RUN_START[deploy]
    else:
        # A launch (`batch step`, `kubernetes step`): the remote task joins this trace.
        from mfotel.traces._propagation import extract, inject, parse_propagators

        propagators = parse_propagators(environ.get("OTEL_PROPAGATORS"))
        parent, baggage = extract(environ, propagators)
        if parent is not None:
            inject(parent, baggage, propagators, env)
    return env


_REFERENCE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(value: str, environ: Mapping[str, str]) -> tuple[str, list[str]]:
    """``$(VAR)`` references, as Kubernetes expands them (``$$`` is a literal ``$``), and the
    names of those this environment does not define, which stay as written.

    A pod expands ``$(VAR)`` only for variables defined earlier in its env list; Metaflow
    lists the downward-API ones (``METAFLOW_KUBERNETES_NODE_IP``) last, so the task expands
    what Kubernetes could not.
    """
    missing: list[str] = []

    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if name is None:
            return "$"
        if name in environ:
            return environ[name]
        missing.append(name)
        return match.group(0)

    return _REFERENCE.sub(one, value), missing


def apply_remote_endpoint(environ: MutableMapping[str, str]) -> str | None:
    """In a remote task: ``MFOTEL_REMOTE_ENDPOINT`` becomes the OTLP endpoint of this process
    and its children. Returns a warning line when it refers to what this container lacks."""
    raw = environ.get(ENV_REMOTE_ENDPOINT, "").strip()
    if not raw:
        return None
    value, missing = expand(raw, environ)
    environ[ENDPOINT] = value
    for key in SIGNAL_ENDPOINTS:
        environ.pop(key, None)
    if missing:
        return (
            f"{ENV_REMOTE_ENDPOINT}={raw!r} refers to {', '.join(missing)}, which this "
            "container does not define; telemetry is spooled (set the variable, or use a "
            "literal address)"
        )
    return None


def remote_endpoint_problem(environ: Mapping[str, str]) -> str | None:
    """Whether ``MFOTEL_REMOTE_ENDPOINT`` can work in a container, checked where the flow is
    launched or deployed (``$(VAR)`` stands for a host name there): a line naming the value
    and the fix, or None."""
    raw = environ.get(ENV_REMOTE_ENDPOINT, "").strip()
    if not raw:
        return None
    from mfotel._internal.otlp.config import ConfigError, resolve_target

    _, references = expand(raw, {})
    value, _ = expand(raw, dict.fromkeys(references, "node"))
    probe = {k: v for k, v in environ.items() if k.startswith("OTEL_EXPORTER_OTLP_PROTOCOL")}
    probe[ENDPOINT] = value
    try:
        resolve_target("traces", probe)
    except ConfigError as exc:
        detail = str(exc).replace(f"{ENDPOINT}={value!r}", "it")
        return (
            f"{ENV_REMOTE_ENDPOINT}={raw!r} cannot work in the steps' containers ({detail}); "
            "their telemetry would be spooled: set it to a URL such as http://host:4318"
        )
    return None
