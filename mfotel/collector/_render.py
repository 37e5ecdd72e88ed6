"""Render OpenTelemetry Collector configs from the per-target templates.

Each target is a folder under ``targets/``: ``target.yaml`` declares its settings (default, doc,
choices or pattern; a secret is an environment variable, never a value) and
``template.yaml.j2`` renders a fragment: the target's exporters, processors, extensions and, per
signal, the processors and exporters of its pipelines. This module adds what every config has:
the OTLP receiver (gRPC and HTTP), ``memory_limiter``, redaction of secrets, the environment
step, batching, the health check and, in the ``prod`` profile, a persistent sending queue.

Several targets render into one config (fan-out): the receiver and the common processors are
shared, each target gets its own pipelines, named ``<signal>/<target>``.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import yaml

TARGETS_DIR = Path(__file__).with_name("targets")
PROFILES = ("dev", "prod")

# Exporters that send over the network get retries, and in prod a queue kept on disk.
_NETWORK_EXPORTERS = frozenset(
    {"otlp_grpc", "otlp_http", "otlp", "otlphttp", "datadog", "splunk_hec"}
)


class RenderError(ValueError):
    """Bad input to the renderer; the message is one line naming the input and the fix."""


@dataclass(frozen=True)
class Setting:
    name: str
    default: str
    doc: str
    choices: tuple[str, ...] = ()
    pattern: str = ""
    env: str = ""  # a secret: rendered as ${env:ENV}, refused on --set

    def check(self, where: str, value: str) -> str:
        if self.env:
            raise RenderError(
                f"{where} is a secret and is never written into a config: "
                f"export {self.env} instead (the config reads ${{env:{self.env}}})"
            )
        if self.choices and value not in self.choices:
            raise RenderError(
                f"{where}={value!r} is not valid: choose one of {', '.join(self.choices)}"
            )
        if self.pattern and not re.fullmatch(self.pattern, value):
            raise RenderError(f"{where}={value!r} is not valid: {self.doc}")
        return value


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    settings: Mapping[str, Setting]
    template: str
    readme: Path

    @classmethod
    def load(cls, folder: Path) -> Target:
        spec = yaml.safe_load((folder / "target.yaml").read_text())
        settings = {
            key: Setting(
                name=key,
                default=str(raw.get("default", "")),
                doc=str(raw.get("doc", "")),
                choices=tuple(str(c) for c in raw.get("choices", ())),
                pattern=str(raw.get("pattern", "")),
                env=str(raw.get("env", "")),
            )
            for key, raw in (spec.get("settings") or {}).items()
        }
        return cls(
            name=folder.name,
            description=str(spec["description"]),
            settings=settings,
            template=(folder / "template.yaml.j2").read_text(),
            readme=folder / "README.md",
        )


# Settings every config has, whatever its targets.
COMMON: Mapping[str, Setting] = {
    s.name: s
    for s in (
        Setting(
            "grpc_endpoint",
            "localhost:4317",
            "where the OTLP/gRPC receiver listens (host:port)",
            pattern=r"[^\s:]*:\d{1,5}",
        ),
        Setting(
            "http_endpoint",
            "localhost:4318",
            "where the OTLP/HTTP receiver listens (host:port)",
            pattern=r"[^\s:]*:\d{1,5}",
        ),
        Setting(
            "health_endpoint",
            "localhost:13133",
            "where the health check answers (host:port)",
            pattern=r"[^\s:]*:\d{1,5}",
        ),
        Setting(
            "telemetry_endpoint",
            "localhost:8888",
            "where the collector serves its own metrics for Prometheus (host:port); change it "
            "when another collector on the host already uses 8888",
            pattern=r"[^\s:]*:\d{1,5}",
        ),
        Setting(
            "memory_limit_mib",
            "512",
            "the collector's memory ceiling in MiB (an integer >= 32)",
            pattern=r"(3[2-9]|[4-9]\d|[1-9]\d{2,5})",
        ),
        Setting(
            "environment",
            "",
            "deployment.environment.name given to telemetry that has none",
            pattern=r"[A-Za-z0-9._-]{0,64}",
        ),
        Setting(
            "queue_dir",
            "./mfotel-collector-queue",
            "prod profile: the directory of the persistent sending queue",
            pattern=r"\S+",
        ),
    )
}

# Secret-looking values masked wherever they appear in attribute values and log bodies (RE2).
REDACTED_VALUES = (
    r"(A3T[A-Z0-9]|AKIA|ASIA)[A-Z0-9]{16}",  # AWS access key ids
    r"(?i)bearer\s+[a-z0-9._~+/=-]{16,}",  # bearer tokens
    r"gh[pousr]_[A-Za-z0-9]{36,}",  # GitHub tokens
    r"xox[abprs]-[A-Za-z0-9-]{10,}",  # Slack tokens
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----",  # PEM private keys
    r"(?i)(password|passwd|secret|api[_-]?key|access[_-]?token)\s*[=:]\s*[^\s,;]{6,}",
)
# Attribute keys whose values are always masked.
REDACTED_KEYS = (
    r"(?i)^(.*[._-])?(password|passwd|secret|api[_-]?key|access[_-]?key|auth[_-]?token|authorization|credentials?)$",
)


def targets() -> dict[str, Target]:
    """Every target the kit ships, by name."""
    return {
        folder.name: Target.load(folder)
        for folder in sorted(TARGETS_DIR.iterdir())
        if (folder / "target.yaml").is_file()
    }


@dataclass
class _Resolved:
    common: dict[str, str] = field(default_factory=dict)
    per_target: dict[str, dict[str, str]] = field(default_factory=dict)


def _resolve(chosen: Sequence[Target], assignments: Iterable[str]) -> _Resolved:
    out = _Resolved(
        common={k: s.default for k, s in COMMON.items()},
        per_target={
            t.name: {
                k: (f"${{env:{s.env}}}" if s.env else s.default) for k, s in t.settings.items()
            }
            for t in chosen
        },
    )
    for item in assignments:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise RenderError(
                f"--set {item!r} is not KEY=VALUE: write for example --set environment=prod"
            )
        tname, dot, short = key.rpartition(".")
        if dot:
            target = next((t for t in chosen if t.name == tname), None)
            if target is None:
                raise RenderError(
                    f"--set {key}: {tname!r} is not a chosen target "
                    f"(chosen: {', '.join(t.name for t in chosen)})"
                )
            setting = target.settings.get(short)
            if setting is None:
                raise RenderError(_unknown(key, _valid_keys(chosen)))
            out.per_target[tname][short] = setting.check(key, value)
            continue
        owners = [t for t in chosen if key in t.settings]
        if key in COMMON:
            out.common[key] = COMMON[key].check(key, value)
        elif len(owners) == 1:
            out.per_target[owners[0].name][key] = owners[0].settings[key].check(key, value)
        elif owners:
            names = ", ".join(f"{t.name}.{key}" for t in owners)
            raise RenderError(
                f"--set {key} is ambiguous with several targets: write one of {names}"
            )
        else:
            raise RenderError(_unknown(key, _valid_keys(chosen)))
    return out


def _valid_keys(chosen: Sequence[Target]) -> list[str]:
    keys = list(COMMON)
    for t in chosen:
        keys += [k for k, s in t.settings.items() if not s.env]
    return keys


def _unknown(key: str, valid: list[str]) -> str:
    return f"--set {key}: unknown setting; valid settings are {', '.join(sorted(set(valid)))}"


def _fragment(target: Target, values: Mapping[str, str], profile: str) -> dict[str, Any]:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TARGETS_DIR),  # shared macros: targets/_*.j2
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    env.filters["yaml"] = lambda v: yaml.safe_dump(
        v, default_flow_style=True, width=1 << 16
    ).strip()
    env.filters["csv"] = lambda v: [item.strip() for item in str(v).split(",") if item.strip()]
    env.filters["tojson"] = lambda v: yaml.safe_dump(
        str(v), default_style='"', width=1 << 16
    ).strip()
    text = env.from_string(target.template).render(
        name=target.name, s=values, profile=profile, prod=profile == "prod"
    )
    data = yaml.safe_load(text)
    if not isinstance(data, dict) or "pipelines" not in data:
        raise RenderError(
            f"target {target.name}: its template rendered no pipelines (a bug in mfotel)"
        )
    return data


def _prometheus_reader(endpoint: str) -> dict[str, Any]:
    host, _, port = endpoint.rpartition(":")
    return {"pull": {"exporter": {"prometheus": {"host": host or "0.0.0.0", "port": int(port)}}}}


def render(
    target_names: Sequence[str],
    profile: str = "dev",
    assignments: Iterable[str] = (),
    command: str | None = None,
) -> str:
    """The collector config for ``target_names`` as YAML text, ready for ``otelcol --config``."""
    available = targets()
    if not target_names:
        raise RenderError(f"no --target given: choose one or more of {', '.join(available)}")
    chosen: list[Target] = []
    for name in target_names:
        if name not in available:
            raise RenderError(f"--target {name!r} is unknown: choose one of {', '.join(available)}")
        if name not in (t.name for t in chosen):
            chosen.append(available[name])
    if profile not in PROFILES:
        raise RenderError(f"--profile {profile!r} is unknown: choose one of {', '.join(PROFILES)}")
    resolved = _resolve(chosen, list(assignments))
    c = resolved.common
    prod = profile == "prod"

    extensions: dict[str, Any] = {"health_check": {"endpoint": c["health_endpoint"]}}
    processors: dict[str, Any] = {
        "memory_limiter": {
            "check_interval": "1s",
            "limit_mib": int(c["memory_limit_mib"]),
            "spike_limit_mib": int(c["memory_limit_mib"]) // 4,
        },
        "redaction/secrets": {
            "allow_all_keys": True,
            "blocked_key_patterns": list(REDACTED_KEYS),
            "blocked_values": list(REDACTED_VALUES),
            "summary": "silent",
        },
    }
    common_procs = ["memory_limiter", "redaction/secrets"]
    if c["environment"]:
        processors["resource/environment"] = {
            "attributes": [
                {
                    "key": "deployment.environment.name",
                    "value": c["environment"],
                    "action": "insert",
                }
            ]
        }
        common_procs.append("resource/environment")
    processors["batch"] = {"send_batch_size": 8192, "timeout": "1s" if prod else "200ms"}

    config: dict[str, Any] = {
        "extensions": extensions,
        "receivers": {
            "otlp": {
                "protocols": {
                    "grpc": {"endpoint": c["grpc_endpoint"]},
                    "http": {"endpoint": c["http_endpoint"]},
                }
            }
        },
        "processors": processors,
        "exporters": {},
        "service": {
            "extensions": list(extensions),
            "telemetry": {"metrics": {"readers": [_prometheus_reader(c["telemetry_endpoint"])]}},
            "pipelines": {},
        },
    }
    env_vars: list[str] = []
    for target in chosen:
        frag = _fragment(target, resolved.per_target[target.name], profile)
        for section in ("exporters", "processors", "extensions"):
            for key, value in (frag.get(section) or {}).items():
                if key in config[section]:
                    raise RenderError(
                        f"target {target.name}: component {key} is defined twice (a bug in mfotel)"
                    )
                config[section][key] = value
                if section == "extensions":
                    config["service"]["extensions"].append(key)
        for signal, pipe in frag["pipelines"].items():
            config["service"]["pipelines"][f"{signal}/{target.name}"] = {
                "receivers": ["otlp"],
                "processors": [*common_procs, *(pipe.get("processors") or []), "batch"],
                "exporters": list(pipe["exporters"]),
            }
        env_vars += [s.env for s in target.settings.values() if s.env]
    for name, exporter in config["exporters"].items():
        if name.split("/")[0] not in _NETWORK_EXPORTERS:
            continue
        exporter.setdefault(
            "retry_on_failure", {"enabled": True, "max_elapsed_time": "300s" if prod else "60s"}
        )
        queue = exporter.setdefault("sending_queue", {"enabled": True})
        if prod:
            queue["storage"] = "file_storage/queue"
            if "file_storage/queue" not in config["extensions"]:
                config["extensions"]["file_storage/queue"] = {
                    "directory": c["queue_dir"],
                    "create_directory": True,
                }
                config["service"]["extensions"].append("file_storage/queue")

    header = [
        f"# Rendered by: {command or _command(target_names, profile, assignments)}",
        f"# mfotel targets: {', '.join(t.name for t in chosen)}; profile: {profile}.",
        "# Secrets are never written here; the collector reads them from the environment:",
        *(f"#   {v}" for v in dict.fromkeys(env_vars)),
    ]
    if not env_vars:
        header[-1] = "# (these targets need no secrets)"
    body = yaml.safe_dump(config, sort_keys=False, width=100, default_flow_style=False)
    return "\n".join(header) + "\n" + body


def _command(target_names: Sequence[str], profile: str, assignments: Iterable[str]) -> str:
    parts = ["mfotel", "render-config"]
    for t in target_names:
        parts += ["--target", t]
    parts += ["--profile", profile]
    for a in assignments:
        parts += ["--set", a]
    return shlex.join(parts)
