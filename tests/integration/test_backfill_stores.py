"""Backfill and tail from S3 (moto), GCS (gcp-storage-emulator) and Azure Blob (Azurite).

Metaflow itself runs ProbeFlow with its datastore (s3, gs, azure) in each emulator, so the logs
are laid out and written exactly as Metaflow writes them there; what arrives at the OTLP
receiver is checked against those objects as Metaflow's own mflog parser reads them.
"""

from __future__ import annotations

import calendar
import json
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from metaflow.mflog.mflog import parse as metaflow_parse

from mfotel.testing import OTLPReceiver
from tests.conftest import FlowRun, otlp_env, run_flow
from tests.emulators import Azurite, GCSEmulator, MotoServer
from tests.integration.test_backfill import by_uid, mfotel, to

pytestmark = pytest.mark.flow


@dataclass
class Store:
    datastore: str
    root: str  # as Metaflow's METAFLOW_DATASTORE_SYSROOT_* takes it
    env: dict[str, str]
    objects: Callable[[str], dict[str, bytes]]  # key prefix below root → {key: bytes}


def _s3(moto: MotoServer) -> Store:
    bucket = moto.make_bucket("mf-backfill")
    client = moto.client()

    def objects(prefix: str) -> dict[str, bytes]:
        found = {}
        pages = client.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=f"metaflow/{prefix}"
        )
        for page in pages:
            for item in page.get("Contents", ()):
                body = client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
                found[item["Key"][len("metaflow/") :]] = body
        return found

    root = f"s3://{bucket}/metaflow"
    return Store("s3", root, {**moto.env, "METAFLOW_DATASTORE_SYSROOT_S3": root}, objects)


def _gs(gcs: GCSEmulator) -> Store:
    bucket = gcs.make_bucket("mf-backfill")

    def objects(prefix: str) -> dict[str, bytes]:
        blobs = gcs.client().bucket(bucket).list_blobs(prefix=f"metaflow/{prefix}")
        return {b.name[len("metaflow/") :]: b.download_as_bytes() for b in blobs}

    root = f"gs://{bucket}/metaflow"
    return Store("gs", root, {**gcs.env, "METAFLOW_DATASTORE_SYSROOT_GS": root}, objects)


def _azure(azurite: Azurite) -> Store:
    container = azurite.make_container("mf-backfill")

    def objects(prefix: str) -> dict[str, bytes]:
        client = azurite.service_client().get_container_client(container)
        blobs = client.list_blobs(name_starts_with=f"metaflow/{prefix}")
        return {b.name[len("metaflow/") :]: client.download_blob(b.name).readall() for b in blobs}

    root = f"{container}/metaflow"
    return Store("azure", root, {**azurite.env, "METAFLOW_DATASTORE_SYSROOT_AZURE": root}, objects)


@pytest.fixture(scope="module", params=["s3", "gs", "azure"])
def store(request: pytest.FixtureRequest) -> Store:
    make = {"s3": ("moto_server", _s3), "gs": ("gcs_emulator", _gs), "azure": ("azurite", _azure)}
    fixture, build = make[request.param]
    return build(request.getfixturevalue(fixture))  # type: ignore[operator]


def remote_lines(store: Store, flow: str, run_id: str) -> dict[str, dict[str, Any]]:
    """uid → what Metaflow's parser reads of every persisted line of the run in the store."""
    lines: dict[str, dict[str, Any]] = {}
    for key, body in store.objects(f"{flow}/{run_id}/").items():
        parts = key.split("/")
        if not parts[-1].endswith(("_stdout.log", "_stderr.log")):
            continue
        for raw in body.splitlines():
            parsed = metaflow_parse(raw)
            assert parsed is not None, (key, raw)
            stamp = parsed.utc_tstamp
            lines[parsed.id.decode()] = {
                "pathspec": "/".join(parts[:4]),
                "attempt": int(parts[4].split(".")[0]),
                "time_ns": calendar.timegm(stamp.timetuple()) * 10**9 + stamp.microsecond * 1000,
                "text": parsed.msg.decode("utf-8", "replace"),
            }
    return lines


def _run(store: Store, workdir: Path, **env: str) -> FlowRun:
    run = run_flow(
        "probe_flow.py",
        workdir,
        env={
            **store.env,
            "METAFLOW_DEFAULT_DATASTORE": store.datastore,
            "METAFLOW_DEFAULT_METADATA": "local",
            **env,
        },
    )
    assert run.returncode == 0, run.output
    return run


@pytest.fixture(scope="module")
def untraced_remote(store: Store, tmp_path_factory: pytest.TempPathFactory) -> FlowRun:
    """ProbeFlow, telemetry off, its datastore in the emulator."""
    return _run(store, tmp_path_factory.mktemp(f"remote-{store.datastore}"))


