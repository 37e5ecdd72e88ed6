"""The OTLP exporter settings of one signal, resolved from the environment as the spec says.

The rules come from the OpenTelemetry specification, "OpenTelemetry Protocol Exporter"
(``specification/protocol/exporter.md``) and the value-parsing rules it refers to
(``specification/configuration/sdk-environment-variables.md`` and ``common.md``). Each rule is
quoted where it is implemented. In short:

- Every option has a generic variable ``OTEL_EXPORTER_OTLP_X`` and a per-signal one
  ``OTEL_EXPORTER_OTLP_<SIGNAL>_X``; the per-signal one wins. Empty means unset.
- Protocol ``http/protobuf`` (default) or ``grpc``; ``http/json`` is refused (not supported).
- HTTP endpoint: the generic one is a base URL and ``v1/<signal>`` is appended to its path;
  a per-signal one is used as is. gRPC endpoint: a URL whose scheme decides TLS, or a gRPC
  target such as ``host:port`` for which ``OTEL_EXPORTER_OTLP_INSECURE`` decides.
- Headers ``k=v,k2=v2`` (W3C Baggage format), values percent-decoded.
- Timeout in whole milliseconds (default 10000, 0 = no limit); compression ``gzip``/``none``.
- Certificate, client key and client certificate are paths to PEM files.

Values the spec says to warn about and ignore (an unknown enum value, a timeout that is not a
whole non-negative number, a boolean other than true/false) do not stop the exporter: they
are listed in :attr:`OtlpTarget.warnings` for the caller to print. Values the exporter cannot
work with (a malformed endpoint or header list, ``http/json``) raise :class:`ConfigError`.

Standard library only: this runs in the agent, which may live in a bare task interpreter.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import SplitResult, unquote, urlsplit, urlunsplit

Signal = Literal["traces", "logs", "metrics"]
ProtocolName = Literal["grpc", "http/protobuf"]
Compression = Literal["none", "gzip"]

SIGNALS: tuple[Signal, ...] = ("traces", "logs", "metrics")
DEFAULT_HTTP_ENDPOINT = "http://localhost:4318"
DEFAULT_GRPC_ENDPOINT = "http://localhost:4317"
DEFAULT_TIMEOUT_MS = 10_000
# common.md, Timeout: "Implementations SHOULD interpret timeout zero values (i.e. `0`
# indicating 0 milliseconds) as no limit (i.e. infinite). In practice, implementations MAY
# treat no limit as "a very long time" and substitute a very large duration (e.g. the maximum
# milliseconds representable by a 32-bit integer)."
NO_LIMIT_MS = 2**31 - 1

# gRPC name-resolver schemes passed to grpcio untouched ("The option SHOULD accept any form
# allowed by the underlying gRPC client implementation").
GRPC_TARGET_SCHEMES = ("dns", "unix", "unix-abstract", "ipv4", "ipv6", "vsock")

# Header names the transports set themselves; a user value for them is ignored with a warning.
RESERVED_HEADERS = frozenset(
    ("content-type", "content-encoding", "content-length", "transfer-encoding", "connection", "te")
)

_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 7230 token: a valid header name
_BAD_VALUE_CHAR = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # control characters except tab
_WHOLE_NUMBER = re.compile(r"[+-]?[0-9]+")
_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/?#@]*@")


class ConfigError(ValueError):
    """A setting the exporter cannot work with; one line naming the variable and the fix."""


@dataclass(frozen=True)
class Setting:
    """A resolved value and where it came from (a variable name or ``default``)."""

    value: str
    source: str


@dataclass(frozen=True)
class OtlpTarget:
    """Everything a transport needs to send one signal's requests.

    ``endpoint`` is the full URL for HTTP (with ``/v1/<signal>`` when it came from the generic
    variable) and the URL or gRPC target as given for gRPC. ``insecure`` is True when the
    connection will not use TLS: for gRPC as resolved from the scheme or the INSECURE
    variables, for HTTP from the ``http`` scheme. ``headers`` keep the names as written.
    ``sources`` maps each field name to the value shown by ``mfotel doctor`` (header values
    are left out: they may hold secrets). ``warnings`` are one-line messages about settings
    that were ignored, as the spec requires, for the caller to print.
    """

    signal: Signal
    protocol: ProtocolName
    endpoint: str
    headers: tuple[tuple[str, str], ...]
    timeout_s: float
    compression: Compression
    insecure: bool
    certificate: str | None
    client_key: str | None
    client_certificate: str | None
    sources: Mapping[str, Setting] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()


def _variables(signal: str, option: str) -> tuple[str, str]:
    """The per-signal and the generic variable of one option, in order of precedence.

    exporter.md: "Each configuration option MUST be overridable by a signal specific option."
    """
    return f"OTEL_EXPORTER_OTLP_{signal.upper()}_{option}", f"OTEL_EXPORTER_OTLP_{option}"


def _set(environ: Mapping[str, str], names: tuple[str, ...]) -> list[tuple[str, str]]:
    """(name, value) of each variable that is set, in order; whitespace is trimmed.

    sdk-environment-variables.md: "The SDK MUST interpret an empty value of an environment
    variable the same way as when the variable is unset."
    """
    found = []
    for name in names:
        value = environ.get(name, "").strip()
        if value:
            found.append((name, value))
    return found


def _shown(url: str) -> str:
    """The value for an error message, with any ``user:password@`` hidden."""
    return _USERINFO.sub(r"\1***@", url)


def _port_problem(parts: SplitResult) -> str | None:
    try:
        port = parts.port
    except ValueError:
        port = 0
    return "the port is not a number from 1 to 65535" if port == 0 else None


def _check_url(url: str, variable: str, example: str) -> None:
    """Raise ConfigError unless ``url`` is an http(s) URL with a host and a valid port.

    exporter.md, Endpoint (OTLP/HTTP): "The implementation MUST honor the following URL
    components: scheme (`http` or `https`), host, port, path".
    """
    parts = urlsplit(url)
    problem = None
    if any(c.isspace() or ord(c) < 0x20 for c in url):
        problem = "it contains whitespace"
    elif parts.scheme not in ("http", "https") or not url.lower().startswith(parts.scheme + "://"):
        problem = "it must start with http:// or https://"
    elif not parts.hostname:
        problem = "it has no host"
    else:
        problem = _port_problem(parts)
    if problem is not None:
        raise ConfigError(
            f"{variable}={_shown(url)!r} is not a URL ({problem}): use e.g. {example}"
        )


def _http_endpoint(signal: Signal, environ: Mapping[str, str]) -> tuple[str, str]:  # (url, source)
    specific, generic = _variables(signal, "ENDPOINT")
    found = _set(environ, (specific, generic))
    source, url = found[0] if found else ("default", DEFAULT_HTTP_ENDPOINT)
    if source == specific:
        # exporter.md, Endpoint URLs for OTLP/HTTP: "For the per-signal variables
        # (`OTEL_EXPORTER_OTLP_<signal>_ENDPOINT`), the URL MUST be used as-is without any
        # modification. The only exception is that if an URL contains no path part, the root
        # path `/` MUST be used."
        _check_url(url, source, f"{DEFAULT_HTTP_ENDPOINT}/v1/{signal}")
        parts = urlsplit(url)
        if not parts.path:
            url = urlunsplit(parts._replace(path="/"))
        return url, source
    # "... `OTEL_EXPORTER_OTLP_ENDPOINT` is used as a base URL and the signals are sent to these
    # paths relative to that: Traces: `v1/traces`, Metrics: `v1/metrics`, Logs: `v1/logs`.
    # Non-normatively, this could be implemented by ensuring that the base URL ends with a
    # slash and then appending the relative URLs as strings." (The query, if any, is kept;
    # the fragment is dropped: it is never sent.)
    _check_url(url, source, DEFAULT_HTTP_ENDPOINT)
    parts = urlsplit(url)
    path = parts.path if parts.path.endswith("/") else parts.path + "/"
    return urlunsplit((parts.scheme, parts.netloc, f"{path}v1/{signal}", parts.query, "")), source


def _boolean(
    environ: Mapping[str, str], names: tuple[str, ...], warnings: list[str]
) -> tuple[bool, str]:
    """sdk-environment-variables.md, Boolean: "true" (any case) is true; anything else false.

    "Any value that represents a Boolean MUST be set to true only by the case-insensitive
    string "true" [...] Any value not explicitly defined here as a true value, including
    unset and empty values, MUST be interpreted as false. If any value other than a true
    value, case-insensitive string "false", empty, or unset is used, a warning SHOULD be
    logged". The first variable that is set decides (the per-signal one overrides).
    """
    found = _set(environ, names)
    if not found:
        return False, "default"
    name, value = found[0]
    if value.lower() not in ("true", "false"):
        warnings.append(f"{name}={value!r} is not true or false: taken as false")
    return value.lower() == "true", name


def _grpc_endpoint(
    signal: Signal, environ: Mapping[str, str], warnings: list[str]
) -> tuple[str, str, bool, str]:  # (endpoint, source, insecure, insecure source)
    found = _set(environ, _variables(signal, "ENDPOINT"))
    source, endpoint = found[0] if found else ("default", DEFAULT_GRPC_ENDPOINT)
    lowered = endpoint.lower()
    # exporter.md, Endpoint (OTLP/gRPC): "the option MUST accept a URL with a scheme of either
    # `http` or `https`. A scheme of `https` indicates a secure connection and takes
    # precedence over the `insecure` configuration setting. A scheme of `http` indicates an
    # insecure connection and takes precedence over the `insecure` configuration setting."
    if lowered.startswith(("http://", "https://")):
        _check_url(endpoint, source, DEFAULT_GRPC_ENDPOINT)
        return endpoint, source, lowered.startswith("http://"), "endpoint scheme"
    # "The option SHOULD accept any form allowed by the underlying gRPC client
    # implementation": a name-resolver target (dns:///host:port, unix:/path, ...) or
    # host[:port]. Insecure: "This option only applies to OTLP/gRPC when an endpoint is
    # provided without the `http` or `https` scheme".
    scheme = lowered.partition(":")[0]
    if scheme not in GRPC_TARGET_SCHEMES:
        problem = None
        if "://" in endpoint:
            problem = "the scheme must be http or https"
        elif any(c.isspace() or ord(c) < 0x20 for c in endpoint):
            problem = "it contains whitespace"
        else:
            parts = urlsplit("//" + endpoint)
            if parts.path or parts.query or parts.fragment or not parts.hostname:
                problem = "it is neither a URL nor host:port"
            else:
                problem = _port_problem(parts)
        if problem is not None:
            raise ConfigError(
                f"{source}={_shown(endpoint)!r} is not a URL ({problem}): "
                f"use e.g. {DEFAULT_GRPC_ENDPOINT}"
            )
    insecure, insecure_source = _boolean(environ, _variables(signal, "INSECURE"), warnings)
    return endpoint, source, insecure, insecure_source


def parse_headers(value: str, variable: str) -> tuple[tuple[str, str], ...]:
    """Parse ``key1=value1,key2=value2`` into (name, value) pairs; raise ConfigError if malformed.

    exporter.md, Specifying headers via environment variables: the value is "a list of key
    value pairs, and these are expected to be represented in a format matching to the W3C
    Baggage i.e., `key1=value1,key2=value2`. Semi-colon delimited metadata is not supported.
    All attribute values MUST be considered strings."

    Following W3C Baggage: whitespace around keys and values is dropped, values are
    percent-decoded (UTF-8) and keys are not (a key is an HTTP token). Empty list members
    are skipped. A ``;`` is kept as part of the value (metadata is not supported, so nothing
    is split off). When a key repeats, the last value wins. Error messages name keys and
    entry numbers, never values: values often hold credentials.
    """
    headers: dict[str, tuple[str, str]] = {}
    for number, member in enumerate(value.split(","), start=1):
        if not member.strip():
            continue
        key, sep, raw = member.partition("=")
        key = key.strip(" \t")
        if not sep:
            raise ConfigError(
                f"{variable}: entry {number} has no '=': write key1=value1,key2=value2 "
                "(percent-encode ',' in values as %2C)"
            )
        if not _TOKEN.fullmatch(key):
            raise ConfigError(
                f"{variable}: entry {number} has no valid header name before '=': "
                "write key1=value1,key2=value2 with names of letters, digits and -"
            )
        try:
            decoded = unquote(raw.strip(" \t"), errors="strict")
        except UnicodeDecodeError:
            raise ConfigError(
                f"{variable}: the value of {key!r} is not UTF-8 once percent-decoded: "
                "percent-encode it from UTF-8 text"
            ) from None
        if _BAD_VALUE_CHAR.search(decoded):
            raise ConfigError(
                f"{variable}: the value of {key!r} has a control character once "
                "percent-decoded: remove it"
            )
        headers[key.lower()] = (key, decoded)
    return tuple(headers.values())


def _headers(
    signal: Signal, environ: Mapping[str, str], warnings: list[str]
) -> tuple[tuple[tuple[str, str], ...], str]:
    # Per-signal headers REPLACE the generic ones; they are not merged key by key. The spec
    # defines Headers as one option and says "Each configuration option MUST be overridable
    # by a signal specific option" (exporter.md); it says nothing of merging the two lists.
    found = _set(environ, _variables(signal, "HEADERS"))
    if not found:
        return (), "default"
    variable, value = found[0]
    headers = []
    for key, val in parse_headers(value, variable):
        if key.lower() in RESERVED_HEADERS:
            warnings.append(f"{variable}: header {key!r} is set by the exporter itself: ignored")
        else:
            headers.append((key, val))
    return tuple(headers), variable


def _protocol(signal: Signal, environ: Mapping[str, str], warnings: list[str]) -> Setting:
    # exporter.md, Protocol: "Options MUST be one of: `grpc`, `http/protobuf`, `http/json`"
    # and "Default: `http/protobuf`". sdk-environment-variables.md, Enum: "Enum values SHOULD
    # be interpreted in a case-insensitive manner" and "if the user provides a value the
    # implementation does not recognize, the implementation MUST generate a warning and
    # gracefully ignore the setting" (so the next variable, or the default, applies).
    for variable, value in _set(environ, _variables(signal, "PROTOCOL")):
        lowered = value.lower()
        if lowered in ("grpc", "http/protobuf"):
            return Setting(lowered, variable)
        if lowered == "http/json":
            # A value the spec defines ("They also MAY support `http/json`") but mfotel does
            # not implement: sending protobuf instead would not be what was asked for.
            raise ConfigError(
                f"{variable}={value!r} is not supported by mfotel: use http/protobuf (or grpc)"
            )
        warnings.append(f"{variable}={value!r} is not grpc, http/protobuf or http/json: ignored")
    return Setting("http/protobuf", "default")


def _timeout(
    signal: Signal, environ: Mapping[str, str], warnings: list[str]
) -> tuple[int, str]:  # (milliseconds, source)
    # exporter.md, Timeout: "Maximum time the OTLP exporter will wait for each batch export.
    # Default: 10s". common.md, Timeout: "Any value that represents a timeout MUST be an
    # integer representing a number of milliseconds. The value is non-negative - if a
    # negative value is provided, the implementation MUST generate a warning, gracefully
    # ignore the setting and use the default value if it is defined." sdk-environment-
    # variables.md, Numeric: "if the user provides a value the implementation cannot parse,
    # the implementation SHOULD generate a warning and gracefully ignore the setting, i.e.,
    # treat them as not set" ("For new implementations, these should be treated as MUST").
    for variable, value in _set(environ, _variables(signal, "TIMEOUT")):
        if not _WHOLE_NUMBER.fullmatch(value):
            warnings.append(
                f"{variable}={value!r} is not a whole number of milliseconds: ignored "
                f"(use e.g. {DEFAULT_TIMEOUT_MS})"
            )
        elif int(value) < 0:
            warnings.append(f"{variable}={value!r} is negative: ignored (0 means no limit)")
        else:
            return int(value), variable
    return DEFAULT_TIMEOUT_MS, "default"


def _compression(signal: Signal, environ: Mapping[str, str], warnings: list[str]) -> Setting:
    # exporter.md: "Supported values for `OTEL_EXPORTER_OTLP_*COMPRESSION` options: `none` if
    # compression is disabled. `gzip` is the only specified compression method for now."
    # Default "No value" (SIGs choose): none. Unknown values: warned about and ignored (Enum).
    for variable, value in _set(environ, _variables(signal, "COMPRESSION")):
        lowered = value.lower()
        if lowered in ("gzip", "none"):
            return Setting(lowered, variable)
        warnings.append(f"{variable}={value!r} is not gzip or none: ignored")
    return Setting("none", "default")


def _path(signal: Signal, environ: Mapping[str, str], option: str) -> Setting | None:
    found = _set(environ, _variables(signal, option))
    return Setting(found[0][1], found[0][0]) if found else None


def resolve_target(signal: Signal, environ: Mapping[str, str]) -> OtlpTarget:
    """The exporter settings of ``signal`` from ``environ``; ConfigError if they are unusable."""
    if signal not in SIGNALS:
        raise ValueError(f"unknown signal {signal!r}")
    warnings: list[str] = []
    sources: dict[str, Setting] = {}

    protocol = _protocol(signal, environ, warnings)
    sources["protocol"] = protocol
    if protocol.value == "grpc":
        endpoint, source, insecure, insecure_source = _grpc_endpoint(signal, environ, warnings)
    else:
        endpoint, source = _http_endpoint(signal, environ)
        # "OTLP/HTTP always uses the scheme provided for the `endpoint`."
        insecure, insecure_source = endpoint.lower().startswith("http://"), "endpoint scheme"
    sources["endpoint"] = Setting(endpoint, source)
    sources["insecure"] = Setting("true" if insecure else "false", insecure_source)

    headers, headers_source = _headers(signal, environ, warnings)
    sources["headers"] = Setting(",".join(k for k, _ in headers) or "(none)", headers_source)

    timeout_ms, timeout_source = _timeout(signal, environ, warnings)
    if timeout_ms == 0 or timeout_ms > NO_LIMIT_MS:
        sources["timeout_s"] = Setting(f"{timeout_ms} ms (no limit)", timeout_source)
        timeout_ms = NO_LIMIT_MS
    else:
        sources["timeout_s"] = Setting(f"{timeout_ms} ms", timeout_source)

    compression = _compression(signal, environ, warnings)
    sources["compression"] = compression

    paths: dict[str, str | None] = {}
    for name, option in (
        ("certificate", "CERTIFICATE"),
        ("client_key", "CLIENT_KEY"),
        ("client_certificate", "CLIENT_CERTIFICATE"),
    ):
        found = _path(signal, environ, option)
        paths[name] = found.value if found else None
        sources[name] = found if found else Setting("(none)", "default")

    return OtlpTarget(
        signal=signal,
        protocol="grpc" if protocol.value == "grpc" else "http/protobuf",
        endpoint=endpoint,
        headers=headers,
        timeout_s=timeout_ms / 1000.0,
        compression="gzip" if compression.value == "gzip" else "none",
        insecure=insecure,
        certificate=paths["certificate"],
        client_key=paths["client_key"],
        client_certificate=paths["client_certificate"],
        sources=sources,
        warnings=tuple(warnings),
    )


TEMPORALITY_PREFERENCES = ("cumulative", "delta", "lowmemory")


def metrics_temporality(environ: Mapping[str, str], warn: Callable[[str], None]) -> str:
    """OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE, as the specification reads it (case
    insensitive; an unknown value is said once and read as the default, cumulative)."""
    name = "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE"
    value = environ.get(name, "").strip().lower() or "cumulative"
    if value not in TEMPORALITY_PREFERENCES:
        warn(
            f"mfotel: {name}={value!r} is not one of {', '.join(TEMPORALITY_PREFERENCES)}; "
            "using cumulative"
        )
        return "cumulative"
    return value
