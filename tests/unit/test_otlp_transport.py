"""The OTLP transports against real servers on 127.0.0.1: what goes on the wire, what comes back.

HTTP tests run a ``ThreadingHTTPServer``; gRPC tests a ``grpc.server`` with a generic handler.
No test sleeps: servers answer synchronously, and waits use events with timeouts.
"""

from __future__ import annotations

import gzip
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

import grpc
import pytest
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2, status_pb2  # type: ignore[import-untyped]
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from mfotel._internal.otlp import transport
from mfotel._internal.otlp.config import ConfigError, OtlpTarget, resolve_target
from mfotel._internal.otlp.transport import (
    GrpcTransport,
    HttpTransport,
    SendResult,
    Transport,
    make_transport,
)

PAYLOAD = b"\x0a\x03abc\x00\xff payload bytes"
USER_AGENT_PREFIX = "mfotel-OTLP-Exporter-Python/"

# A test CA and, signed by it, a server certificate for localhost/127.0.0.1 and a client
# certificate (EC P-256, valid 2000-2100), so TLS tests need no tool to make them.
CA_PEM = """-----BEGIN CERTIFICATE-----
MIIBZTCCAQygAwIBAgICEAAwCgYIKoZIzj0EAwIwGTEXMBUGA1UEAwwObWZvdGVs
IHRlc3QgQ0EwIBcNMDAwMTAxMDAwMDAwWhgPMjEwMDAxMDEwMDAwMDBaMBkxFzAV
BgNVBAMMDm1mb3RlbCB0ZXN0IENBMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE
DYR3jHS/r4gxjkPd/OMM1ctvBvghVo060SnZ/gadU3EfJse++QYlLbLP2Mm3Xywz
jj1C1anqlByHLsH5JKELGaNCMEAwDwYDVR0TAQH/BAUwAwEB/zAOBgNVHQ8BAf8E
BAMCAQYwHQYDVR0OBBYEFHwEnZehlT6J2Qe2OQLszCloLessMAoGCCqGSM49BAMC
A0cAMEQCICvr7Yit2ZB7fwVMKnuXU4IjwK15q4gT3vBzNFHKQCs4AiBLX5VqFpEu
9RFj9viR/KO1oEjZ0mRH0afyPyox9RuoFw==
-----END CERTIFICATE-----
"""
SERVER_PEM = """-----BEGIN CERTIFICATE-----
MIIBrTCCAVKgAwIBAgICEAEwCgYIKoZIzj0EAwIwGTEXMBUGA1UEAwwObWZvdGVs
IHRlc3QgQ0EwIBcNMDAwMTAxMDAwMDAwWhgPMjEwMDAxMDEwMDAwMDBaMBQxEjAQ
BgNVBAMMCWxvY2FsaG9zdDBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABDg1uqQq
fTcNiruwkOeTGj/au4/O61d6ndvNXX9sX/ivxgB3IWPNkCk5NJNOp4aN2+IT+qbf
7yWhr3z2XBMOQayjgYwwgYkwCQYDVR0TBAIwADALBgNVHQ8EBAMCB4AwEwYDVR0l
BAwwCgYIKwYBBQUHAwEwGgYDVR0RBBMwEYIJbG9jYWxob3N0hwR/AAABMB8GA1Ud
IwQYMBaAFHwEnZehlT6J2Qe2OQLszCloLessMB0GA1UdDgQWBBQLf+8niayWe9uk
FiBDhjOghooKfzAKBggqhkjOPQQDAgNJADBGAiEAnOYNT9xlIgzcIiH0kGlNPQdm
kBusb2msDWpncPTkU/sCIQCrZWWhjcZpN8mlYtijEZm5wQaxHMyF+VCs9RuTeOt7
Ew==
-----END CERTIFICATE-----
"""
SERVER_KEY = """-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgRQZMvInNMU2En5oR
Fk03Qqox6fUmYfC5+LORPJ1j2u6hRANCAAQ4NbqkKn03DYq7sJDnkxo/2ruPzutX
ep3bzV1/bF/4r8YAdyFjzZApOTSTTqeGjdviE/qm3+8loa989lwTDkGs
-----END PRIVATE KEY-----
"""
CLIENT_PEM = """-----BEGIN CERTIFICATE-----
MIIBljCCAT2gAwIBAgICEAIwCgYIKoZIzj0EAwIwGTEXMBUGA1UEAwwObWZvdGVs
IHRlc3QgQ0EwIBcNMDAwMTAxMDAwMDAwWhgPMjEwMDAxMDEwMDAwMDBaMB0xGzAZ
BgNVBAMMEm1mb3RlbCB0ZXN0IGNsaWVudDBZMBMGByqGSM49AgEGCCqGSM49AwEH
A0IABMJ/B6wbJIoBZxVBeGhRYNWiUhmDfrhKrVNgeZMj4MLU6DBon7zSRfa4dB1D
Bza2hWSsn3gEmT/4hwmNpUEsjz6jbzBtMAkGA1UdEwQCMAAwCwYDVR0PBAQDAgeA
MBMGA1UdJQQMMAoGCCsGAQUFBwMCMB8GA1UdIwQYMBaAFHwEnZehlT6J2Qe2OQLs
zCloLessMB0GA1UdDgQWBBQ+dI7vgDdQUUD39Am6GSRbYInJYTAKBggqhkjOPQQD
AgNHADBEAiAp1hsU41tfBaZg8WUF9ayu5cPop8wwedBmEt41lPaH+AIgXppOXXmw
7QsmfqDKcNiQnU60YlznytKEYfEfOQHJ8xs=
-----END CERTIFICATE-----
"""
CLIENT_KEY = """-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgRiV5vp33hlGAnKVv
hM7KFrws/GlTCKB5045l1r9H+aKhRANCAATCfwesGySKAWcVQXhoUWDVolIZg364
Sq1TYHmTI+DC1OgwaJ+80kX2uHQdQwc2toVkrJ94BJk/+IcJjaVBLI8+
-----END PRIVATE KEY-----
"""