def test_backfill_from_the_object_store(store: Store, untraced_remote: FlowRun) -> None:
    """Every line Metaflow persisted in the store arrives once with its timestamp; twice sends
    nothing more."""
    run = untraced_remote
    expected = remote_lines(store, "ProbeFlow", run.run_id)
    assert len(expected) > 20
    spec = f"ProbeFlow/{run.run_id}"
    with OTLPReceiver(http=True) as rx:
        env = {**store.env, **to(rx)}
        done = mfotel("backfill", spec, "--datastore", store.datastore, cwd=run.workdir, env=env)
        assert done.returncode == 0, done.stderr
        assert rx.wait_for(lambda r: len(r.logs()) >= len(expected))
        again = mfotel("backfill", spec, "--datastore", store.datastore, cwd=run.workdir, env=env)
        assert again.returncode == 0 and "sent 0 line(s)" in again.stdout, again.stdout
        logs = rx.logs()
    assert by_uid(logs) == Counter(dict.fromkeys(expected, 1))
    for log in logs:
        line = expected[str(log.attributes["log.record.uid"])]
        assert log.time_ns == line["time_ns"]
        assert log.identity["metaflow.task.pathspec"] == line["pathspec"]
        assert log.identity["metaflow.task.attempt"] == line["attempt"]
        if isinstance(log.body, str):
            assert log.body == line["text"]
        assert log.identity["metaflow.user"] == os.environ["USER"]  # who ran it


def test_live_run_on_the_store_then_backfill_gives_every_line_once(
    store: Store, tmp_path: Path
) -> None:
    """Live export plus backfill deliver every persisted line exactly once, in the run's trace:
    the backfill adds what only the store has (lines the runtime wrote into remote logs)."""
    with OTLPReceiver(http=True) as live:
        run = _run(store, tmp_path, **otlp_env(live))
        expected = remote_lines(store, "ProbeFlow", run.run_id)
        with OTLPReceiver(http=True) as rx:
            done = mfotel(
                "backfill",
                f"ProbeFlow/{run.run_id}",
                "--datastore",
                store.datastore,
                cwd=run.workdir,
                env={**store.env, **to(rx)},
            )
            assert done.returncode == 0, done.stderr
            late = rx.logs()
        assert late, "the runtime's own lines in remote logs reach only the backfill"
        assert {log.attributes["metaflow.log.source"] for log in late} == {"runtime"}
        together = by_uid(live.logs()) + by_uid(late)
        assert together == Counter(dict.fromkeys(expected, 1))
        (root,) = [s for s in live.spans() if s.name == "RUN ProbeFlow"]
        assert all(log.trace_id == root.trace_id for log in late)


def test_tail_follows_a_task_in_the_store(store: Store, untraced_remote: FlowRun) -> None:
    """`mfotel tail` prints a task's lines from the object store as Metaflow persisted them."""
    run = untraced_remote
    expected = remote_lines(store, "ProbeFlow", run.run_id)
    spec = next(line["pathspec"] for line in expected.values() if "/end/" in line["pathspec"])
    done = mfotel(
        "tail", spec, "--datastore", store.datastore, "--interval", "0.1",
        cwd=run.workdir, env=store.env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    mine = sorted(line["text"] for line in expected.values() if line["pathspec"] == spec)
    assert sorted(done.stdout.splitlines() + done.stderr.splitlines()) == mine


def test_no_credentials_is_one_line(moto_server: MotoServer, tmp_path: Path) -> None:
    """S3 without credentials: one line naming the problem and the fix, exit 2, nothing sent."""
    env = {
        "AWS_ENDPOINT_URL": moto_server.endpoint,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "",
        "AWS_SECRET_ACCESS_KEY": "",
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",
    }
    done = mfotel(
        "backfill", "ProbeFlow/1", "--datastore", "s3", "--datastore-root", "s3://mf-none/x",
        cwd=tmp_path, env=env,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "credentials" in done.stderr.lower()
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_locate_finds_the_logs_in_the_store(store: Store, untraced_remote: FlowRun) -> None:
    """`mfotel logs locate` reads the datastore from the task's metadata and lists its objects."""
    run = untraced_remote
    done = mfotel("logs", "locate", f"ProbeFlow/{run.run_id}", "--json", cwd=run.workdir,
                  env=store.env)  # fmt: skip
    assert done.returncode == 0, done.stderr
    urls = {url for entry in json.loads(done.stdout) for url in entry["datastore"]}
    scheme = {"s3": "s3://", "gs": "gs://", "azure": "azure://"}[store.datastore]
    root = store.root.split("://")[-1]
    keys = {k for k in store.objects(f"ProbeFlow/{run.run_id}/") if k.endswith(".log")}
    assert urls == {f"{scheme}{root}/{key}" for key in keys}
