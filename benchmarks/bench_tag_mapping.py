"""What the Datadog tag mapping costs the collector, against the same config without it.

Renders ``mfotel render-config --target datadog --set metric_tag_keys=team`` twice: as is, and
with every statement of the tag mapping taken out (the baseline: the same identity statements,
exporter and pipelines). Each runs in the kit's real collector, sending to a local Datadog
intake, and receives the same OTLP/HTTP log requests: 1 resource carrying 12 Metaflow tags and
512 records each, like a busy task's batches. The figure is the collector's CPU time (user +
system, from /proc) per 100,000 records, and the ratio mapping / baseline. Rounds alternate
the two configs; every round must deliver every record, or the script fails.

    python benchmarks/bench_tag_mapping.py [REQUESTS] [ROUNDS]
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from mfotel.collector import find_binary
from mfotel.testing import CollectorProcess, DatadogIntake

API_KEY = "0123456789abcdef0123456789abcdef"
RECORDS_PER_REQUEST = 512
SETTINGS = ["metric_tag_keys=team"]  # the mapping's full statements, metrics' included
MAPPING_MARKS = ("mfotel.dd.", "mfotel[.]dd", "ddtags", "metaflow.tags")  # its statements
TAGS = [
    "team:ml",
    "project:recsys",
    "project_branch:prod",
    "user:alice",
    "runtime:dev",
    "python_version:3.11.7",
    "date:2026-12-02",
    "metaflow_version:2.19.39",
    "Nightly Run",
    "env:prod",
    "owner:data-platform@example.com",
    "cost center:R&D <eu>",
]


def _request() -> bytes:
    request = ExportLogsServiceRequest()
    resource_logs = request.resource_logs.add()
    tags = AnyValue()
    for tag in TAGS:
        tags.array_value.values.add().string_value = tag
    for key, value in (
        ("service.name", AnyValue(string_value="metaflow")),
        ("metaflow.flow.name", AnyValue(string_value="BenchFlow")),
        ("metaflow.run.id", AnyValue(string_value="1796000000000001")),
        ("metaflow.tags", tags),
    ):
        resource_logs.resource.attributes.append(KeyValue(key=key, value=value))
    records = resource_logs.scope_logs.add().log_records
    now = time.time_ns()
    for i in range(RECORDS_PER_REQUEST):
        record = records.add()
        record.time_unix_nano = now + i
        record.body.string_value = f"epoch 3 batch {i}: loss 0.{i:04d} lr 0.001"
        record.attributes.append(
            KeyValue(key="metaflow.step.name", value=AnyValue(string_value="train"))
        )
        record.attributes.append(KeyValue(key="metaflow.task.id", value=AnyValue(string_value="7")))
    return request.SerializeToString()


def _without_tag_mapping(config_text: str) -> str:
    """The same config, minus every statement of the tag mapping (and groups left empty)."""
    config = yaml.safe_load(config_text)
    for name, processor in config["processors"].items():
        if not name.startswith("transform/"):
            continue
        for key in ("log_statements", "trace_statements", "metric_statements"):
            groups = []
            for group in processor.get(key, []):
                kept = [
                    s for s in group["statements"] if not any(mark in s for mark in MAPPING_MARKS)
                ]
                if kept:
                    groups.append({**group, "statements": kept})
            processor[key] = groups
    return yaml.safe_dump(config, sort_keys=False)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _one(binary: Path, mapping: bool, body: bytes, requests: int) -> float:
    """Collector CPU seconds to take ``requests`` requests and hand every record on."""
    with (
        DatadogIntake(API_KEY) as dd,
        tempfile.TemporaryDirectory() as folder,
        CollectorProcess(binary, Path(folder)) as col,
    ):
        endpoints = [f"{s}_endpoint={dd.url}" for s in ("metrics", "traces", "logs")]
        text = col.render_for(["datadog"], "dev", [*endpoints, "hostname=bench", *SETTINGS])
        if not mapping:
            col.config_path.write_text(_without_tag_mapping(text))
        col.start(env={"DD_API_KEY": API_KEY})
        proc: Any = col._proc  # the collector's process, for its CPU counters
        before = _cpu_seconds(proc.pid)
        for _ in range(requests):
            urllib.request.urlopen(
                urllib.request.Request(
                    f"{col.http_endpoint}/v1/logs",
                    data=body,
                    headers={"Content-Type": "application/x-protobuf"},
                ),
                timeout=30,
            ).read()
        expected = requests * RECORDS_PER_REQUEST
        if not dd.wait_for(lambda d: len(d.logs) >= expected, 120):
            sys.exit(f"bench: only {len(dd.logs)} of {expected} records arrived")
        spent = _cpu_seconds(proc.pid) - before
        if mapping and "team:ml" not in dd.logs[-1]["ddtags"]:
            sys.exit("bench: the mapped config did not tag the logs")
        col.stop()
    return spent


def main() -> None:
    requests = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    binary = find_binary()
    if binary is None:
        sys.exit("bench: no collector binary: run `mfotel collector build` (needs Go)")
    body = _request()
    records = requests * RECORDS_PER_REQUEST
    per = 100_000 / records
    times: dict[str, list[float]] = {"baseline": [], "mapping": []}
    for index in range(rounds):
        order = [("baseline", False), ("mapping", True)]
        for name, mapping in order if index % 2 == 0 else reversed(order):
            times[name].append(_one(binary, mapping, body, requests))
    base = statistics.median(times["baseline"]) * per
    mapping = statistics.median(times["mapping"]) * per
    paired = statistics.median(m / b for m, b in zip(times["mapping"], times["baseline"]))
    print(f"{records:,} records per run, {len(TAGS)} tags per resource, {rounds} rounds")
    print(f"collector CPU per 100k records: without the tag mapping {base:.3f} s")
    print(f"collector CPU per 100k records: with the tag mapping    {mapping:.3f} s")
    print(f"ratio (medians) {mapping / base:.3f}x, paired median {paired:.3f}x")


if __name__ == "__main__":
    main()
