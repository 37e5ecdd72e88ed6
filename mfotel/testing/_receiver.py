"""A real OTLP receiver (HTTP and gRPC) that decodes with the official protobuf classes."""

from __future__ import annotations

import gzip
import threading
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from mfotel.testing._wait import wait_until

_REQUESTS: dict[str, tuple[Any, Any]] = {
    "traces": (
        trace_service_pb2.ExportTraceServiceRequest,
        trace_service_pb2.ExportTraceServiceResponse,
    ),
    "logs": (logs_service_pb2.ExportLogsServiceRequest, logs_service_pb2.ExportLogsServiceResponse),
    "metrics": (
        metrics_service_pb2.ExportMetricsServiceRequest,
        metrics_service_pb2.ExportMetricsServiceResponse,
    ),
}
_GRPC_SERVICES = {
    "opentelemetry.proto.collector.trace.v1.TraceService": "traces",
    "opentelemetry.proto.collector.logs.v1.LogsService": "logs",
    "opentelemetry.proto.collector.metrics.v1.MetricsService": "metrics",
}


def _value(any_value: Any) -> Any:
    kind = any_value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [_value(v) for v in any_value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in any_value.kvlist_value.values}
    return getattr(any_value, kind)


def _attrs(key_values: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in key_values}


class _Identity:
    resource: dict[str, Any]
    attributes: dict[str, Any]

    @property
    def identity(self) -> dict[str, Any]:
        """Resource attributes merged with the record's own (the record's win)."""
        merged = dict(self.resource)
        merged.update(self.attributes)
        return merged


@dataclass(frozen=True)
class ReceivedEvent:
    name: str
    time_ns: int
    attributes: dict[str, Any]


@dataclass(frozen=True)
class ReceivedLink:
    trace_id: str
    span_id: str
    attributes: dict[str, Any]


@dataclass(frozen=True)
class ReceivedSpan(_Identity):
    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    kind: int
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    resource: dict[str, Any]
    scope: str
    events: list[ReceivedEvent]
    links: list[ReceivedLink]
    status_code: int
    status_message: str
    flags: int


@dataclass(frozen=True)
class ReceivedLog(_Identity):
    time_ns: int
    observed_ns: int
    severity_number: int
    severity_text: str
    body: Any
    attributes: dict[str, Any]
    resource: dict[str, Any]
    scope: str
    trace_id: str
    span_id: str
    event_name: str
    received_ns: int = 0  # when this receiver got it (wall clock), for latency checks


@dataclass(frozen=True)
class ReceivedPoint(_Identity):
    name: str
    unit: str
    kind: str
    monotonic: bool | None
    temporality: int | None
    attributes: dict[str, Any]
    resource: dict[str, Any]
    time_ns: int
    start_ns: int
    value: float | int | None = None
    count: int | None = None
    sum: float | None = None
    bucket_counts: list[int] = field(default_factory=list)
    explicit_bounds: list[float] = field(default_factory=list)
    min: float | None = None
    max: float | None = None


@dataclass(frozen=True)
class ReceivedRequest:
    transport: str
    signal: str
    headers: dict[str, str]
    size: int