@dataclass(frozen=True)
class Certs:
    ca: str
    server: str
    server_key: str
    client: str
    client_key: str


@pytest.fixture
def certs(tmp_path: Path) -> Certs:
    paths = []
    for name, text in (
        ("ca.pem", CA_PEM),
        ("server.pem", SERVER_PEM),
        ("server.key", SERVER_KEY),
        ("client.pem", CLIENT_PEM),
        ("client.key", CLIENT_KEY),
    ):
        (tmp_path / name).write_text(text)
        paths.append(str(tmp_path / name))
    return Certs(*paths)


def _later() -> float:
    return time.monotonic() + 30.0


def _target(env: dict[str, str], signal: str = "logs") -> OtlpTarget:
    return resolve_target(signal, env)  # type: ignore[arg-type]


@pytest.fixture
def refusing_port() -> Iterator[int]:
    """A port bound but not listening: connecting to it is refused, and nobody can take it."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (kernel backlog) but never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


# -- a real HTTP collector -------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    status: int = 200
    headers: tuple[tuple[str, str], ...] = (("Content-Type", "application/x-protobuf"),)
    body: bytes = b""
    drop: bool = False  # close the connection without answering
    close_after: bool = False  # answer, then close without saying Connection: close


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    raw_headers: list[tuple[str, str]]
    body: bytes
    client_port: int


@dataclass
class HttpCollector:
    url: str
    received: list[Received] = field(default_factory=list)
    replies: list[Reply] = field(default_factory=list)
    connections: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next_reply(self, request: Received) -> Reply:
        with self.lock:
            self.received.append(request)
            return self.replies.pop(0) if self.replies else Reply()


@contextmanager
def serve_http(context: ssl.SSLContext | None = None) -> Iterator[HttpCollector]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            with collector.lock:
                collector.connections += 1

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            reply = collector.next_reply(
                Received(
                    self.path,
                    {k.lower(): v for k, v in self.headers.items()},
                    list(self.headers.items()),
                    body,
                    self.client_address[1],
                )
            )
            if reply.drop:
                self.close_connection = True
                return
            self.send_response(reply.status)
            for key, value in reply.headers:
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)
            if reply.close_after:
                self.close_connection = True

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    if context is not None:
        server.socket = context.wrap_socket(server.socket, server_side=True)
    scheme = "https" if context is not None else "http"
    collector = HttpCollector(f"{scheme}://127.0.0.1:{server.server_address[1]}")
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield collector
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@pytest.fixture
def http_collector() -> Iterator[HttpCollector]:
    with serve_http() as collector:
        yield collector


def _http(collector: HttpCollector, signal: str = "logs", **env: str) -> HttpTransport:
    made = make_transport(_target({"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url, **env}, signal))
    assert isinstance(made, HttpTransport)
    return made


# -- OTLP/HTTP -------------------------------------------------------------------------------------


@pytest.mark.parametrize("signal", ["traces", "logs", "metrics"])
def test_http_posts_protobuf_to_the_signal_path(http_collector: HttpCollector, signal: str) -> None:
    """A send POSTs the payload as application/x-protobuf to /v1/<signal> and succeeds."""
    sender = _http(http_collector, signal)
    result = sender.send(PAYLOAD, _later())
    sender.close()
    assert result == SendResult(True, False, "")
    [request] = http_collector.received
    assert request.path == f"/v1/{signal}"
    assert request.headers["content-type"] == "application/x-protobuf"
    assert request.headers["user-agent"].startswith(USER_AGENT_PREFIX)
    assert "content-encoding" not in request.headers
    assert request.body == PAYLOAD


def test_http_sends_user_headers_percent_decoded(http_collector: HttpCollector) -> None:
    """Configured headers arrive with their names as written and their values decoded."""
    sender = _http(
        http_collector,
        OTEL_EXPORTER_OTLP_HEADERS="X-Team=ml%20platform,authorization=Bearer%20t0k,x-city=Z%C3%BCrich",
    )
    assert sender.send(PAYLOAD, _later()).ok
    sender.close()
    [request] = http_collector.received
    raw = dict(request.raw_headers)
    assert raw["X-Team"] == "ml platform"
    assert raw["authorization"] == "Bearer t0k"
    # Header octets are the percent-decoded UTF-8; http.server reads them back as Latin-1.
    assert raw["x-city"].encode("latin-1").decode("utf-8") == "Zürich"


def test_http_user_agent_header_is_prepended(http_collector: HttpCollector) -> None:
    """A configured User-Agent is put in front of the exporter's own, as the spec suggests."""
    sender = _http(http_collector, OTEL_EXPORTER_OTLP_HEADERS="User-Agent=MyDistro/2.0")
    assert sender.send(PAYLOAD, _later()).ok
    sender.close()
    agent = http_collector.received[0].headers["user-agent"]
    assert agent.startswith(f"MyDistro/2.0 {USER_AGENT_PREFIX}")


