"""The benchmarks' OTLP/HTTP log receiver, in a process of its own: it takes each request as a
collector's intake does (read, answer) and, when asked, decodes them with the official
protobuf classes and counts records, distinct ``log.record.uid`` values,
when the last line arrived and the largest lag between a task line's timestamp and its
arrival (Metaflow's runtime writes its own lines, such as "Task is starting.", only to the
persisted log, which the agent reads when the attempt ends).
``GET /`` answers those; ``GET /reset`` answers them and starts over."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import urllib.request

RECEIVER = textwrap.dedent(
    """
    import threading, time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from opentelemetry.proto.collector.logs.v1 import logs_service_pb2 as pb
    lock = threading.Lock()
    state = {"records": 0, "uids": set(), "last": 0.0, "lag": 0.0, "raw": []}
    def account():
        # Decoded when asked, not as requests come: the run being measured is not charged
        # with this script's bookkeeping, only with what any collector's intake does.
        raw, state["raw"] = state["raw"], []
        for now, body in raw:
            uids, lag = [], 0.0
            req = pb.ExportLogsServiceRequest.FromString(body)
            for rl in req.resource_logs:
                for sl in rl.scope_logs:
                    for rec in sl.log_records:
                        task = False
                        for kv in rec.attributes:
                            if kv.key == "log.record.uid":
                                uids.append(kv.value.string_value)
                            elif kv.key == "metaflow.log.source":
                                task = kv.value.string_value == "task"
                        if task:  # the runtime's own lines go at the attempt's end
                            lag = max(lag, now - rec.time_unix_nano / 1e9)
            state["records"] += len(uids)
            state["uids"].update(uids)
            state["lag"] = max(state["lag"], lag)
            if uids:
                state["last"] = max(state["last"], now)
    class H(BaseHTTPRequestHandler):
        def log_message(self, *a): pass
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            now = time.time()
            if self.path.endswith("/v1/logs"):
                with lock:
                    state["raw"].append((now, body))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()
        def do_GET(self):
            with lock:
                account()
                counts = (state["records"], len(state["uids"]), state["last"], state["lag"])
                out = ("%d %d %.6f %.6f" % counts).encode()
                if self.path == "/reset":
                    state.update(records=0, uids=set(), last=0.0, lag=0.0)
            self.send_response(200)
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)
    server = ThreadingHTTPServer(("127.0.0.1", 0), H)
    print(server.server_address[1], flush=True)
    server.serve_forever()
    """
)


def start() -> tuple[subprocess.Popen[str], int]:
    """The receiver's process and the port it listens on (127.0.0.1)."""
    process = subprocess.Popen([sys.executable, "-c", RECEIVER], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    return process, int(process.stdout.readline())


def counts(port: int, reset: bool = False) -> tuple[int, int, float, float]:
    """Records, distinct line ids, when the last arrived, and the largest arrival lag."""
    path = "/reset" if reset else "/"
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
        records, uids, last, lag = response.read().decode().split()
    return int(records), int(uids), float(last), float(lag)
