"""Sending one encoded OTLP request: HTTP with the standard library, gRPC with grpcio.

One attempt per :meth:`Transport.send`; the caller decides on retries, backoff and spooling.
A send never raises: it returns a :class:`SendResult` whose ``detail`` is one line for a
warning. Outcomes follow the OTLP specification (opentelemetry-proto ``docs/specification.md``):

- OTLP/HTTP: 2xx is success; "429 Too Many Requests, 502 Bad Gateway, 503 Service
  Unavailable, 504 Gateway Timeout" are retryable and "All other `4xx` or `5xx` response
  status codes MUST NOT be retried"; "Retry-After" (seconds or an HTTP date) is honoured;
  "If the server disconnects without returning a response, the client SHOULD retry" and a
  failed connection is retryable too. Other statuses (3xx) are failures that retrying does
  not change.
- OTLP/gRPC: CANCELLED, DEADLINE_EXCEEDED, ABORTED, OUT_OF_RANGE, UNAVAILABLE and DATA_LOSS
  are retryable; RESOURCE_EXHAUSTED only when the status carries a ``google.rpc.RetryInfo``
  ("If no such status is returned, then the `RESOURCE_EXHAUSTED` code SHOULD be treated as
  non-retryable"); a RetryInfo delay becomes ``retry_after_s``.
- Size limits: a request over 64 MiB is not sent and a response over 4 MiB is a
  non-retryable failure ("It is RECOMMENDED to use 64 MiB / 4 MiB as the default limit").
- A success carrying ``partial_success`` stays a success (the spec forbids retrying it); its
  rejected count and message go to ``detail``.

Only the standard library is imported here; ``grpc`` is imported by :func:`make_transport`
when the protocol is ``grpc``, and ``gzip``/``ssl`` only when they are used.
"""

from __future__ import annotations

import http.client
import re
import socket
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from mfotel import __version__
from mfotel._internal.otlp.config import ConfigError, OtlpTarget
from mfotel._internal.otlp.wire import fields as _wire_fields

if TYPE_CHECKING:
    import ssl

RETRYABLE_HTTP = frozenset((429, 502, 503, 504))
RETRYABLE_GRPC = frozenset(
    ("CANCELLED", "DEADLINE_EXCEEDED", "ABORTED", "OUT_OF_RANGE", "UNAVAILABLE", "DATA_LOSS")
)
GRPC_METHODS = {
    "traces": "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    "logs": "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
    "metrics": "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
}
MAX_REQUEST_BYTES = 64 * 1024 * 1024
MAX_RESPONSE_BYTES = 4 * 1024 * 1024
# exporter.md, User Agent: "SHOULD emit a User-Agent header to at a minimum identify the
# exporter, the language of its implementation, and the version of the exporter".
USER_AGENT = f"mfotel-OTLP-Exporter-Python/{__version__}"
_REJECTED = {"traces": "spans", "logs": "log records", "metrics": "data points"}
_GRPC_KEY = re.compile(r"[0-9a-z_.-]+")
_PRINTABLE_ASCII = re.compile(r"[\x20-\x7e]*")


@dataclass(frozen=True)
class SendResult:
    """The outcome of one attempt; ``detail`` is one line (empty on a plain success)."""

    ok: bool
    retryable: bool
    detail: str
    retry_after_s: float | None = None


class Transport(Protocol):
    def send(self, payload: bytes, deadline_s: float) -> SendResult: ...
    def close(self) -> None: ...


# Pauses before the retries of a retryable failure (the collector's Retry-After wins), as
# the OTLP specification asks: the one retry policy of the exporter, replay and backfill.
RETRY_PAUSES = (0.1, 0.5, 2.0)
MAX_PAUSE_S = 5.0  # a longer Retry-After is not waited out: the request is spooled or reported


