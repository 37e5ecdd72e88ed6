"""Sending one encoded OTLP request: HTTP with the standard library, gRPC with grpcio.

One attempt per :meth:`Transport.send`; the caller decides on retries and spooling. A send
never raises: it returns a :class:`SendResult` whose ``detail`` is one line for a warning.
Retryable outcomes follow the OTLP spec: HTTP 429, 502, 503, 504 and connection errors;
gRPC CANCELLED, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, ABORTED, OUT_OF_RANGE, UNAVAILABLE,
DATA_LOSS.
"""

from __future__ import annotations

import http.client
import socket
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import ssl
from urllib.parse import urlsplit

from mfotel import __version__
from mfotel._internal.otlp.config import ConfigError, OtlpTarget

RETRYABLE_HTTP = (429, 502, 503, 504)
RETRYABLE_GRPC = (
    "CANCELLED",
    "DEADLINE_EXCEEDED",
    "RESOURCE_EXHAUSTED",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNAVAILABLE",
    "DATA_LOSS",
)
GRPC_METHODS = {
    "traces": "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    "logs": "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
    "metrics": "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
}
USER_AGENT = f"mfotel/{__version__}"


@dataclass(frozen=True)
class SendResult:
    ok: bool
    retryable: bool = False
    detail: str = ""
    retry_after_s: float | None = None


class Transport(Protocol):
    def send(self, payload: bytes, deadline_s: float) -> SendResult: ...
    def close(self) -> None: ...


def make_transport(target: OtlpTarget) -> Transport:
    if target.protocol == "grpc":
        return GrpcTransport(target)
    return HttpTransport(target)


def _ssl_context(target: OtlpTarget) -> ssl.SSLContext:
    import ssl  # only for https endpoints

    context = ssl.create_default_context(cafile=target.certificate)
    if target.client_certificate:
        context.load_cert_chain(target.client_certificate, target.client_key)
    return context


class HttpTransport:
    def __init__(self, target: OtlpTarget) -> None:
        self.target = target
        url = urlsplit(target.endpoint)
        self._https = url.scheme == "https"
        self._host = url.hostname or "localhost"
        self._port = url.port or (443 if self._https else 80)
        self._path = (url.path or "/") + (f"?{url.query}" if url.query else "")
        self._where = f"{self._host}:{self._port}"
        self._conn: http.client.HTTPConnection | None = None
        self._headers = {
            "Content-Type": "application/x-protobuf",
            "User-Agent": USER_AGENT,
            **dict(target.headers),
        }
        if target.compression == "gzip":
            self._headers["Content-Encoding"] = "gzip"

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        if self._conn is None:
            if self._https:
                self._conn = http.client.HTTPSConnection(
                    self._host, self._port, timeout=timeout, context=_ssl_context(self.target)
                )
            else:
                self._conn = http.client.HTTPConnection(self._host, self._port, timeout=timeout)
        self._conn.timeout = timeout
        if self._conn.sock is not None:
            self._conn.sock.settimeout(timeout)
        return self._conn

    def send(self, payload: bytes, deadline_s: float) -> SendResult:
        timeout = min(self.target.timeout_s, deadline_s - time.monotonic())
        if timeout <= 0:
            return SendResult(False, True, f"no time left to send to {self._where}")
        if self.target.compression == "gzip":
            import gzip

            body = gzip.compress(payload, 6)
        else:
            body = payload
        try:
            conn = self._connection(timeout)
            conn.request("POST", self._path, body=body, headers=self._headers)
            response = conn.getresponse()
            response.read()
        except (OSError, http.client.HTTPException) as exc:  # ssl.SSLError is an OSError
            self.close()
            return SendResult(False, True, self._describe(exc))
        status = response.status
        if 200 <= status < 300:
            return SendResult(True)
        if response.getheader("Connection", "").lower() == "close":
            self.close()
        retry_after = _retry_after(response.getheader("Retry-After"))
        return SendResult(
            False,
            status in RETRYABLE_HTTP,
            f"{self.target.endpoint} answered HTTP {status} {response.reason}",
            retry_after,
        )

    def _describe(self, exc: BaseException) -> str:
        if isinstance(exc, ConnectionRefusedError):
            return f"connection refused by {self._where}"
        if isinstance(exc, (socket.timeout, TimeoutError)):
            return f"{self._where} did not answer in time"
        if isinstance(exc, socket.gaierror):
            return f"cannot resolve {self._host}"
        return f"{self._where}: {exc.__class__.__name__}: {exc}"

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


class GrpcTransport:
    def __init__(self, target: OtlpTarget) -> None:
        try:
            import grpc
        except ImportError:
            raise ConfigError(
                "OTEL_EXPORTER_OTLP_PROTOCOL=grpc needs grpcio: pip install grpcio, "
                "or use http/protobuf"
            ) from None
        self._grpc: Any = grpc
        self.target = target
        url = urlsplit(target.endpoint)
        self._where = f"{url.hostname}:{url.port or 4317}"
        if target.insecure:
            self._channel = grpc.insecure_channel(self._where)
        else:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=_read(target.certificate),
                private_key=_read(target.client_key),
                certificate_chain=_read(target.client_certificate),
            )
            self._channel = grpc.secure_channel(self._where, credentials)
        self._call = self._channel.unary_unary(GRPC_METHODS[target.signal])
        self._metadata = (*target.headers, ("user-agent", USER_AGENT))
        self._compression = grpc.Compression.Gzip if target.compression == "gzip" else None

    def send(self, payload: bytes, deadline_s: float) -> SendResult:
        timeout = min(self.target.timeout_s, deadline_s - time.monotonic())
        if timeout <= 0:
            return SendResult(False, True, f"no time left to send to {self._where}")
        try:
            self._call(
                payload, timeout=timeout, metadata=self._metadata, compression=self._compression
            )
        except self._grpc.RpcError as exc:
            code = exc.code().name if hasattr(exc, "code") else "UNKNOWN"
            details = exc.details() if hasattr(exc, "details") else ""
            return SendResult(
                False, code in RETRYABLE_GRPC, f"{self._where} answered gRPC {code}: {details}"
            )
        return SendResult(True)

    def close(self) -> None:
        self._channel.close()


def _read(path: str | None) -> bytes | None:
    if not path:
        return None
    with open(path, "rb") as handle:
        return handle.read()
