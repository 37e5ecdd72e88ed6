"""Every setting of the kit: its environment variable, default and meaning.

This module is the reference documentation for ``MF_TRACING`` and the ``MFOTEL_*`` variables;
``mfotel doctor`` prints each one with its resolved value and where that value came from.
The standard ``OTEL_*`` exporter variables are honoured as the OpenTelemetry specification
says and are resolved in :mod:`mfotel._internal.otlp.config`.

It is imported by every task process, so it stays standard-library only and cheap.

Not settings, and not to be set by hand: the variables mfotel's own processes hand each
other (``MFOTEL_AGENT_SOCKET``, ``MFOTEL_RELAY_SOCKET``, ``MFOTEL_LAUNCH_NS``,
``MFOTEL_WARNED``, ``MFOTEL_INERT``) and ``MFOTEL_RUN_START``, which a deployment's steps get
from the scheduler (its own expression for the run's start time, written when the flow is
deployed).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

__all__ = [
    "ALL",
    "MFOTEL_CAPTURE_LOGS",
    "MFOTEL_COLLECTOR_BIN",
    "MFOTEL_DEBUG",
    "MFOTEL_EXPORT_INTERVAL_MS",
    "MFOTEL_METRIC_INTERVAL_MS",
    "MFOTEL_PROFILE",
    "MFOTEL_REMOTE_ENDPOINT",
    "MFOTEL_SHUTDOWN_TIMEOUT_MS",
    "MFOTEL_SPOOL_DIR",
    "MFOTEL_SPOOL_MAX_MB",
    "MFOTEL_STATE_DIR",
    "MFOTEL_TAGS",
    "MF_TRACING",
    "EnvVar",
    "SettingError",
    "check_all",
    "tracing_mode",
]

MODES = ("off", "otlp", "console")


class SettingError(ValueError):
    """A setting has a value the kit cannot use; the message is one line naming the fix."""


class EnvVar:
    """One environment variable the kit reads.

    ``kind`` is ``str``, ``int``, ``bool`` or ``choice``; ``choices`` lists the accepted values
    of a ``choice``. ``minimum`` bounds an ``int``. (A plain class, not a dataclass: this
    module is imported by every task process and dataclasses cost import time.)
    """

    __slots__ = ("choices", "default", "doc", "kind", "minimum", "name")

    def __init__(
        self,
        name: str,
        default: str,
        doc: str,
        kind: str = "str",
        choices: tuple[str, ...] = (),
        minimum: int = 0,
    ) -> None:
        self.name = name
        self.default = default
        self.doc = doc
        self.kind = kind
        self.choices = choices
        self.minimum = minimum

    def __repr__(self) -> str:
        return f"EnvVar({self.name!r}, default={self.default!r})"

    def raw(self, environ: Mapping[str, str] | None = None) -> str | None:
        env = os.environ if environ is None else environ
        value = env.get(self.name)
        return None if value is None or value.strip() == "" else value.strip()

    def source(self, environ: Mapping[str, str] | None = None) -> str:
        return "environment" if self.raw(environ) is not None else "default"

    def get_str(self, environ: Mapping[str, str] | None = None) -> str:
        value = self.raw(environ)
        if value is None:
            return self.default
        if self.kind == "choice":
            lowered = value.lower()
            if lowered not in self.choices:
                raise SettingError(
                    f"{self.name}={value!r} is not one of {', '.join(self.choices)}: "
                    f"set {self.name} to one of them or unset it"
                )
            return lowered
        return value

    def get_int(self, environ: Mapping[str, str] | None = None) -> int:
        text = self.get_str(environ)
        try:
            number = int(text)
        except ValueError:
            raise SettingError(
                f"{self.name}={text!r} is not a whole number: set it to e.g. {self.default}"
            ) from None
        if number < self.minimum:
            raise SettingError(f"{self.name}={number} is below {self.minimum}: raise it")
        return number

    def get_bool(self, environ: Mapping[str, str] | None = None) -> bool:
        text = self.get_str(environ).lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise SettingError(f"{self.name}={text!r} is not a boolean: set it to true or false")


MF_TRACING = EnvVar(
    "MF_TRACING",
    "off",
    "`otlp` sends every Metaflow signal over OTLP; `console` prints the same signals, "
    "human-readable, on stderr; `off` (or unset) leaves Metaflow untouched.",
    kind="choice",
    choices=MODES,
)
MFOTEL_STATE_DIR = EnvVar(
    "MFOTEL_STATE_DIR",
    "",
    "The kit's own folder: the spool, the ledger of log lines delivered live (`delivered/`), "
    "and `mfotel backfill`'s checkpoints (`backfill/`). Default: `.mfotel` under Metaflow's "
    "local datastore root (the `.metaflow` folder).",
)
MFOTEL_SPOOL_DIR = EnvVar(
    "MFOTEL_SPOOL_DIR",
    "",
    "Where telemetry waits when no collector answers, for `mfotel replay`. Default: "
    "`spool` in the state folder (MFOTEL_STATE_DIR).",
)
MFOTEL_SPOOL_MAX_MB = EnvVar(
    "MFOTEL_SPOOL_MAX_MB",
    "512",
    "Upper bound of the spool in MiB. Past it new telemetry is dropped and counted, "
    "with one warning line.",
    kind="int",
    minimum=1,
)
MFOTEL_PROFILE = EnvVar(
    "MFOTEL_PROFILE",
    "dev",
    "The deployment profile; also the default `deployment.environment.name` when "
    "OTEL_RESOURCE_ATTRIBUTES does not set one.",
)
MFOTEL_TAGS = EnvVar(
    "MFOTEL_TAGS",
    "",
    "Extra comma-separated tags added to `metaflow.tags` on all telemetry (not to the run). "
    "Each is checked with Metaflow's tag rules; an invalid one is skipped with a warning.",
)
MFOTEL_EXPORT_INTERVAL_MS = EnvVar(
    "MFOTEL_EXPORT_INTERVAL_MS",
    "200",
    "How often the agent sends batched spans and log records, in milliseconds.",
    kind="int",
    minimum=10,
)
MFOTEL_METRIC_INTERVAL_MS = EnvVar(
    "MFOTEL_METRIC_INTERVAL_MS",
    "10000",
    "How often the agent sends cumulative metrics while a run is going, in milliseconds "
    "(they are always sent once more at the end of the run).",
    kind="int",
    minimum=100,
)
MFOTEL_SHUTDOWN_TIMEOUT_MS = EnvVar(
    "MFOTEL_SHUTDOWN_TIMEOUT_MS",
    "5000",
    "At the end of a run, how long the agent may keep sending before it spools the rest; "
    "the run's command waits at most this long (plus a second) for it.",
    kind="int",
    minimum=0,
)
MFOTEL_CAPTURE_LOGS = EnvVar(
    "MFOTEL_CAPTURE_LOGS",
    "true",
    "Capture every line a task writes to stdout/stderr (Python, C extensions, subprocesses) "
    "as a log record. `false` leaves the task's file descriptors alone.",
    kind="bool",
)
MFOTEL_REMOTE_ENDPOINT = EnvVar(
    "MFOTEL_REMOTE_ENDPOINT",
    "",
    "Where steps that run elsewhere (`@batch`, `@kubernetes`, Argo Workflows, Step Functions, "
    "Airflow) send their OTLP, in place of this machine's OTEL_EXPORTER_OTLP_ENDPOINT (and "
    "the per-signal endpoints), which would name this machine. `$(VAR)` is replaced with the "
    "container's variable VAR, as Kubernetes does, e.g. "
    "`http://$(METAFLOW_KUBERNETES_NODE_IP):4318` for a collector DaemonSet on each node; "
    "`http://otel-gateway.observability:4318` for a gateway Service. Empty: remote steps get "
    "OTEL_EXPORTER_OTLP_ENDPOINT as it is here.",
)
MFOTEL_COLLECTOR_BIN = EnvVar(
    "MFOTEL_COLLECTOR_BIN",
    "",
    "The OpenTelemetry Collector binary `mfotel validate-config` and `mfotel collector run` use. "
    "Empty: the kit's own build (`mfotel collector build`), cached in ~/.cache/mfotel.",
)
MFOTEL_DEBUG = EnvVar(
    "MFOTEL_DEBUG",
    "false",
    "Print the agent's own diagnostics on stderr.",
    kind="bool",
)

ALL: tuple[EnvVar, ...] = (
    MF_TRACING,
    MFOTEL_STATE_DIR,
    MFOTEL_SPOOL_DIR,
    MFOTEL_SPOOL_MAX_MB,
    MFOTEL_PROFILE,
    MFOTEL_TAGS,
    MFOTEL_EXPORT_INTERVAL_MS,
    MFOTEL_METRIC_INTERVAL_MS,
    MFOTEL_SHUTDOWN_TIMEOUT_MS,
    MFOTEL_CAPTURE_LOGS,
    MFOTEL_REMOTE_ENDPOINT,
    MFOTEL_COLLECTOR_BIN,
    MFOTEL_DEBUG,
)


def check_all(environ: Mapping[str, str] | None = None) -> None:
    """Raise :class:`SettingError` for the first setting whose value the kit cannot use."""
    for var in ALL:
        if var.kind == "int":
            var.get_int(environ)
        elif var.kind == "bool":
            var.get_bool(environ)
        else:
            var.get_str(environ)


def tracing_mode(environ: Mapping[str, str] | None = None) -> str:
    """``off``, ``otlp`` or ``console``; raises :class:`SettingError` for anything else."""
    return MF_TRACING.get_str(environ)