class OTLPReceiver:
    """Receives OTLP over HTTP (``/v1/traces|logs|metrics``) and gRPC on 127.0.0.1.

    Use as a context manager; ``spans()``, ``logs()`` and ``points()`` return what arrived,
    decoded; ``wait_for(condition, timeout)`` waits for a condition without polling sleeps.
    ``fail_next(n)`` answers the next n requests with an error; ``set_delay(s)`` slows it.
    """

    def __init__(
        self,
        grpc: bool = True,
        http: bool = True,
        paths: Mapping[str, str] | None = None,
        authorize: Callable[[str, str, dict[str, str], bytes], str | None] | None = None,
    ) -> None:
        self._want_grpc = grpc
        self._want_http = http
        # URL path -> signal: a vendor's OTLP intake may use its own paths.
        self.paths = dict(paths or _DEFAULT_PATHS)
        # authorize(method, path, headers, body) -> None to accept, or why it is refused (403).
        self.authorize = authorize
        self.refused: list[str] = []
        self._lock = threading.Condition()
        self._spans: list[ReceivedSpan] = []
        self._logs: list[ReceivedLog] = []
        self._points: list[ReceivedPoint] = []
        self.requests: list[ReceivedRequest] = []
        self._fail = 0
        self._fail_status = 503
        self._delay = 0.0
        self._http: ThreadingHTTPServer | None = None
        self._grpc: Any = None
        self.http_endpoint = ""
        self.grpc_endpoint = ""

    # -- lifecycle --------------------------------------------------------------------------

    def __enter__(self) -> OTLPReceiver:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        if self._want_http and self._http is None:
            self._http = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
            self._http.daemon_threads = True
            threading.Thread(target=self._http.serve_forever, daemon=True).start()
            self.http_endpoint = f"http://127.0.0.1:{self._http.server_address[1]}"
        if self._want_grpc and self._grpc is None:
            self._start_grpc()

    def stop(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        if self._grpc is not None:
            self._grpc.stop(0)
            self._grpc = None

    def _start_grpc(self) -> None:
        try:
            import grpc
        except ImportError:
            raise RuntimeError("OTLPReceiver(grpc=True) needs grpcio: pip install grpcio") from None
        from concurrent import futures

        receiver = self

        class _Handler(grpc.GenericRpcHandler):  # type: ignore[misc]
            def service(self, details: Any) -> Any:
                service, _, method = details.method.strip("/").partition("/")
                signal = _GRPC_SERVICES.get(service)
                if signal is None or method != "Export":
                    return None

                def export(body: bytes, context: Any) -> bytes:
                    headers = {k.lower(): v for k, v in context.invocation_metadata()}
                    status = receiver._before(headers)
                    if status:
                        context.abort(grpc.StatusCode.UNAVAILABLE, "failing on request")
                    receiver._ingest("grpc", signal, body, headers)
                    return b""

                return grpc.unary_unary_rpc_method_handler(export)

        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        server.add_generic_rpc_handlers((_Handler(),))
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        self._grpc = server
        self.grpc_endpoint = f"http://127.0.0.1:{port}"

    # -- reading ------------------------------------------------------------------------------

    def spans(self) -> list[ReceivedSpan]:
        with self._lock:
            return list(self._spans)

    def logs(self) -> list[ReceivedLog]:
        with self._lock:
            return list(self._logs)

    def points(self) -> list[ReceivedPoint]:
        with self._lock:
            return list(self._points)

    def clear(self) -> None:
        with self._lock:
            self._spans.clear()
            self._logs.clear()
            self._points.clear()
            self.requests.clear()

    def wait_for(self, condition: Callable[[OTLPReceiver], bool], timeout: float = 10.0) -> bool:
        return wait_until(self._lock, lambda: condition(self), timeout)

    def fail_next(self, count: int, status: int = 503) -> None:
        with self._lock:
            self._fail, self._fail_status = count, status

    def set_delay(self, seconds: float) -> None:
        self._delay = seconds

    # -- ingest -------------------------------------------------------------------------------

    def _before(self, headers: dict[str, str]) -> int:
        if self._delay:
            time.sleep(self._delay)
        with self._lock:
            if self._fail > 0:
                self._fail -= 1
                return self._fail_status
        return 0

    def _ingest(self, transport: str, signal: str, body: bytes, headers: dict[str, str]) -> None:
        request_type = _REQUESTS[signal][0]
        message = request_type()
        message.ParseFromString(body)
        self._store(transport, signal, message, headers, len(body))

    def _store(
        self, transport: str, signal: str, message: Any, headers: dict[str, str], size: int
    ) -> None:
        decoded: list[Any] = []
        if signal == "traces":
            decoded = list(_decode_spans(message))
        elif signal == "logs":
            decoded = list(_decode_logs(message))
        else:
            decoded = list(_decode_points(message))
        with self._lock:
            self.requests.append(ReceivedRequest(transport, signal, headers, size))
            if signal == "traces":
                self._spans.extend(decoded)
            elif signal == "logs":
                self._logs.extend(decoded)
            else:
                self._points.extend(decoded)
            self._lock.notify_all()


def _decode_spans(message: Any) -> Any:
    for resource_spans in message.resource_spans:
        resource = _attrs(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for s in scope_spans.spans:
                yield ReceivedSpan(
                    trace_id=s.trace_id.hex(),
                    span_id=s.span_id.hex(),
                    parent_span_id=s.parent_span_id.hex(),
                    name=s.name,
                    kind=s.kind,
                    start_ns=s.start_time_unix_nano,
                    end_ns=s.end_time_unix_nano,
                    attributes=_attrs(s.attributes),
                    resource=resource,
                    scope=scope_spans.scope.name,
                    events=[
                        ReceivedEvent(e.name, e.time_unix_nano, _attrs(e.attributes))
                        for e in s.events
                    ],
                    links=[
                        ReceivedLink(lk.trace_id.hex(), lk.span_id.hex(), _attrs(lk.attributes))
                        for lk in s.links
                    ],
                    status_code=s.status.code,
                    status_message=s.status.message,
                    flags=s.flags,
                )


def _decode_logs(message: Any) -> Any:
    received = time.time_ns()
    for resource_logs in message.resource_logs:
        resource = _attrs(resource_logs.resource.attributes)
        for scope_logs in resource_logs.scope_logs:
            for r in scope_logs.log_records:
                yield ReceivedLog(
                    time_ns=r.time_unix_nano,
                    observed_ns=r.observed_time_unix_nano,
                    severity_number=r.severity_number,
                    severity_text=r.severity_text,
                    body=_value(r.body),
                    attributes=_attrs(r.attributes),
                    resource=resource,
                    scope=scope_logs.scope.name,
                    trace_id=r.trace_id.hex(),
                    span_id=r.span_id.hex(),
                    event_name=r.event_name,
                    received_ns=received,
                )


def _decode_points(message: Any) -> Any:
    for resource_metrics in message.resource_metrics:
        resource = _attrs(resource_metrics.resource.attributes)
        for scope_metrics in resource_metrics.scope_metrics:
            for m in scope_metrics.metrics:
                kind = m.WhichOneof("data")
                if kind in ("sum", "gauge"):
                    data = getattr(m, kind)
                    for p in data.data_points:
                        yield ReceivedPoint(
                            name=m.name,
                            unit=m.unit,
                            kind=kind,
                            monotonic=data.is_monotonic if kind == "sum" else None,
                            temporality=data.aggregation_temporality if kind == "sum" else None,
                            attributes=_attrs(p.attributes),
                            resource=resource,
                            time_ns=p.time_unix_nano,
                            start_ns=p.start_time_unix_nano,
                            value=getattr(p, p.WhichOneof("value") or "as_int"),
                        )
                elif kind == "histogram":
                    for p in m.histogram.data_points:
                        yield ReceivedPoint(
                            name=m.name,
                            unit=m.unit,
                            kind=kind,
                            monotonic=None,
                            temporality=m.histogram.aggregation_temporality,
                            attributes=_attrs(p.attributes),
                            resource=resource,
                            time_ns=p.time_unix_nano,
                            start_ns=p.start_time_unix_nano,
                            count=p.count,
                            sum=p.sum if p.HasField("sum") else None,
                            bucket_counts=list(p.bucket_counts),
                            explicit_bounds=list(p.explicit_bounds),
                            min=p.min if p.HasField("min") else None,
                            max=p.max if p.HasField("max") else None,
                        )


_DEFAULT_PATHS = {"/v1/traces": "traces", "/v1/logs": "logs", "/v1/metrics": "metrics"}


def _handler(receiver: OTLPReceiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return None

        def do_POST(self) -> None:
            signal = receiver.paths.get(self.path.split("?")[0])
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            if signal is None:
                self._reply(404, b"unknown path", "text/plain")
                return
            headers = {k.lower(): v for k, v in self.headers.items()}
            if receiver.authorize is not None:
                refusal = receiver.authorize("POST", self.path, headers, body)
                if refusal is not None:
                    with receiver._lock:
                        receiver.refused.append(refusal)
                    self._reply(403, refusal.encode(), "text/plain")
                    return
            status = receiver._before(headers)
            if status:
                self.send_response(status)
                self.send_header("Retry-After", "0")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            encoding = headers.get("content-encoding", "")
            request_type, response_type = _REQUESTS[signal]
            try:
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                message = request_type()
                if headers.get("content-type", "").startswith("application/json"):
                    json_format.Parse(body.decode("utf-8"), message)
                    reply_type = "application/json"
                else:
                    message.ParseFromString(body)
                    reply_type = "application/x-protobuf"
            except Exception as exc:
                self._reply(400, f"bad request: {exc}".encode(), "text/plain")
                return
            receiver._store("http", signal, message, headers, len(body))
            if reply_type == "application/json":
                self._reply(200, b"{}", reply_type)
            else:
                self._reply(200, response_type().SerializeToString(), reply_type)

        def _reply(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler
