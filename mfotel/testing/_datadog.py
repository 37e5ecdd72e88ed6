"""A local stand-in for Datadog's intake, decoding what the collector's datadog exporter sends.

There is no emulator for Datadog, so this receiver implements the intake endpoints the exporter
uses, as the exporter uses them: API key check on every call (``DD-API-KEY``; 403 otherwise),
``GET /api/v1/validate``, logs (``POST /api/v2/logs``, gzip JSON array), metric series
(``POST /api/v2/series``, deflate protobuf ``MetricPayload`` or gzip JSON), distributions
(``POST /api/beta/sketches``, ``SketchPayload``), traces (``POST /api/v0.2/traces``, gzip protobuf
``AgentPayload``), APM stats (``/api/v0.2/stats``) and host metadata (``POST /intake``). Payload
field numbers follow the public .proto files of DataDog/agent-payload and DataDog/datadog-agent.
"""

from __future__ import annotations

import gzip
import json
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from mfotel.testing._wait import wait_until
from mfotel.testing._wire import decode

_RESOURCE = {1: ("type", "string"), 2: ("name", "string")}
_SERIES = {
    1: (
        "series[]",
        {
            1: ("resources[]", _RESOURCE),
            2: ("metric", "string"),
            3: ("tags[]", "string"),
            4: ("points[]", {1: ("value", "double"), 2: ("timestamp", "int")}),
            5: ("type", "int"),
            6: ("unit", "string"),
        },
    ),
}
_SKETCHES = {
    1: (
        "sketches[]",
        {
            1: ("metric", "string"),
            2: ("host", "string"),
            4: ("tags[]", "string"),
            7: (
                "dogsketches[]",
                {
                    1: ("ts", "int"),
                    2: ("cnt", "int"),
                    3: ("min", "double"),
                    4: ("max", "double"),
                    5: ("avg", "double"),
                    6: ("sum", "double"),
                },
            ),
        },
    ),
}
_SPAN = {
    1: ("service", "string"),
    2: ("name", "string"),
    3: ("resource", "string"),
    4: ("trace_id", "uint"),
    5: ("span_id", "uint"),
    6: ("parent_id", "uint"),
    7: ("start", "int"),
    8: ("duration", "int"),
    9: ("error", "int"),
    10: ("meta", ("map", "string", "string")),
    11: ("metrics", ("map", "string", "double")),
    12: ("type", "string"),
}
_TRACES = {
    1: ("host", "string"),
    2: ("env", "string"),
    5: (
        "tracer_payloads[]",
        {
            2: ("language", "string"),
            6: ("chunks[]", {1: ("priority", "int"), 3: ("spans[]", _SPAN)}),
            8: ("env", "string"),
            9: ("hostname", "string"),
            10: ("app_version", "string"),
        },
    ),
}


@dataclass
class DatadogIntake:
    """Datadog's intake on 127.0.0.1; ``url`` goes in the exporter's ``*.endpoint`` settings."""

    api_key: str
    logs: list[dict[str, Any]] = field(default_factory=list)
    series: list[dict[str, Any]] = field(default_factory=list)
    sketches: list[dict[str, Any]] = field(default_factory=list)
    spans: list[dict[str, Any]] = field(default_factory=list)
    stats_payloads: int = 0
    host_metadata: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)  # "METHOD path: why"
    url: str = ""

    def __post_init__(self) -> None:
        self._lock = threading.Condition()
        self._server: ThreadingHTTPServer | None = None

    def __enter__(self) -> DatadogIntake:
        self._server = _Server(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def wait_for(self, condition: Callable[[DatadogIntake], bool], timeout: float = 20.0) -> bool:
        return wait_until(self._lock, lambda: condition(self), timeout)

    # -- what the handler calls ----------------------------------------------------------------

    def _accept(
        self, method: str, path: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, bytes]:
        if headers.get("dd-api-key") != self.api_key and f"api_key={self.api_key}" not in path:
            self._reject(method, path, "missing or wrong DD-API-KEY")
            return 403, b'{"errors":["Forbidden"]}'
        route = path.split("?")[0]
        if method == "GET" and route == "/api/v1/validate":
            return 200, b'{"valid":true}'
        if method != "POST":
            self._reject(method, path, "unknown endpoint")
            return 404, b'{"errors":["Not found"]}'
        data = _inflate(body, headers.get("content-encoding", ""))
        json_body = headers.get("content-type", "").startswith("application/json")
        with self._lock:
            if route == "/api/v2/logs":
                items = json.loads(data or b"[]")
                self.logs.extend(items if isinstance(items, list) else [])
            elif route == "/api/v2/series":
                payload = json.loads(data) if json_body else decode(data, _SERIES)
                self.series.extend(payload.get("series", []))
            elif route == "/api/beta/sketches":
                self.sketches.extend(decode(data, _SKETCHES).get("sketches", []))
            elif route == "/api/v0.2/traces":
                for tracer in decode(data, _TRACES).get("tracer_payloads", []):
                    for chunk in tracer.get("chunks", []):
                        self.spans.extend(chunk.get("spans", []))
            elif route == "/api/v0.2/stats":
                self.stats_payloads += 1
            elif route == "/intake":
                self.host_metadata.append(json.loads(data))
            else:
                self.rejected.append(f"{method} {path}: unknown endpoint")
                return 404, b'{"errors":["Not found"]}'
            self._lock.notify_all()
        return 202, b"{}"

    def _reject(self, method: str, path: str, why: str) -> None:
        with self._lock:
            self.rejected.append(f"{method} {path.split('?')[0]}: {why}")


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        return None  # a client hanging up mid-request (the collector shutting down) is normal


def _inflate(body: bytes, encoding: str) -> bytes:
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "deflate":
        return zlib.decompress(body)
    if encoding:
        raise ValueError(f"unsupported Content-Encoding {encoding}")
    return body


def _handler(intake: DatadogIntake) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return None

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            headers = {k.lower(): v for k, v in self.headers.items()}
            try:
                status, reply = intake._accept(self.command, self.path, body, headers)
            except Exception as exc:  # a payload the real intake would refuse too
                intake._reject(self.command, self.path, f"undecodable: {exc}")
                status, reply = 400, b'{"errors":["Bad Request"]}'
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        do_GET = do_POST = _serve

    return Handler
