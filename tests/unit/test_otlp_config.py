"""Exporter settings resolved from OTEL_EXPORTER_OTLP_* exactly as the OTLP exporter spec says.

Tables of named cases: an environment, the signal, and what must come out of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from mfotel._internal.otlp.config import (
    NO_LIMIT_MS,
    ConfigError,
    OtlpTarget,
    Signal,
    parse_headers,
    resolve_target,
)

# -- protocol, endpoint and TLS ------------------------------------------------------------------


@dataclass(frozen=True)
class EndpointCase:
    env: dict[str, str]
    protocol: str
    endpoint: str
    insecure: bool
    signal: Signal = "logs"
    source: str = "default"


ENDPOINT_CASES: dict[str, EndpointCase] = {
    "nothing set: http/protobuf to localhost:4318 with the signal path": EndpointCase(
        {}, "http/protobuf", "http://localhost:4318/v1/logs", True
    ),
    "nothing set, traces": EndpointCase(
        {}, "http/protobuf", "http://localhost:4318/v1/traces", True, "traces"
    ),
    "nothing set, metrics": EndpointCase(
        {}, "http/protobuf", "http://localhost:4318/v1/metrics", True, "metrics"
    ),
    "generic endpoint gets v1/<signal> appended": EndpointCase(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"},
        "http/protobuf",
        "http://collector:4318/v1/traces",
        True,
        "traces",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    ),
    "generic endpoint with a trailing slash": EndpointCase(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/"},
        "http/protobuf",
        "http://collector:4318/v1/metrics",
        True,
        "metrics",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    ),
    "generic endpoint with a base path": EndpointCase(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://host:4318/otlp"},
        "http/protobuf",
        "http://host:4318/otlp/v1/logs",
        True,
        source="OTEL_EXPORTER_OTLP_ENDPOINT",
    ),
    "generic endpoint with a base path and slash (spec example 3)": EndpointCase(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/mycollector/"},
        "http/protobuf",
        "http://collector:4318/mycollector/v1/traces",
        True,
        "traces",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    ),
    "generic endpoint without a port keeps none (80 is implied)": EndpointCase(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://my-api-endpoint/"},
        "http/protobuf",
        "http://my-api-endpoint/v1/logs",
        True,
        source="OTEL_EXPORTER_OTLP_ENDPOINT",
    ),
    "generic https endpoint is secure": EndpointCase(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "https://collector.example.com"},
        "http/protobuf",
        "https://collector.example.com/v1/logs",
        False,
        source="OTEL_EXPORTER_OTLP_ENDPOINT",
    ),
    "generic endpoint keeps its query after the appended path": EndpointCase(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://h:4318/base?tenant=a"},
        "http/protobuf",
        "http://h:4318/base/v1/logs?tenant=a",
        True,
        source="OTEL_EXPORTER_OTLP_ENDPOINT",
    ),
    "generic IPv6 endpoint": EndpointCase(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://[::1]:4318"},
        "http/protobuf",
        "http://[::1]:4318/v1/logs",
        True,
        source="OTEL_EXPORTER_OTLP_ENDPOINT",
    ),
    "generic endpoint value is trimmed": EndpointCase(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "  http://collector:4318  "},
        "http/protobuf",
        "http://collector:4318/v1/logs",
        True,
        source="OTEL_EXPORTER_OTLP_ENDPOINT",
    ),
    "per-signal endpoint is used as is": EndpointCase(
        {"OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": "http://x:1234/custom/ingest"},
        "http/protobuf",
        "http://x:1234/custom/ingest",
        True,
        source="OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
    ),
    "per-signal endpoint without a path gets the root path (spec example 2)": EndpointCase(
        {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318"},
        "http/protobuf",
        "http://collector:4318/",
        True,
        "traces",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ),
    "per-signal endpoint keeps its trailing slash (spec example 3)": EndpointCase(
        {"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "https://collector.example.com/v1/metrics/"},
        "http/protobuf",
        "https://collector.example.com/v1/metrics/",
        False,
        "metrics",
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
    ),
    "per-signal endpoint wins over the generic one": EndpointCase(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://generic:4318",
            "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": "http://logs:4318/v1/logs",
        },
        "http/protobuf",
        "http://logs:4318/v1/logs",
        True,
        source="OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
    ),
    "another signal's endpoint does not apply": EndpointCase(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://generic:4318",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://traces:4318/v1/traces",
        },
        "http/protobuf",
        "http://generic:4318/v1/logs",
        True,
        source="OTEL_EXPORTER_OTLP_ENDPOINT",
    ),
    "an empty per-signal endpoint counts as unset": EndpointCase(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://generic:4318",
            "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": "",
        },
        "http/protobuf",
        "http://generic:4318/v1/logs",
        True,
        source="OTEL_EXPORTER_OTLP_ENDPOINT",
    ),
    "http/protobuf does not look at INSECURE": EndpointCase(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": "https://collector:4318",
            "OTEL_EXPORTER_OTLP_INSECURE": "true",
        },
        "http/protobuf",
        "https://collector:4318/v1/logs",
        False,
        source="OTEL_EXPORTER_OTLP_ENDPOINT",
    ),
    "grpc: default endpoint is http://localhost:4317, no path added": EndpointCase(
        {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "grpc", "http://localhost:4317", True
    ),
    "grpc: protocol value is case-insensitive": EndpointCase(
        {"OTEL_EXPORTER_OTLP_PROTOCOL": "GRPC"}, "grpc", "http://localhost:4317", True
    ),
    "grpc: generic endpoint is used as given": EndpointCase(
        {
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317",
        },
        "grpc",
        "http://collector:4317",
        True,
        source="OTEL_EXPORTER_OTLP_ENDPOINT",
    ),
    "grpc: https scheme means TLS even with INSECURE=true": EndpointCase(
        {
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "OTEL_EXPORTER_OTLP_ENDPOINT": "https://collector:4317",
            "OTEL_EXPORTER_OTLP_INSECURE": "true",
        },
        "grpc",
        "https://collector:4317",
        False,
        source="OTEL_EXPORTER_OTLP_ENDPOINT",
    ),
    "grpc: http scheme means plaintext even with INSECURE=false": EndpointCase(
        {
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317",
            "OTEL_EXPORTER_OTLP_INSECURE": "false",
        },
        "grpc",
        "http://collector:4317",
        True,
        source="OTEL_EXPORTER_OTLP_ENDPOINT",
    ),
    "grpc: host:port without a scheme is TLS by default": EndpointCase(
        {
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4317",
        },
        "grpc",
        "collector:4317",
        False,
        source="OTEL_EXPORTER_OTLP_ENDPOINT",
    ),
    "grpc: host:port with INSECURE=true is plaintext": EndpointCase(
        {
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4317",
            "OTEL_EXPORTER_OTLP_INSECURE": "TRUE",
        },
        "grpc",
        "collector:4317",
        True,
        source="OTEL_EXPORTER_OTLP_ENDPOINT",
    ),
    "grpc: per-signal INSECURE overrides the generic one": EndpointCase(
        {
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4317",
            "OTEL_EXPORTER_OTLP_INSECURE": "true",
            "OTEL_EXPORTER_OTLP_LOGS_INSECURE": "false",
        },
        "grpc",
        "collector:4317",
        False,
        source="OTEL_EXPORTER_OTLP_ENDPOINT",
    ),
    "grpc: per-signal INSECURE=true alone": EndpointCase(
        {
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": "collector:4317",
            "OTEL_EXPORTER_OTLP_LOGS_INSECURE": "true",
        },
        "grpc",
        "collector:4317",
        True,
        source="OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
    ),
    "grpc: a gRPC name-resolver target passes through": EndpointCase(
        {
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "OTEL_EXPORTER_OTLP_ENDPOINT": "dns:///collector:4317",
            "OTEL_EXPORTER_OTLP_INSECURE": "true",
        },
        "grpc",
        "dns:///collector:4317",
        True,
        source="OTEL_EXPORTER_OTLP_ENDPOINT",
    ),
    "grpc: an IPv6 host:port": EndpointCase(
        {
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "OTEL_EXPORTER_OTLP_ENDPOINT": "[::1]:4317",
        },
        "grpc",
        "[::1]:4317",
        False,
        source="OTEL_EXPORTER_OTLP_ENDPOINT",
    ),
    "per-signal protocol overrides the generic one": EndpointCase(
        {
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL": "http/protobuf",
        },
        "http/protobuf",
        "http://localhost:4318/v1/logs",
        True,
    ),
    "per-signal grpc with the generic protocol unset": EndpointCase(
        {"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc"},
        "grpc",
        "http://localhost:4317",
        True,
        "traces",
    ),
    "another signal's protocol does not apply": EndpointCase(
        {"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc"},
        "http/protobuf",
        "http://localhost:4318/v1/metrics",
        True,
        "metrics",
    ),
    "an unknown protocol is ignored (spec: warn and ignore an unknown enum)": EndpointCase(
        {"OTEL_EXPORTER_OTLP_PROTOCOL": "grcp"},
        "http/protobuf",
        "http://localhost:4318/v1/logs",
        True,
    ),
    "an unknown per-signal protocol falls back to the generic one": EndpointCase(
        {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL": "udp"},
        "grpc",
        "http://localhost:4317",
        True,
    ),
}


@pytest.mark.parametrize("case", ENDPOINT_CASES.values(), ids=ENDPOINT_CASES.keys())
def test_protocol_endpoint_and_tls(case: EndpointCase) -> None:
    """Protocol, endpoint and transport security resolve per the table, sources included."""
    target = resolve_target(case.signal, case.env)
    assert (target.protocol, target.endpoint, target.insecure) == (
        case.protocol,
        case.endpoint,
        case.insecure,
    )
    assert target.sources["endpoint"].source == case.source
    assert target.sources["endpoint"].value == case.endpoint


# -- headers ---------------------------------------------------------------------------------------


HEADER_CASES: dict[str, tuple[dict[str, str], tuple[tuple[str, str], ...]]] = {
    "none set": ({}, ()),
    "two pairs": ({"OTEL_EXPORTER_OTLP_HEADERS": "a=1,b=2"}, (("a", "1"), ("b", "2"))),
    "values are percent-decoded": (
        {"OTEL_EXPORTER_OTLP_HEADERS": "x-team=ml%20platform,authorization=Bearer%20k%2Cv"},
        (("x-team", "ml platform"), ("authorization", "Bearer k,v")),
    ),
    "whitespace around keys and values is trimmed": (
        {"OTEL_EXPORTER_OTLP_HEADERS": "  a = 1 ,\tb=  two words  "},
        (("a", "1"), ("b", "two words")),
    ),
    "UTF-8 percent-encoding decodes": (
        {"OTEL_EXPORTER_OTLP_HEADERS": "x-city=Z%C3%BCrich"},
        (("x-city", "Zürich"),),
    ),
    "keys keep their case and are not percent-decoded": (
        {"OTEL_EXPORTER_OTLP_HEADERS": "X-Api-Key=k,x%41=v"},
        (("X-Api-Key", "k"), ("x%41", "v")),
    ),
    "an '=' inside the value is kept": (
        {"OTEL_EXPORTER_OTLP_HEADERS": "sig=a=b=="},
        (("sig", "a=b=="),),
    ),
    "empty list members are skipped": (
        {"OTEL_EXPORTER_OTLP_HEADERS": ",a=1,,b=2,"},
        (("a", "1"), ("b", "2")),
    ),
    "an empty value is allowed": ({"OTEL_EXPORTER_OTLP_HEADERS": "a="}, (("a", ""),)),
    "a repeated key keeps the last value": (
        {"OTEL_EXPORTER_OTLP_HEADERS": "a=1,A=2"},
        (("A", "2"),),
    ),
    "a semicolon stays in the value (metadata is not supported)": (
        {"OTEL_EXPORTER_OTLP_HEADERS": "a=1;p=2"},
        (("a", "1;p=2"),),
    ),
    "per-signal headers replace the generic ones": (
        {"OTEL_EXPORTER_OTLP_HEADERS": "a=1,b=2", "OTEL_EXPORTER_OTLP_LOGS_HEADERS": "b=3"},
        (("b", "3"),),
    ),
    "another signal's headers do not apply": (
        {"OTEL_EXPORTER_OTLP_HEADERS": "a=1", "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "t=1"},
        (("a", "1"),),
    ),
    "an empty per-signal value counts as unset": (
        {"OTEL_EXPORTER_OTLP_HEADERS": "a=1", "OTEL_EXPORTER_OTLP_LOGS_HEADERS": " "},
        (("a", "1"),),
    ),
    "headers the exporter sets itself are dropped": (
        {"OTEL_EXPORTER_OTLP_HEADERS": "Content-Type=text/plain,a=1"},
        (("a", "1"),),
    ),
}


@pytest.mark.parametrize(("env", "expected"), HEADER_CASES.values(), ids=list(HEADER_CASES.keys()))
def test_headers(env: dict[str, str], expected: tuple[tuple[str, str], ...]) -> None:
    """Headers parse as W3C-Baggage-style k=v lists with per-signal replacing generic."""
    assert resolve_target("logs", env).headers == expected


def test_header_sources_show_names_only() -> None:
    """What doctor displays for headers names the keys and the variable, never a value."""
    target = resolve_target(
        "logs", {"OTEL_EXPORTER_OTLP_LOGS_HEADERS": "authorization=s3cret,x-team=ml"}
    )
    assert target.sources["headers"].value == "authorization,x-team"
    assert target.sources["headers"].source == "OTEL_EXPORTER_OTLP_LOGS_HEADERS"
    assert "s3cret" not in repr(target.sources)


def test_a_reserved_header_is_reported_in_warnings() -> None:
    """A user Content-Type header is dropped with a warning naming it."""
    target = resolve_target("logs", {"OTEL_EXPORTER_OTLP_HEADERS": "Content-Type=x"})
    assert target.warnings == (
        "OTEL_EXPORTER_OTLP_HEADERS: header 'Content-Type' is set by the exporter itself: ignored",
    )


# -- timeout, compression, certificates ------------------------------------------------------


@dataclass(frozen=True)
class ValueCase:
    env: dict[str, str]
    expected: dict[str, Any]
    warnings: tuple[str, ...] = ()
    sources: dict[str, str] = field(default_factory=dict)


VALUE_CASES: dict[str, ValueCase] = {
    "timeout defaults to 10 s": ValueCase(
        {}, {"timeout_s": 10.0}, sources={"timeout_s": "default"}
    ),
    "timeout is in milliseconds": ValueCase(
        {"OTEL_EXPORTER_OTLP_TIMEOUT": "2500"},
        {"timeout_s": 2.5},
        sources={"timeout_s": "OTEL_EXPORTER_OTLP_TIMEOUT"},
    ),
    "per-signal timeout wins": ValueCase(
        {"OTEL_EXPORTER_OTLP_TIMEOUT": "2500", "OTEL_EXPORTER_OTLP_LOGS_TIMEOUT": "700"},
        {"timeout_s": 0.7},
        sources={"timeout_s": "OTEL_EXPORTER_OTLP_LOGS_TIMEOUT"},
    ),
    "timeout 0 means no limit": ValueCase(
        {"OTEL_EXPORTER_OTLP_TIMEOUT": "0"}, {"timeout_s": NO_LIMIT_MS / 1000.0}
    ),
    "a timeout that is not a number is ignored with a warning": ValueCase(
        {"OTEL_EXPORTER_OTLP_TIMEOUT": "10s"},
        {"timeout_s": 10.0},
        (
            "OTEL_EXPORTER_OTLP_TIMEOUT='10s' is not a whole number of milliseconds: ignored "
            "(use e.g. 10000)",
        ),
        {"timeout_s": "default"},
    ),
    "a fractional timeout is ignored with a warning": ValueCase(
        {"OTEL_EXPORTER_OTLP_TIMEOUT": "1.5"},
        {"timeout_s": 10.0},
        (
            "OTEL_EXPORTER_OTLP_TIMEOUT='1.5' is not a whole number of milliseconds: ignored "
            "(use e.g. 10000)",
        ),
    ),
    "a negative timeout is ignored with a warning": ValueCase(
        {"OTEL_EXPORTER_OTLP_TIMEOUT": "-5"},
        {"timeout_s": 10.0},
        ("OTEL_EXPORTER_OTLP_TIMEOUT='-5' is negative: ignored (0 means no limit)",),
    ),
    "a bad per-signal timeout falls back to the generic one": ValueCase(
        {"OTEL_EXPORTER_OTLP_TIMEOUT": "3000", "OTEL_EXPORTER_OTLP_LOGS_TIMEOUT": "soon"},
        {"timeout_s": 3.0},
        (
            "OTEL_EXPORTER_OTLP_LOGS_TIMEOUT='soon' is not a whole number of milliseconds: "
            "ignored (use e.g. 10000)",
        ),
        {"timeout_s": "OTEL_EXPORTER_OTLP_TIMEOUT"},
    ),
    "compression defaults to none": ValueCase({}, {"compression": "none"}),
    "compression gzip": ValueCase(
        {"OTEL_EXPORTER_OTLP_COMPRESSION": "gzip"}, {"compression": "gzip"}
    ),
    "compression is case-insensitive": ValueCase(
        {"OTEL_EXPORTER_OTLP_COMPRESSION": "GZip"}, {"compression": "gzip"}
    ),
    "per-signal compression none wins over generic gzip": ValueCase(
        {"OTEL_EXPORTER_OTLP_COMPRESSION": "gzip", "OTEL_EXPORTER_OTLP_LOGS_COMPRESSION": "none"},
        {"compression": "none"},
        sources={"compression": "OTEL_EXPORTER_OTLP_LOGS_COMPRESSION"},
    ),
    "an unknown compression is ignored with a warning": ValueCase(
        {"OTEL_EXPORTER_OTLP_COMPRESSION": "br"},
        {"compression": "none"},
        ("OTEL_EXPORTER_OTLP_COMPRESSION='br' is not gzip or none: ignored",),
    ),
    "an unknown protocol is ignored with a warning": ValueCase(
        {"OTEL_EXPORTER_OTLP_PROTOCOL": "grcp"},
        {"protocol": "http/protobuf"},
        ("OTEL_EXPORTER_OTLP_PROTOCOL='grcp' is not grpc, http/protobuf or http/json: ignored",),
    ),
    "INSECURE other than true/false is false with a warning": ValueCase(
        {
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4317",
            "OTEL_EXPORTER_OTLP_INSECURE": "yes",
        },
        {"insecure": False},
        ("OTEL_EXPORTER_OTLP_INSECURE='yes' is not true or false: taken as false",),
    ),
    "certificate files: none by default": ValueCase(
        {}, {"certificate": None, "client_key": None, "client_certificate": None}
    ),
    "certificate files: generic variables": ValueCase(
        {
            "OTEL_EXPORTER_OTLP_CERTIFICATE": "/etc/ca.pem",
            "OTEL_EXPORTER_OTLP_CLIENT_KEY": "/etc/key.pem",
            "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE": "/etc/cert.pem",
        },
        {
            "certificate": "/etc/ca.pem",
            "client_key": "/etc/key.pem",
            "client_certificate": "/etc/cert.pem",
        },
        sources={"certificate": "OTEL_EXPORTER_OTLP_CERTIFICATE"},
    ),
    "certificate files: per-signal variables win": ValueCase(
        {
            "OTEL_EXPORTER_OTLP_CERTIFICATE": "/etc/ca.pem",
            "OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE": "/logs/ca.pem",
            "OTEL_EXPORTER_OTLP_CLIENT_KEY": "/etc/key.pem",
            "OTEL_EXPORTER_OTLP_LOGS_CLIENT_KEY": "/logs/key.pem",
            "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE": "/etc/cert.pem",
            "OTEL_EXPORTER_OTLP_LOGS_CLIENT_CERTIFICATE": "/logs/cert.pem",
        },
        {
            "certificate": "/logs/ca.pem",
            "client_key": "/logs/key.pem",
            "client_certificate": "/logs/cert.pem",
        },
        sources={"client_key": "OTEL_EXPORTER_OTLP_LOGS_CLIENT_KEY"},
    ),
}


@pytest.mark.parametrize("case", VALUE_CASES.values(), ids=VALUE_CASES.keys())
def test_values_and_warnings(case: ValueCase) -> None:
    """Timeout, compression, booleans and file paths resolve per the table, warnings included."""
    target = resolve_target("logs", case.env)
    assert {name: getattr(target, name) for name in case.expected} == case.expected
    assert target.warnings == case.warnings
    for name, source in case.sources.items():
        assert target.sources[name].source == source


# -- errors ----------------------------------------------------------------------------------------


ERROR_CASES: dict[str, tuple[dict[str, str], str]] = {
    "endpoint with a misspelt scheme": (
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "htp:/x"},
        "OTEL_EXPORTER_OTLP_ENDPOINT='htp:/x' is not a URL (it must start with http:// or "
        "https://): use e.g. http://localhost:4318",
    ),
    "endpoint with no scheme under http/protobuf": (
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"},
        "OTEL_EXPORTER_OTLP_ENDPOINT='collector:4318' is not a URL (it must start with http:// "
        "or https://): use e.g. http://localhost:4318",
    ),
    "endpoint without a host": (
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http:///v1"},
        "OTEL_EXPORTER_OTLP_ENDPOINT='http:///v1' is not a URL (it has no host): "
        "use e.g. http://localhost:4318",
    ),
    "endpoint with a port that is not a number": (
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:43l8"},
        "OTEL_EXPORTER_OTLP_ENDPOINT='http://collector:43l8' is not a URL (the port is not a "
        "number from 1 to 65535): use e.g. http://localhost:4318",
    ),
    "endpoint with a port out of range": (
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:99999"},
        "OTEL_EXPORTER_OTLP_ENDPOINT='http://collector:99999' is not a URL (the port is not a "
        "number from 1 to 65535): use e.g. http://localhost:4318",
    ),
    "endpoint with a space": (
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://my collector:4318"},
        "OTEL_EXPORTER_OTLP_ENDPOINT='http://my collector:4318' is not a URL (it contains "
        "whitespace): use e.g. http://localhost:4318",
    ),
    "endpoint credentials are not repeated": (
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "https://user:s3cret@collector:0"},
        "OTEL_EXPORTER_OTLP_ENDPOINT='https://***@collector:0' is not a URL (the port is not a "
        "number from 1 to 65535): use e.g. http://localhost:4318",
    ),
    "per-signal endpoint: the example has the signal path": (
        {"OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": "ftp://collector/v1/logs"},
        "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT='ftp://collector/v1/logs' is not a URL (it must "
        "start with http:// or https://): use e.g. http://localhost:4318/v1/logs",
    ),
    "grpc endpoint with another scheme": (
        {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_ENDPOINT": "grpc://c:4317"},
        "OTEL_EXPORTER_OTLP_ENDPOINT='grpc://c:4317' is not a URL (the scheme must be http or "
        "https): use e.g. http://localhost:4317",
    ),
    "grpc endpoint that is neither URL nor host:port": (
        {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_ENDPOINT": "htp:/x"},
        "OTEL_EXPORTER_OTLP_ENDPOINT='htp:/x' is not a URL (it is neither a URL nor "
        "host:port): use e.g. http://localhost:4317",
    ),
    "grpc host:port with a bad port": (
        {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_ENDPOINT": "c:grpc"},
        "OTEL_EXPORTER_OTLP_ENDPOINT='c:grpc' is not a URL (the port is not a number from 1 "
        "to 65535): use e.g. http://localhost:4317",
    ),
    "http/json is not supported": (
        {"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"},
        "OTEL_EXPORTER_OTLP_PROTOCOL='http/json' is not supported by mfotel: use http/protobuf "
        "(or grpc)",
    ),
    "per-signal http/json names the per-signal variable": (
        {"OTEL_EXPORTER_OTLP_LOGS_PROTOCOL": "HTTP/JSON"},
        "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL='HTTP/JSON' is not supported by mfotel: use "
        "http/protobuf (or grpc)",
    ),
    "header entry without '=' (its text is not repeated)": (
        {"OTEL_EXPORTER_OTLP_HEADERS": "a=1,Bearer s3cret"},
        "OTEL_EXPORTER_OTLP_HEADERS: entry 2 has no '=': write key1=value1,key2=value2 "
        "(percent-encode ',' in values as %2C)",
    ),
    "header entry with an invalid name (its text is not repeated)": (
        {"OTEL_EXPORTER_OTLP_LOGS_HEADERS": "Authorization: Bearer s3cret=x"},
        "OTEL_EXPORTER_OTLP_LOGS_HEADERS: entry 1 has no valid header name before '=': write "
        "key1=value1,key2=value2 with names of letters, digits and -",
    ),
    "header entry with an empty name": (
        {"OTEL_EXPORTER_OTLP_HEADERS": "=s3cret"},
        "OTEL_EXPORTER_OTLP_HEADERS: entry 1 has no valid header name before '=': write "
        "key1=value1,key2=value2 with names of letters, digits and -",
    ),
    "header value with a newline once decoded": (
        {"OTEL_EXPORTER_OTLP_HEADERS": "x-key=s3cret%0D%0AX-Evil:1"},
        "OTEL_EXPORTER_OTLP_HEADERS: the value of 'x-key' has a control character once "
        "percent-decoded: remove it",
    ),
    "header value that is not UTF-8 once decoded": (
        {"OTEL_EXPORTER_OTLP_HEADERS": "x-key=s3cret%FF"},
        "OTEL_EXPORTER_OTLP_HEADERS: the value of 'x-key' is not UTF-8 once percent-decoded: "
        "percent-encode it from UTF-8 text",
    ),
}


@pytest.mark.parametrize(("env", "message"), ERROR_CASES.values(), ids=list(ERROR_CASES.keys()))
def test_errors(env: dict[str, str], message: str) -> None:
    """Unusable settings raise ConfigError with one exact line that never shows a secret."""
    with pytest.raises(ConfigError) as raised:
        resolve_target("logs", env)
    assert str(raised.value) == message
    assert "\n" not in str(raised.value) and "s3cret" not in str(raised.value)


def test_every_signal_gets_its_own_path_from_one_generic_endpoint() -> None:
    """One generic endpoint yields /v1/traces, /v1/logs and /v1/metrics under its path."""
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "https://collector:4318/otlp"}
    endpoints = {s: resolve_target(s, env).endpoint for s in ("traces", "logs", "metrics")}
    assert endpoints == {
        "traces": "https://collector:4318/otlp/v1/traces",
        "logs": "https://collector:4318/otlp/v1/logs",
        "metrics": "https://collector:4318/otlp/v1/metrics",
    }


def test_sources_name_every_field_for_doctor() -> None:
    """Every resolved field has a Setting saying where its value came from."""
    target: OtlpTarget = resolve_target(
        "traces",
        {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "500"},
    )
    assert {k: v.source for k, v in target.sources.items()} == {
        "protocol": "OTEL_EXPORTER_OTLP_PROTOCOL",
        "endpoint": "default",
        "insecure": "endpoint scheme",
        "headers": "default",
        "timeout_s": "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
        "compression": "default",
        "certificate": "default",
        "client_key": "default",
        "client_certificate": "default",
    }
    assert target.sources["timeout_s"].value == "500 ms"


def test_parse_headers_alone() -> None:
    """parse_headers is usable on its own and names the variable it was given in errors."""
    assert parse_headers("k=v%3Dw", "X") == (("k", "v=w"),)
    with pytest.raises(ConfigError, match=r"^X: entry 1 has no '='"):
        parse_headers("novalue", "X")