def test_http_gzip_body_decompresses_to_the_payload(http_collector: HttpCollector) -> None:
    """With compression gzip the body is gzip with Content-Encoding: gzip."""
    sender = _http(http_collector, OTEL_EXPORTER_OTLP_COMPRESSION="gzip")
    assert sender.send(PAYLOAD * 50, _later()).ok
    sender.close()
    [request] = http_collector.received
    assert request.headers["content-encoding"] == "gzip"
    assert gzip.decompress(request.body) == PAYLOAD * 50
    assert len(request.body) < len(PAYLOAD * 50)


def test_http_503_with_retry_after_seconds(http_collector: HttpCollector) -> None:
    """503 with Retry-After: 7 is retryable and carries retry_after_s=7."""
    http_collector.replies.append(Reply(503, (("Retry-After", "7"),)))
    sender = _http(http_collector)
    result = sender.send(PAYLOAD, _later())
    sender.close()
    assert (result.ok, result.retryable, result.retry_after_s) == (False, True, 7.0)
    assert result.detail == f"{http_collector.url}/v1/logs answered HTTP 503 Service Unavailable"


def test_http_429_with_retry_after_date(http_collector: HttpCollector) -> None:
    """429 with an HTTP-date Retry-After gives the seconds until that date."""
    when = datetime.now(timezone.utc) + timedelta(seconds=120)
    http_collector.replies.append(Reply(429, (("Retry-After", format_datetime(when, True)),)))
    sender = _http(http_collector)
    result = sender.send(PAYLOAD, _later())
    sender.close()
    assert result.retryable and result.retry_after_s is not None
    assert 100 < result.retry_after_s <= 120


@pytest.mark.parametrize(
    ("status", "retryable"),
    [
        (429, True),
        (502, True),
        (503, True),
        (504, True),
        (400, False),
        (401, False),
        (403, False),
        (404, False),
        (408, False),
        (413, False),
        (500, False),
        (501, False),
    ],
)
def test_http_status_mapping(http_collector: HttpCollector, status: int, retryable: bool) -> None:
    """Only 429, 502, 503 and 504 are retryable; every other 4xx/5xx is final (OTLP spec)."""
    http_collector.replies.append(Reply(status, (("Content-Type", "text/plain"),)))
    sender = _http(http_collector)
    result = sender.send(PAYLOAD, _later())
    sender.close()
    assert (result.ok, result.retryable, result.retry_after_s) == (False, retryable, None)
    assert f"answered HTTP {status} " in result.detail


def test_http_400_detail_has_the_status_message(http_collector: HttpCollector) -> None:
    """A 400 carrying a google.rpc.Status has its message in the detail, not retryable."""
    body = status_pb2.Status(code=3, message="bad span id\nlength 3").SerializeToString()
    http_collector.replies.append(Reply(400, body=body))
    sender = _http(http_collector)
    result = sender.send(PAYLOAD, _later())
    sender.close()
    assert not result.ok and not result.retryable
    assert result.detail == (
        f"{http_collector.url}/v1/logs answered HTTP 400 Bad Request: bad span id length 3"
    )


def test_http_partial_success_is_ok_with_a_detail(http_collector: HttpCollector) -> None:
    """A 200 with partial_success is a success (never retried) that says what was rejected."""
    body = logs_service_pb2.ExportLogsServiceResponse(
        partial_success=logs_service_pb2.ExportLogsPartialSuccess(
            rejected_log_records=2, error_message="too old"
        )
    ).SerializeToString()
    http_collector.replies.append(Reply(200, body=body))
    sender = _http(http_collector)
    result = sender.send(PAYLOAD, _later())
    sender.close()
    assert result == SendResult(
        True, False, f"{http_collector.url}/v1/logs rejected 2 log records: too old"
    )


def test_http_redirect_is_not_followed(http_collector: HttpCollector) -> None:
    """A 3xx is a final failure that names where the collector redirects to."""
    http_collector.replies.append(Reply(308, (("Location", "https://elsewhere/v1/logs"),)))
    sender = _http(http_collector)
    result = sender.send(PAYLOAD, _later())
    sender.close()
    assert not result.ok and not result.retryable
    assert "redirect to https://elsewhere/v1/logs" in result.detail
    assert len(http_collector.received) == 1