def send_with_retries(
    transport: Transport,
    payload: bytes,
    attempt_timeout_s: float,
    deadline: float | None = None,
    pauses: tuple[float, ...] = RETRY_PAUSES,
) -> SendResult:
    """Send ``payload``, retrying what the collector says is retryable after each pause (or its
    Retry-After, up to MAX_PAUSE_S), each attempt within ``attempt_timeout_s`` and all of them
    before ``deadline`` (monotonic), if one is given. The last attempt's result."""
    import time

    def attempt_deadline() -> float:
        end = time.monotonic() + attempt_timeout_s
        return end if deadline is None else min(end, deadline)

    result = transport.send(payload, attempt_deadline())
    for pause in pauses:
        if result.ok or not result.retryable:
            break
        wait = min(result.retry_after_s if result.retry_after_s is not None else pause, MAX_PAUSE_S)
        if deadline is not None and time.monotonic() + wait >= deadline:
            break
        time.sleep(wait)
        result = transport.send(payload, attempt_deadline())
    return result


def make_transport(target: OtlpTarget) -> Transport:
    """A transport for ``target``; ConfigError if it cannot be built (grpcio, TLS files)."""
    if target.protocol == "grpc":
        try:
            import grpc
        except ImportError:
            variable = target.sources.get("protocol")
            name = variable.source if variable is not None else "OTEL_EXPORTER_OTLP_PROTOCOL"
            raise ConfigError(
                f"{name}=grpc needs grpcio: pip install grpcio (or use http/protobuf)"
            ) from None
        return GrpcTransport(target, grpc)
    return HttpTransport(target)


# -- shared helpers ----------------------------------------------------------------------------


def _one_line(text: str, limit: int = 300) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _variable(target: OtlpTarget, field_name: str, fallback: str) -> str:
    setting = target.sources.get(field_name)
    return setting.source if setting is not None and setting.source != "default" else fallback


def _read_file(target: OtlpTarget, field_name: str, path: str | None) -> bytes | None:
    if not path:
        return None
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as exc:
        variable = _variable(target, field_name, field_name)
        raise ConfigError(
            f"{variable}={path!r} cannot be read ({exc.strerror or exc}): point it at a PEM file"
        ) from None


def _check_client_pair(target: OtlpTarget) -> None:
    if target.client_key and not target.client_certificate:
        key = _variable(target, "client_key", "OTEL_EXPORTER_OTLP_CLIENT_KEY")
        raise ConfigError(
            f"{key} is set but no client certificate is: "
            "set OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE too (mTLS needs both)"
        )


def _too_big(payload: bytes) -> SendResult | None:
    # "If the limit is exceeded, the client MUST NOT make the request".
    if len(payload) <= MAX_REQUEST_BYTES:
        return None
    return SendResult(
        False,
        False,
        f"request of {len(payload)} bytes not sent: over the {MAX_REQUEST_BYTES} byte OTLP limit",
    )


# A few protobuf wire-format reads, enough for google.rpc.Status, RetryInfo and
# partial_success, so that no protobuf library is needed.


def _text(value: int | bytes) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else ""


def _status(data: bytes) -> tuple[str, float | None, bool]:
    """google.rpc.Status: (message, RetryInfo delay in s or None, has RetryInfo)."""
    message, delay, has_retry_info = "", None, False
    try:
        for number, _, value in _wire_fields(data):
            if number == 2:
                message = _text(value)
            elif number == 3 and isinstance(value, bytes):
                detail = dict((n, v) for n, _, v in _wire_fields(value))
                if _text(detail.get(1, b"")).endswith("/google.rpc.RetryInfo"):
                    has_retry_info = True
                    delay = _retry_delay(detail.get(2, b""))
    except ValueError:
        pass
    return message, delay, has_retry_info


def _retry_delay(info: int | bytes) -> float | None:
    if not isinstance(info, bytes):
        return None
    for number, _, duration in _wire_fields(info):
        if number == 1 and isinstance(duration, bytes):
            seconds = nanos = 0
            for part, _, amount in _wire_fields(duration):
                if part == 1 and isinstance(amount, int):
                    seconds = amount
                elif part == 2 and isinstance(amount, int):
                    nanos = amount
            return max(0.0, seconds + nanos / 1e9)
    return None


def _partial_success(data: bytes, signal: str, where: str) -> str:
    """The detail line for an Export*ServiceResponse carrying partial_success, else ""."""
    try:
        for number, _, value in _wire_fields(data):
            if number == 1 and isinstance(value, bytes):
                rejected, message = 0, ""
                for part, _, item in _wire_fields(value):
                    if part == 1 and isinstance(item, int):
                        rejected = item
                    elif part == 2:
                        message = _text(item)
                if rejected:
                    unit = _REJECTED.get(signal, "items")
                    why = f": {message}" if message.strip() else ""
                    return _one_line(f"{where} rejected {rejected} {unit}{why}")
                if message:
                    return _one_line(f"{where} accepted the request with a warning: {message}")
    except ValueError:
        pass
    return ""


