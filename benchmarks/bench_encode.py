"""The stdlib OTLP encoder against the generated protobuf classes, on 10,000 log records.

Both sides start from the same model objects (what the agent holds) and end with the bytes of
one ExportLogsServiceRequest: ours calls ``encode_logs``; protobuf builds the messages with
the generated classes (as an SDK exporter does) and serializes them. The records look like a
task's log lines: a text body (every fifth a JSON map), severity, trace context and the task's
identity attributes. Prints the best of ROUNDS timings for each and the ratio ours / protobuf
(below 1 means ours is faster).

    python benchmarks/bench_encode.py [ROUNDS]
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

from google.protobuf.internal import api_implementation
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.resource.v1 import resource_pb2

from mfotel._internal.model import SEVERITY_INFO, AttrValue, LogRecord, ResourceLogs, Scope
from mfotel._internal.otlp.encode import encode_logs

RECORDS = 10_000


def make_batches() -> list[ResourceLogs]:
    resource: dict[str, AttrValue] = {
        "service.name": "metaflow",
        "telemetry.sdk.name": "mfotel",
        "metaflow.flow.name": "WideFlow",
        "metaflow.run.id": "1712345678901234",
        "metaflow.tags": ["team:ml", "env:dev"],
    }
    records = []
    for i in range(RECORDS):
        body: AttrValue = f"epoch {i // 100} step {i}: loss=0.{i:04d} lr=3e-4 throughput=812.5/s"
        if i % 5 == 0:
            body = {"level": "info", "msg": "checkpoint saved", "step": i, "loss": 0.25}
        records.append(
            LogRecord(
                time_ns=1_712_345_678_000_000_000 + i * 1000,
                observed_ns=1_712_345_678_000_000_500 + i * 1000,
                body=body,
                severity_number=SEVERITY_INFO,
                severity_text="INFO",
                attributes={
                    "metaflow.step.name": "train",
                    "metaflow.task.id": "17",
                    "metaflow.retry_count": 0,
                    "metaflow.pathspec": "WideFlow/1712345678901234/train/17",
                    "log.iostream": "stdout",
                    "log.record.uid": f"{i:016x}",
                    "metaflow.log.source": "task",
                },
                trace_id=bytes(range(16)),
                span_id=bytes(range(8)),
                flags=1,
            )
        )
    return [ResourceLogs(resource, Scope("mfotel", "0.1.0"), records)]


def _any(value: Any) -> Any:
    if isinstance(value, str):
        return common_pb2.AnyValue(string_value=value)
    if isinstance(value, bool):
        return common_pb2.AnyValue(bool_value=value)
    if isinstance(value, int):
        return common_pb2.AnyValue(int_value=value)
    if isinstance(value, float):
        return common_pb2.AnyValue(double_value=value)
    if isinstance(value, bytes):
        return common_pb2.AnyValue(bytes_value=value)
    if isinstance(value, Mapping):
        return common_pb2.AnyValue(kvlist_value=common_pb2.KeyValueList(values=_kvs(value)))
    if isinstance(value, (list, tuple)):
        return common_pb2.AnyValue(array_value=common_pb2.ArrayValue(values=map(_any, value)))
    return common_pb2.AnyValue()


def _kvs(attributes: Mapping[str, Any]) -> list[Any]:
    return [common_pb2.KeyValue(key=k, value=_any(v)) for k, v in attributes.items()]


def encode_with_protobuf(batches: list[ResourceLogs]) -> bytes:
    request = ExportLogsServiceRequest()
    for batch in batches:
        records = [
            logs_pb2.LogRecord(
                time_unix_nano=r.time_ns,
                observed_time_unix_nano=r.observed_ns,
                severity_number=r.severity_number,  # type: ignore[arg-type]
                severity_text=r.severity_text,
                body=_any(r.body),
                attributes=_kvs(r.attributes),
                flags=r.flags,
                trace_id=r.trace_id,
                span_id=r.span_id,
                event_name=r.event_name,
            )
            for r in batch.records
        ]
        request.resource_logs.append(
            logs_pb2.ResourceLogs(
                resource=resource_pb2.Resource(attributes=_kvs(batch.resource)),
                scope_logs=[
                    logs_pb2.ScopeLogs(
                        scope=common_pb2.InstrumentationScope(
                            name=batch.scope.name, version=batch.scope.version
                        ),
                        log_records=records,
                    )
                ],
            )
        )
    data: bytes = request.SerializeToString()
    return data


def best_of(rounds: int, fn: Callable[[list[ResourceLogs]], bytes], arg: Any) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        fn(arg)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 7
    batches = make_batches()
    ours_bytes = encode_logs(batches)
    parsed = ExportLogsServiceRequest()
    parsed.ParseFromString(ours_bytes)
    reference = ExportLogsServiceRequest()
    reference.ParseFromString(encode_with_protobuf(batches))
    assert parsed == reference, "the two encodings disagree"

    ours = best_of(rounds, encode_logs, batches)
    theirs = best_of(rounds, encode_with_protobuf, batches)
    per = 1e6 / RECORDS
    print(f"python {sys.version.split()[0]}, protobuf backend {api_implementation.Type()}")
    print(f"{RECORDS} log records, {len(ours_bytes)} bytes, best of {rounds}")
    print(f"  mfotel encode_logs : {ours * 1e3:8.2f} ms  ({ours * per:.2f} us/record)")
    print(f"  protobuf classes   : {theirs * 1e3:8.2f} ms  ({theirs * per:.2f} us/record)")
    print(f"  ratio ours/protobuf: {ours / theirs:.2f}")


if __name__ == "__main__":
    main()
