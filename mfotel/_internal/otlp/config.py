"""The OTLP exporter settings of one signal, resolved from the environment per the spec.

Rules (OpenTelemetry "OTLP Exporter Configuration"):

- ``OTEL_EXPORTER_OTLP_<SIGNAL>_X`` wins over ``OTEL_EXPORTER_OTLP_X`` for every X.
- Protocol: ``http/protobuf`` by default (the kit's contract and the spec's recommendation);
  ``grpc`` accepted; ``http/json`` is not supported by the kit.
- Endpoint: with HTTP, the generic endpoint is a base URL and ``v1/<signal>`` is appended to
  its path; a per-signal endpoint is used as is. Defaults ``http://localhost:4318`` (HTTP)
  and ``http://localhost:4317`` (gRPC). With gRPC the scheme chooses TLS (``https``) or not
  (``http``); without a scheme ``OTEL_EXPORTER_OTLP_INSECURE`` decides.
- Headers: ``key=value`` pairs separated by commas, values percent-decoded. A per-signal
  header variable replaces the generic one (the spec's "signal-specific takes precedence").
- Timeout in milliseconds (default 10000); compression ``gzip`` or ``none``.
- Certificate, client key and client certificate are file paths.

Standard library only: this runs in the agent, which may live in a bare task interpreter.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import unquote, urlsplit

Signal = Literal["traces", "logs", "metrics"]
PROTOCOLS = ("grpc", "http/protobuf")


class ConfigError(ValueError):
    """A setting the exporter cannot use; one line naming the variable and the fix."""


@dataclass(frozen=True)
class Setting:
    value: str
    source: str


@dataclass(frozen=True)
class OtlpTarget:
    signal: Signal
    protocol: str
    endpoint: str
    headers: tuple[tuple[str, str], ...]
    timeout_s: float
    compression: str
    insecure: bool
    certificate: str | None
    client_key: str | None
    client_certificate: str | None
    sources: Mapping[str, Setting] = field(default_factory=dict)


def _lookup(environ: Mapping[str, str], signal: str, name: str) -> tuple[str, str] | None:
    for key in (f"OTEL_EXPORTER_OTLP_{signal.upper()}_{name}", f"OTEL_EXPORTER_OTLP_{name}"):
        value = environ.get(key)
        if value is not None and value.strip():
            return value.strip(), key
    return None


def parse_headers(value: str, variable: str) -> tuple[tuple[str, str], ...]:
    headers = []
    for member in value.split(","):
        if not member.strip():
            continue
        key, sep, val = member.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(
                f"{variable} has an entry without key=value ({key or 'empty'}): "
                "write it as key1=value1,key2=value2"
            )
        headers.append((unquote(key).lower(), unquote(val.strip())))
    return tuple(headers)


def _check_url(url: str, variable: str, default: str) -> None:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = -1
    if parts.scheme not in ("http", "https") or not parts.hostname or port == -1:
        raise ConfigError(f"{variable}={url!r} is not a URL: use e.g. {default}")


def resolve_target(signal: Signal, environ: Mapping[str, str]) -> OtlpTarget:
    sources: dict[str, Setting] = {}

    def get(name: str, default: str) -> str:
        found = _lookup(environ, signal, name)
        value, source = found if found is not None else (default, "default")
        sources[name.lower()] = Setting(value, source)
        return value

    protocol = get("PROTOCOL", "http/protobuf").lower()
    if protocol not in PROTOCOLS:
        variable = sources["protocol"].source
        hint = " (http/json is not supported)" if protocol == "http/json" else ""
        raise ConfigError(
            f"{variable}={protocol!r} is not grpc or http/protobuf{hint}: set it to one of them"
        )
    is_grpc = protocol == "grpc"
    default_endpoint = "http://localhost:4317" if is_grpc else "http://localhost:4318"
    specific = environ.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT", "").strip()
    generic = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    if specific:
        endpoint, source = specific, f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT"
    elif generic:
        endpoint, source = generic, "OTEL_EXPORTER_OTLP_ENDPOINT"
    else:
        endpoint, source = default_endpoint, "default"
    insecure_text = get("INSECURE", "false").lower()
    if is_grpc and "://" not in endpoint:
        scheme = "http" if insecure_text == "true" else "https"
        endpoint = f"{scheme}://{endpoint}"
    _check_url(endpoint, source, default_endpoint)
    if not is_grpc and not specific:
        endpoint = endpoint.rstrip("/") + f"/v1/{signal}"
    sources["endpoint"] = Setting(endpoint, source)

    found = _lookup(environ, signal, "HEADERS")
    headers = parse_headers(found[0], found[1]) if found else ()
    sources["headers"] = Setting(
        ",".join(k for k, _ in headers) or "(none)", found[1] if found else "default"
    )

    timeout_text = get("TIMEOUT", "10000")
    try:
        timeout_ms = float(timeout_text)
        if timeout_ms <= 0:
            raise ValueError
    except ValueError:
        raise ConfigError(
            f"{sources['timeout'].source}={timeout_text!r} is not a positive number of "
            "milliseconds: use e.g. 10000"
        ) from None

    compression = get("COMPRESSION", "none").lower()
    if compression not in ("gzip", "none"):
        raise ConfigError(
            f"{sources['compression'].source}={compression!r} is not gzip or none: use one of them"
        )
    scheme = urlsplit(endpoint).scheme
    return OtlpTarget(
        signal=signal,
        protocol=protocol,
        endpoint=endpoint,
        headers=headers,
        timeout_s=timeout_ms / 1000.0,
        compression=compression,
        insecure=scheme == "http",
        certificate=(_lookup(environ, signal, "CERTIFICATE") or (None, ""))[0],
        client_key=(_lookup(environ, signal, "CLIENT_KEY") or (None, ""))[0],
        client_certificate=(_lookup(environ, signal, "CLIENT_CERTIFICATE") or (None, ""))[0],
        sources=sources,
    )