# -- OTLP/HTTP -----------------------------------------------------------------------------------


def _ssl_context(target: OtlpTarget) -> ssl.SSLContext:
    import ssl

    _check_client_pair(target)
    for name in ("certificate", "client_certificate", "client_key"):
        _read_file(target, name, getattr(target, name))  # a readable file, or ConfigError
    try:
        # exporter.md, Certificate File: "The trusted certificate to use when verifying a
        # server's TLS credentials" - when given, it replaces the system's trust store.
        context = ssl.create_default_context(cafile=target.certificate or None)
    except ssl.SSLError as exc:
        variable = _variable(target, "certificate", "OTEL_EXPORTER_OTLP_CERTIFICATE")
        raise ConfigError(
            f"{variable}={target.certificate!r} is not a PEM certificate ({exc.reason}): "
            "point it at the CA certificate in PEM format"
        ) from None
    if target.client_certificate:
        try:
            context.load_cert_chain(target.client_certificate, target.client_key or None)
        except ssl.SSLError as exc:
            variable = _variable(
                target, "client_certificate", "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE"
            )
            raise ConfigError(
                f"{variable}={target.client_certificate!r} and its key do not load "
                f"({exc.reason}): give the PEM client certificate and its private key"
            ) from None
    return context


def _retry_after(value: str | None) -> float | None:
    """Retry-After: "either an HTTP-date or a number of seconds to delay" (RFC 7231)."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)  # TypeError on Python < 3.10, ValueError after
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - time.time())


class HttpTransport:
    """OTLP/HTTP with ``http.client``: one keep-alive connection, reopened after errors."""

    def __init__(self, target: OtlpTarget) -> None:
        self.target = target
        url = urlsplit(target.endpoint)
        self._tls = url.scheme == "https"
        self._host = url.hostname or "localhost"
        self._port = url.port or (443 if self._tls else 80)
        self._path = (url.path or "/") + (f"?{url.query}" if url.query else "")
        host = f"[{self._host}]" if ":" in self._host else self._host
        self._where = f"{host}:{self._port}"
        self._context = _ssl_context(target) if self._tls else None
        user_agent = USER_AGENT
        self._headers: dict[str, bytes | str] = {}
        for key, value in target.headers:
            if key.lower() == "user-agent":
                # exporter.md: a product identifier is prepended to the exporter's own.
                user_agent = f"{value} {USER_AGENT}"
            else:
                self._headers[key] = value.encode("utf-8")  # the percent-decoded octets
        self._headers["User-Agent"] = user_agent.encode("utf-8")
        self._headers["Content-Type"] = "application/x-protobuf"
        if target.compression == "gzip":
            self._headers["Content-Encoding"] = "gzip"
        self._conn: http.client.HTTPConnection | None = None

    def send(self, payload: bytes, deadline_s: float) -> SendResult:
        try:
            refused = _too_big(payload)
            if refused is not None:
                return refused
            if self.target.compression == "gzip":
                import gzip

                body = gzip.compress(payload, compresslevel=6, mtime=0)
            else:
                body = payload
            result = self._attempt(body, deadline_s)
            if result is None:
                # The kept-alive connection had been closed by the server while idle, so the
                # request did not get through: say it again on a new connection. This is
                # the same attempt, not a retry (a new connection never returns None).
                result = self._attempt(body, deadline_s)
            if result is None:  # not reached; keeps the contract explicit
                return SendResult(False, True, f"{self._where} closed the connection")
            return result
        except Exception as exc:  # never raise from send(): the caller counts on a result
            self.close()
            return SendResult(
                False, False, _one_line(f"{self._where}: {exc.__class__.__name__}: {exc}")
            )

    def _time_left(self, deadline_s: float) -> float:
        return min(self.target.timeout_s, deadline_s - time.monotonic())

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        if self._conn is None:
            if self._context is not None:
                self._conn = http.client.HTTPSConnection(
                    self._host, self._port, timeout=timeout, context=self._context
                )
            else:
                self._conn = http.client.HTTPConnection(self._host, self._port, timeout=timeout)
        self._conn.timeout = timeout
        if self._conn.sock is not None:
            self._conn.sock.settimeout(timeout)
        return self._conn

    def _attempt(self, body: bytes, deadline_s: float) -> SendResult | None:
        """One request; None when a reused connection turned out to be closed by the server."""
        timeout = self._time_left(deadline_s)
        if timeout <= 0:
            return SendResult(False, True, f"no time left to send to {self._where}")
        reused = self._conn is not None and self._conn.sock is not None
        try:
            conn = self._connection(timeout)
            conn.request("POST", self._path, body=body, headers=self._headers)
            if conn.sock is not None:  # the whole exchange stays within the timeout
                conn.sock.settimeout(max(0.001, self._time_left(deadline_s)))
            response = conn.getresponse()
            data = response.read(MAX_RESPONSE_BYTES + 1)
        except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError) as exc:
            self.close()
            if reused:
                return None
            return SendResult(False, True, self._describe(exc, timeout))
        except (OSError, http.client.HTTPException) as exc:  # ssl.SSLError is an OSError
            self.close()
            return SendResult(False, True, self._describe(exc, timeout))
        if len(data) > MAX_RESPONSE_BYTES or not response.isclosed():
            # "If the limit is exceeded, the client MUST treat the response as a
            # non-retryable error".
            self.close()
            return SendResult(
                False,
                False,
                f"{self.target.endpoint} answered HTTP {response.status} with a body over "
                f"{MAX_RESPONSE_BYTES} bytes: discarded",
            )
        status = response.status
        content_type = (response.getheader("Content-Type") or "").lower()
        if 200 <= status < 300:
            detail = ""
            if "protobuf" in content_type:
                detail = _partial_success(data, self.target.signal, self.target.endpoint)
            return SendResult(True, False, detail)
        message = ""
        if "protobuf" in content_type:
            message = _status(data)[0]
        elif content_type.startswith("text/plain"):
            message = data.decode("utf-8", "replace")
        detail = f"{self.target.endpoint} answered HTTP {status} {response.reason}"
        if 300 <= status < 400:
            location = response.getheader("Location")
            detail += f" (redirect to {location}: set the endpoint to it)" if location else ""
        if message.strip():
            detail += f": {message}"
        retryable = status in RETRYABLE_HTTP
        return SendResult(
            False,
            retryable,
            _one_line(detail),
            _retry_after(response.getheader("Retry-After")) if retryable else None,
        )

    def _describe(self, exc: BaseException, timeout: float) -> str:
        if isinstance(exc, ConnectionRefusedError):
            return f"connection refused by {self._where}"
        if isinstance(exc, (socket.timeout, TimeoutError)):
            return f"{self._where} did not answer within {timeout:.3g} s"
        if isinstance(exc, socket.gaierror):
            return _one_line(f"cannot resolve {self._host}: {exc.strerror or exc}")
        if isinstance(exc, http.client.RemoteDisconnected):
            return f"{self._where} closed the connection without answering"
        if isinstance(exc, ConnectionResetError):
            return f"connection reset by {self._where}"
        verify = getattr(exc, "verify_message", None)
        if verify:
            return _one_line(f"TLS certificate of {self._where} not trusted: {verify}")
        if isinstance(exc, OSError) and exc.strerror:
            return _one_line(f"{self._where}: {exc.strerror}")
        return _one_line(f"{self._where}: {exc.__class__.__name__}: {exc}")

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:
                pass
            self._conn = None


# -- OTLP/gRPC -----------------------------------------------------------------------------------


def grpc_address(endpoint: str) -> str:
    """The grpcio target for an endpoint: ``host:port`` from an http(s) URL, else as given.

    exporter.md: "If the gRPC client implementation does not support an endpoint with a
    scheme of `http` or `https` then the endpoint SHOULD be transformed to the most sensible
    format for that implementation." grpcio takes the URL's authority (a URL without a port
    gets gRPC's own default port, 443, as in the other OpenTelemetry SDKs); any path is not
    used by gRPC.
    """
    if not endpoint.lower().startswith(("http://", "https://")):
        return endpoint
    netloc = urlsplit(endpoint).netloc
    return netloc.rpartition("@")[2]


class GrpcTransport:
    """OTLP/gRPC through grpcio without generated stubs: raw bytes in and out."""

    def __init__(self, target: OtlpTarget, grpc: Any) -> None:
        self._grpc = grpc
        self.target = target
        self._where = grpc_address(target.endpoint)
        user_agent = USER_AGENT
        metadata: list[tuple[str, str | bytes]] = []
        variable = _variable(target, "headers", "OTEL_EXPORTER_OTLP_HEADERS")
        for key, value in target.headers:
            name = key.lower()  # gRPC metadata keys are lowercase
            if not _GRPC_KEY.fullmatch(name) or name.startswith("grpc-"):
                raise ConfigError(
                    f"{variable}: {key!r} is not a valid gRPC metadata key: use letters, "
                    "digits, '-', '_' and '.', not starting with grpc-"
                )
            if name.endswith("-bin"):
                metadata.append((name, value.encode("utf-8")))
                continue
            if not _PRINTABLE_ASCII.fullmatch(value):
                raise ConfigError(
                    f"{variable}: the value of {key!r} is not printable ASCII, which gRPC "
                    "requires: use a key ending in -bin for binary values"
                )
            if name == "user-agent":  # grpcio replaces a user-agent entry; it is an option
                user_agent = f"{value} {USER_AGENT}"
            else:
                metadata.append((name, value))
        self._metadata = tuple(metadata)
        options = (("grpc.primary_user_agent", user_agent),)
        if target.insecure:
            self._channel = grpc.insecure_channel(self._where, options=options)
        else:
            _check_client_pair(target)
            credentials = grpc.ssl_channel_credentials(
                root_certificates=_read_file(target, "certificate", target.certificate),
                private_key=_read_file(target, "client_key", target.client_key),
                certificate_chain=_read_file(
                    target, "client_certificate", target.client_certificate
                ),
            )
            self._channel = grpc.secure_channel(self._where, credentials, options=options)
        self._call = self._channel.unary_unary(
            GRPC_METHODS[target.signal], request_serializer=None, response_deserializer=None
        )
        self._compression = grpc.Compression.Gzip if target.compression == "gzip" else None

    def send(self, payload: bytes, deadline_s: float) -> SendResult:
        try:
            refused = _too_big(payload)
            if refused is not None:
                return refused
            timeout = min(self.target.timeout_s, deadline_s - time.monotonic())
            if timeout <= 0:
                return SendResult(False, True, f"no time left to send to {self._where}")
            try:
                response = self._call(
                    payload,
                    timeout=timeout,
                    metadata=self._metadata,
                    compression=self._compression,
                )
            except self._grpc.RpcError as exc:
                return self._failure(exc)
            detail = _partial_success(response or b"", self.target.signal, self._where)
            return SendResult(True, False, detail)
        except Exception as exc:  # never raise from send(): the caller counts on a result
            return SendResult(
                False, False, _one_line(f"{self._where}: {exc.__class__.__name__}: {exc}")
            )

    def _failure(self, exc: Any) -> SendResult:
        code = exc.code() if hasattr(exc, "code") else None
        name = getattr(code, "name", "UNKNOWN")
        details = (exc.details() if hasattr(exc, "details") else "") or ""
        delay, has_retry_info = None, False
        trailing = exc.trailing_metadata() if hasattr(exc, "trailing_metadata") else None
        for key, value in trailing or ():
            if key == "grpc-status-details-bin" and isinstance(value, bytes):
                _, delay, has_retry_info = _status(value)
        # opentelemetry-proto specification.md, Failures: RESOURCE_EXHAUSTED is retryable
        # "Only if the server can recover", signalled by a status "containing RetryInfo".
        retryable = name in RETRYABLE_GRPC or (name == "RESOURCE_EXHAUSTED" and has_retry_info)
        why = f": {details}" if details.strip() else ""
        return SendResult(
            False,
            retryable,
            _one_line(f"gRPC {name} from {self._where}{why}"),
            delay if retryable else None,
        )

    def close(self) -> None:
        try:
            self._channel.close()
        except Exception:
            pass