def test_http_connection_refused_is_retryable(refusing_port: int) -> None:
    """Nobody listening: retryable, with a detail naming host and port."""
    sender = make_transport(
        _target({"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{refusing_port}"})
    )
    result = sender.send(PAYLOAD, _later())
    sender.close()
    assert result == SendResult(False, True, f"connection refused by 127.0.0.1:{refusing_port}")


def test_http_unknown_host_is_retryable() -> None:
    """A host name that does not resolve is a retryable failure that says so."""
    sender = make_transport(
        _target({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://mfotel-no-such-host.invalid:4318"})
    )
    result = sender.send(PAYLOAD, _later())
    assert not result.ok and result.retryable
    assert result.detail.startswith("cannot resolve mfotel-no-such-host.invalid")


def test_http_keep_alive_connection_is_reused(http_collector: HttpCollector) -> None:
    """Three sends travel over one TCP connection."""
    sender = _http(http_collector)
    results = [sender.send(PAYLOAD + bytes([i]), _later()) for i in range(3)]
    sender.close()
    assert all(r.ok for r in results)
    assert len({r.client_port for r in http_collector.received}) == 1
    assert http_collector.connections == 1
    assert [r.body[-1] for r in http_collector.received] == [0, 1, 2]


def test_http_reconnects_when_the_server_closed_an_idle_connection(
    http_collector: HttpCollector,
) -> None:
    """A kept-alive connection the server closed is replaced, and the request arrives once."""
    http_collector.replies.append(Reply(close_after=True))
    sender = _http(http_collector)
    first = sender.send(b"one", _later())
    second = sender.send(b"two", _later())
    sender.close()
    assert first.ok and second.ok
    assert [r.body for r in http_collector.received] == [b"one", b"two"]
    assert http_collector.received[0].client_port != http_collector.received[1].client_port


def test_http_reopens_after_an_error(http_collector: HttpCollector) -> None:
    """A dropped connection is a retryable failure; the next send opens a new connection."""
    http_collector.replies.append(Reply(drop=True))
    sender = _http(http_collector)
    failed = sender.send(b"one", _later())
    again = sender.send(b"two", _later())
    sender.close()
    where = http_collector.url.split("//")[1]
    assert failed == SendResult(False, True, f"{where} closed the connection without answering")
    assert again.ok
    assert [r.body for r in http_collector.received] == [b"one", b"two"]


def test_http_send_after_close_reopens(http_collector: HttpCollector) -> None:
    """close() ends the connection; a later send opens a new one and succeeds."""
    sender = _http(http_collector)
    assert sender.send(b"one", _later()).ok
    sender.close()
    assert sender.send(b"two", _later()).ok
    sender.close()
    assert http_collector.connections == 2


def test_http_timeout_is_retryable(silent_port: int) -> None:
    """A collector that never answers: retryable after the configured timeout."""
    sender = make_transport(
        _target(
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{silent_port}",
                "OTEL_EXPORTER_OTLP_TIMEOUT": "200",
            }
        )
    )
    started = time.monotonic()
    result = sender.send(PAYLOAD, _later())
    sender.close()
    assert time.monotonic() - started < 5
    assert result == SendResult(False, True, f"127.0.0.1:{silent_port} did not answer within 0.2 s")


def test_http_deadline_caps_the_timeout(silent_port: int) -> None:
    """With a 10 s timeout but 0.2 s to the deadline, the send gives up near the deadline."""
    sender = make_transport(
        _target({"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{silent_port}"})
    )
    started = time.monotonic()
    result = sender.send(PAYLOAD, started + 0.2)
    sender.close()
    assert time.monotonic() - started < 5
    assert not result.ok and result.retryable and "did not answer" in result.detail


def test_http_past_deadline_sends_nothing(http_collector: HttpCollector) -> None:
    """A deadline already passed returns at once, retryable, without touching the network."""
    sender = _http(http_collector)
    result = sender.send(PAYLOAD, time.monotonic() - 1)
    assert not result.ok and result.retryable and result.detail.startswith("no time left")
    assert http_collector.received == [] and http_collector.connections == 0


def test_http_request_over_the_limit_is_not_sent(
    http_collector: HttpCollector, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request over the size limit is refused as final and never reaches the collector."""
    monkeypatch.setattr(transport, "MAX_REQUEST_BYTES", 10)
    sender = _http(http_collector)
    result = sender.send(b"x" * 11, _later())
    assert (result.ok, result.retryable) == (False, False)
    assert "11 bytes not sent" in result.detail
    assert http_collector.received == []


def test_http_response_over_the_limit_is_a_final_failure(
    http_collector: HttpCollector, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A response body over the limit is a non-retryable failure and the connection is dropped."""
    monkeypatch.setattr(transport, "MAX_RESPONSE_BYTES", 10)
    http_collector.replies.append(Reply(200, body=b"y" * 100))
    sender = _http(http_collector)
    result = sender.send(PAYLOAD, _later())
    assert (result.ok, result.retryable) == (False, False)
    assert "over 10 bytes" in result.detail
    assert sender.send(PAYLOAD, _later()).ok
    sender.close()
    assert http_collector.connections == 2


# -- OTLP/HTTP over TLS ------------------------------------------------------------------------


def _tls_server_context(certs: Certs, client_auth: bool = False) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certs.server, certs.server_key)
    if client_auth:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(certs.ca)
    return context


def test_https_with_the_configured_ca(certs: Certs) -> None:
    """OTEL_EXPORTER_OTLP_CERTIFICATE is the CA that verifies the collector's certificate."""
    with serve_http(_tls_server_context(certs)) as collector:
        sender = _http(collector, OTEL_EXPORTER_OTLP_CERTIFICATE=certs.ca)
        assert sender.send(PAYLOAD, _later()).ok
        sender.close()
        assert collector.received[0].body == PAYLOAD


def test_https_untrusted_certificate_fails_clearly(certs: Certs) -> None:
    """Without the CA the collector's certificate is not trusted, and the detail says so."""
    with serve_http(_tls_server_context(certs)) as collector:
        sender = _http(collector)
        result = sender.send(PAYLOAD, _later())
        sender.close()
        assert not result.ok
        assert "TLS certificate of 127.0.0.1:" in result.detail and "not trusted" in result.detail
        assert collector.received == []


def test_https_mutual_tls(certs: Certs) -> None:
    """A collector requiring client certificates accepts the configured client key and cert."""
    with serve_http(_tls_server_context(certs, client_auth=True)) as collector:
        with_cert = _http(
            collector,
            OTEL_EXPORTER_OTLP_CERTIFICATE=certs.ca,
            OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE=certs.client,
            OTEL_EXPORTER_OTLP_CLIENT_KEY=certs.client_key,
        )
        assert with_cert.send(PAYLOAD, _later()).ok
        with_cert.close()
        without = _http(collector, OTEL_EXPORTER_OTLP_CERTIFICATE=certs.ca)
        assert not without.send(PAYLOAD, _later()).ok
        without.close()
        assert len(collector.received) == 1


def test_unreadable_certificate_is_a_config_error(tmp_path: Path) -> None:
    """A certificate path that cannot be read fails at make_transport, naming the variable."""
    missing = str(tmp_path / "missing.pem")
    target = _target(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": "https://collector:4318",
            "OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE": missing,
        }
    )
    with pytest.raises(ConfigError) as raised:
        make_transport(target)
    assert str(raised.value) == (
        f"OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE={missing!r} cannot be read "
        "(No such file or directory): point it at a PEM file"
    )


def test_a_client_key_without_a_certificate_is_a_config_error(certs: Certs) -> None:
    """mTLS needs both files; a lone client key fails at make_transport with the fix."""
    target = _target(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": "https://collector:4318",
            "OTEL_EXPORTER_OTLP_CLIENT_KEY": certs.client_key,
        }
    )
    with pytest.raises(ConfigError, match=r"^OTEL_EXPORTER_OTLP_CLIENT_KEY is set but no client"):
        make_transport(target)


# -- a real gRPC collector -------------------------------------------------------------------------


@dataclass
class GrpcCall:
    method: str
    body: bytes
    metadata: dict[str, Any]


@dataclass
class GrpcCollector:
    port: int
    calls: list[GrpcCall] = field(default_factory=list)
    # Each answer gets the body and the servicer context and returns the response bytes.
    answers: list[Callable[[bytes, Any], bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextmanager
def serve_grpc(credentials: Any = None) -> Iterator[GrpcCollector]:
    collector: GrpcCollector

    def export(method: str) -> Callable[[bytes, Any], bytes]:
        def handle(body: bytes, context: Any) -> bytes:
            with collector.lock:
                collector.calls.append(GrpcCall(method, body, dict(context.invocation_metadata())))
                answer = collector.answers.pop(0) if collector.answers else None
            return answer(body, context) if answer is not None else b""

        return handle

    class Handler(grpc.GenericRpcHandler):  # type: ignore[misc]
        def service(self, details: Any) -> Any:
            return grpc.unary_unary_rpc_method_handler(export(details.method))

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((Handler(),))
    if credentials is None:
        port = server.add_insecure_port("127.0.0.1:0")
    else:
        port = server.add_secure_port("127.0.0.1:0", credentials)
    collector = GrpcCollector(port)
    server.start()
    try:
        yield collector
    finally:
        server.stop(None)


@pytest.fixture
def grpc_collector() -> Iterator[GrpcCollector]:
    with serve_grpc() as collector:
        yield collector


def _grpc(endpoint: str, signal: str = "logs", **env: str) -> GrpcTransport:
    made = make_transport(
        _target(
            {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, **env},
            signal,
        )
    )
    assert isinstance(made, GrpcTransport)
    return made


def _abort(
    code: grpc.StatusCode, message: str, details: bytes = b""
) -> Callable[[bytes, Any], bytes]:
    def answer(body: bytes, context: Any) -> bytes:
        if details:
            context.set_trailing_metadata((("grpc-status-details-bin", details),))
        context.abort(code, message)
        raise AssertionError("abort returns by raising")

    return answer


def _retry_info_status(code: grpc.StatusCode, seconds: int, nanos: int) -> bytes:
    info = error_details_pb2.RetryInfo(
        retry_delay=duration_pb2.Duration(seconds=seconds, nanos=nanos)
    )
    status = status_pb2.Status(code=code.value[0], message="busy")
    status.details.add().Pack(info)
    return bytes(status.SerializeToString())


# -- OTLP/gRPC -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("signal", "method"),
    [
        ("traces", "/opentelemetry.proto.collector.trace.v1.TraceService/Export"),
        ("logs", "/opentelemetry.proto.collector.logs.v1.LogsService/Export"),
        ("metrics", "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"),
    ],
)
def test_grpc_sends_raw_bytes_to_the_export_method(
    grpc_collector: GrpcCollector, signal: str, method: str
) -> None:
    """The payload bytes reach the signal's Export method unchanged."""
    sender = _grpc(grpc_collector.endpoint, signal)
    result = sender.send(PAYLOAD, _later())
    sender.close()
    assert result == SendResult(True, False, "")
    [call] = grpc_collector.calls
    assert (call.method, call.body) == (method, PAYLOAD)
    assert call.metadata["user-agent"].startswith(USER_AGENT_PREFIX)


def test_grpc_metadata_from_headers(grpc_collector: GrpcCollector) -> None:
    """Headers become metadata with lowercase keys and decoded values; -bin keys carry bytes."""
    sender = _grpc(
        grpc_collector.endpoint,
        OTEL_EXPORTER_OTLP_HEADERS="X-Team=ml%20platform,Authorization=Bearer%20t0k,x-raw-bin=raw",
    )
    assert sender.send(PAYLOAD, _later()).ok
    sender.close()
    metadata = grpc_collector.calls[0].metadata
    assert metadata["x-team"] == "ml platform"
    assert metadata["authorization"] == "Bearer t0k"
    assert metadata["x-raw-bin"] == b"raw"


def test_grpc_user_agent_header_is_prepended(grpc_collector: GrpcCollector) -> None:
    """A configured user-agent leads the exporter's own on the gRPC channel."""
    sender = _grpc(grpc_collector.endpoint, OTEL_EXPORTER_OTLP_HEADERS="user-agent=MyDistro/2.0")
    assert sender.send(PAYLOAD, _later()).ok
    sender.close()
    agent = grpc_collector.calls[0].metadata["user-agent"]
    assert agent.startswith(f"MyDistro/2.0 {USER_AGENT_PREFIX}")


def test_grpc_gzip_compression(
    grpc_collector: GrpcCollector, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With compression gzip each call asks grpc for Gzip and the payload still arrives intact."""
    sender = _grpc(grpc_collector.endpoint, OTEL_EXPORTER_OTLP_COMPRESSION="gzip")
    seen: list[Any] = []
    real_call = sender._call

    def spy(payload: bytes, **kwargs: Any) -> Any:
        seen.append(kwargs["compression"])
        return real_call(payload, **kwargs)

    monkeypatch.setattr(sender, "_call", spy)
    assert sender.send(PAYLOAD * 50, _later()).ok
    sender.close()
    assert seen == [grpc.Compression.Gzip]
    assert grpc_collector.calls[0].body == PAYLOAD * 50


GRPC_CODES = [
    ("CANCELLED", True),
    ("UNKNOWN", False),
    ("INVALID_ARGUMENT", False),
    ("DEADLINE_EXCEEDED", True),
    ("NOT_FOUND", False),
    ("ALREADY_EXISTS", False),
    ("PERMISSION_DENIED", False),
    ("UNAUTHENTICATED", False),
    ("RESOURCE_EXHAUSTED", False),
    ("FAILED_PRECONDITION", False),
    ("ABORTED", True),
    ("OUT_OF_RANGE", True),
    ("UNIMPLEMENTED", False),
    ("INTERNAL", False),
    ("UNAVAILABLE", True),
    ("DATA_LOSS", True),
]


@pytest.mark.parametrize(("code", "retryable"), GRPC_CODES)
def test_grpc_status_mapping(grpc_collector: GrpcCollector, code: str, retryable: bool) -> None:
    """Each gRPC status code is retryable or not exactly as the OTLP spec's table says."""
    grpc_collector.answers.append(_abort(grpc.StatusCode[code], "nope"))
    sender = _grpc(grpc_collector.endpoint)
    result = sender.send(PAYLOAD, _later())
    sender.close()
    assert result == SendResult(
        False, retryable, f"gRPC {code} from 127.0.0.1:{grpc_collector.port}: nope"
    )


def test_grpc_resource_exhausted_with_retry_info_is_retryable(
    grpc_collector: GrpcCollector,
) -> None:
    """RESOURCE_EXHAUSTED with a RetryInfo is retryable after the delay it gives."""
    details = _retry_info_status(grpc.StatusCode.RESOURCE_EXHAUSTED, 2, 500_000_000)
    grpc_collector.answers.append(_abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "busy", details))
    sender = _grpc(grpc_collector.endpoint)
    result = sender.send(PAYLOAD, _later())
    sender.close()
    assert (result.ok, result.retryable, result.retry_after_s) == (False, True, 2.5)


def test_grpc_unavailable_with_retry_info_gives_the_delay(grpc_collector: GrpcCollector) -> None:
    """UNAVAILABLE with a RetryInfo of 30 s (the spec's throttling example) sets retry_after_s."""
    details = _retry_info_status(grpc.StatusCode.UNAVAILABLE, 30, 0)
    grpc_collector.answers.append(_abort(grpc.StatusCode.UNAVAILABLE, "slow down", details))
    sender = _grpc(grpc_collector.endpoint)
    result = sender.send(PAYLOAD, _later())
    sender.close()
    assert (result.retryable, result.retry_after_s) == (True, 30.0)


def test_grpc_connection_refused_is_retryable(refusing_port: int) -> None:
    """Nobody listening: UNAVAILABLE, retryable, with the address in the detail."""
    sender = _grpc(f"http://127.0.0.1:{refusing_port}")
    result = sender.send(PAYLOAD, _later())
    sender.close()
    assert not result.ok and result.retryable
    assert result.detail.startswith(f"gRPC UNAVAILABLE from 127.0.0.1:{refusing_port}")


def test_grpc_timeout_is_deadline_exceeded(grpc_collector: GrpcCollector) -> None:
    """A collector slower than the timeout: DEADLINE_EXCEEDED, retryable."""
    release = threading.Event()

    def stall(body: bytes, context: Any) -> bytes:
        release.wait(10)
        return b""

    grpc_collector.answers.append(stall)
    sender = _grpc(grpc_collector.endpoint, OTEL_EXPORTER_OTLP_TIMEOUT="200")
    started = time.monotonic()
    result = sender.send(PAYLOAD, _later())
    release.set()
    sender.close()
    assert time.monotonic() - started < 5
    assert not result.ok and result.retryable
    assert result.detail.startswith("gRPC DEADLINE_EXCEEDED")


def test_grpc_past_deadline_sends_nothing(grpc_collector: GrpcCollector) -> None:
    """A deadline already passed returns at once, retryable, without a call."""
    sender = _grpc(grpc_collector.endpoint)
    result = sender.send(PAYLOAD, time.monotonic() - 1)
    sender.close()
    assert not result.ok and result.retryable
    assert grpc_collector.calls == []


def test_grpc_send_after_close_does_not_raise(grpc_collector: GrpcCollector) -> None:
    """Sending on a closed transport returns a failure instead of raising."""
    sender = _grpc(grpc_collector.endpoint)
    sender.close()
    result = sender.send(PAYLOAD, _later())
    assert not result.ok and not result.retryable and "closed channel" in result.detail


def test_grpc_request_over_the_limit_is_not_sent(
    grpc_collector: GrpcCollector, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request over the size limit is refused as final and never reaches the collector."""
    monkeypatch.setattr(transport, "MAX_REQUEST_BYTES", 10)
    sender = _grpc(grpc_collector.endpoint)
    result = sender.send(b"x" * 11, _later())
    sender.close()
    assert (result.ok, result.retryable) == (False, False)
    assert grpc_collector.calls == []


def test_grpc_real_protobuf_request_is_decoded_by_the_server(grpc_collector: GrpcCollector) -> None:
    """Bytes from ExportTraceServiceRequest.SerializeToString() decode on the server side."""
    request = trace_service_pb2.ExportTraceServiceRequest(
        resource_spans=[
            trace_pb2.ResourceSpans(
                resource=resource_pb2.Resource(
                    attributes=[
                        common_pb2.KeyValue(
                            key="service.name", value=common_pb2.AnyValue(string_value="flow")
                        )
                    ]
                ),
                scope_spans=[
                    trace_pb2.ScopeSpans(
                        spans=[
                            trace_pb2.Span(
                                trace_id=bytes(range(16)),
                                span_id=bytes(range(8)),
                                name="start",
                                start_time_unix_nano=1,
                                end_time_unix_nano=2,
                            )
                        ]
                    )
                ],
            )
        ]
    )
    decoded: list[Any] = []

    def answer(body: bytes, context: Any) -> bytes:
        decoded.append(trace_service_pb2.ExportTraceServiceRequest.FromString(body))
        return bytes(
            trace_service_pb2.ExportTraceServiceResponse(
                partial_success=trace_service_pb2.ExportTracePartialSuccess(
                    rejected_spans=0, error_message="span names should be short"
                )
            ).SerializeToString()
        )

    grpc_collector.answers.append(answer)
    sender = _grpc(grpc_collector.endpoint, "traces")
    result = sender.send(request.SerializeToString(), _later())
    sender.close()
    assert decoded == [request]
    assert decoded[0].resource_spans[0].scope_spans[0].spans[0].name == "start"
    assert result == SendResult(
        True,
        False,
        f"127.0.0.1:{grpc_collector.port} accepted the request with a warning: "
        "span names should be short",
    )


def test_grpc_tls_with_the_configured_ca(certs: Certs) -> None:
    """An https gRPC endpoint uses TLS verified against OTEL_EXPORTER_OTLP_CERTIFICATE."""
    key, cert = Path(certs.server_key).read_bytes(), Path(certs.server).read_bytes()
    with serve_grpc(grpc.ssl_server_credentials([(key, cert)])) as collector:
        sender = _grpc(
            f"https://localhost:{collector.port}", OTEL_EXPORTER_OTLP_CERTIFICATE=certs.ca
        )
        assert sender.send(PAYLOAD, _later()).ok
        sender.close()
        plaintext = _grpc(f"http://localhost:{collector.port}")
        refused = plaintext.send(PAYLOAD, _later())
        plaintext.close()
        assert not refused.ok
        assert [c.body for c in collector.calls] == [PAYLOAD]


def test_grpc_mutual_tls_without_scheme(certs: Certs) -> None:
    """host:port without a scheme is TLS; client key and certificate satisfy a mTLS server."""
    key, cert = Path(certs.server_key).read_bytes(), Path(certs.server).read_bytes()
    credentials = grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=Path(certs.ca).read_bytes(), require_client_auth=True
    )
    with serve_grpc(credentials) as collector:
        sender = _grpc(
            f"localhost:{collector.port}",
            OTEL_EXPORTER_OTLP_CERTIFICATE=certs.ca,
            OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE=certs.client,
            OTEL_EXPORTER_OTLP_CLIENT_KEY=certs.client_key,
        )
        assert sender.send(PAYLOAD, _later()).ok
        sender.close()
        assert [c.body for c in collector.calls] == [PAYLOAD]


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        (
            "grpc-timeout=1",
            "OTEL_EXPORTER_OTLP_HEADERS: 'grpc-timeout' is not a valid gRPC metadata key: use "
            "letters, digits, '-', '_' and '.', not starting with grpc-",
        ),
        (
            "x!key=1",
            "OTEL_EXPORTER_OTLP_HEADERS: 'x!key' is not a valid gRPC metadata key: use "
            "letters, digits, '-', '_' and '.', not starting with grpc-",
        ),
        (
            "x-city=Z%C3%BCrich",
            "OTEL_EXPORTER_OTLP_HEADERS: the value of 'x-city' is not printable ASCII, which "
            "gRPC requires: use a key ending in -bin for binary values",
        ),
    ],
)
def test_grpc_metadata_gRPC_cannot_carry_is_a_config_error(headers: str, message: str) -> None:
    """Headers that gRPC would reject fail at make_transport with a fix, not at every send."""
    with pytest.raises(ConfigError) as raised:
        _grpc("http://127.0.0.1:4317", OTEL_EXPORTER_OTLP_HEADERS=headers)
    assert str(raised.value) == message


def test_grpc_without_grpcio_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Asking for grpc without grpcio installed fails with the pip command to run."""
    monkeypatch.setitem(sys.modules, "grpc", None)
    target = _target({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})
    with pytest.raises(ConfigError) as raised:
        make_transport(target)
    assert str(raised.value) == (
        "OTEL_EXPORTER_OTLP_PROTOCOL=grpc needs grpcio: pip install grpcio (or use http/protobuf)"
    )


@pytest.mark.parametrize(
    ("endpoint", "address"),
    [
        ("http://collector:4317", "collector:4317"),
        ("https://collector.example.com", "collector.example.com"),
        ("HTTPS://user:pw@[::1]:4317/ignored", "[::1]:4317"),
        ("collector:4317", "collector:4317"),
        ("unix:///run/otel.sock", "unix:///run/otel.sock"),
    ],
)
def test_grpc_address(endpoint: str, address: str) -> None:
    """An http(s) endpoint becomes grpcio's host:port; any other form is passed as given."""
    assert transport.grpc_address(endpoint) == address


# -- the module itself ---------------------------------------------------------------------------


def test_transports_satisfy_the_protocol(http_collector: HttpCollector) -> None:
    """make_transport returns objects usable as Transport for both protocols."""
    made: list[Transport] = [_http(http_collector), _grpc("http://127.0.0.1:4317")]
    for sender in made:
        sender.close()


def test_modules_import_with_the_standard_library_only() -> None:
    """Importing config and transport loads no grpc, protobuf, OpenTelemetry, gzip or email."""
    code = (
        "import sys\n"
        "import mfotel._internal.otlp.config, mfotel._internal.otlp.transport\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('grpc', 'google', 'opentelemetry', 'gzip', 'metaflow'))\n"
        "print(','.join(bad))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == ""
