"""The object-store emulator fixtures serve real round trips, ranged reads and prefix listings."""

from __future__ import annotations

import uuid

from tests.emulators import Azurite, GCSEmulator, MotoServer

PAYLOAD = b"0123456789abcdef"


def _name(kind: str) -> str:
    return f"{kind}-{uuid.uuid4().hex[:12]}"


def test_moto_s3_round_trip(moto_server: MotoServer) -> None:
    """moto's S3 stores an object, lists it by prefix, and serves a byte range of it."""
    bucket = moto_server.make_bucket(_name("bkt"))
    s3 = moto_server.client()
    s3.put_object(Bucket=bucket, Key="run/1/a.log", Body=PAYLOAD)
    s3.put_object(Bucket=bucket, Key="other/b.log", Body=b"x")

    listed = s3.list_objects_v2(Bucket=bucket, Prefix="run/")
    assert [o["Key"] for o in listed["Contents"]] == ["run/1/a.log"]
    assert s3.get_object(Bucket=bucket, Key="run/1/a.log")["Body"].read() == PAYLOAD
    ranged = s3.get_object(Bucket=bucket, Key="run/1/a.log", Range="bytes=4-7")
    assert ranged["Body"].read() == b"4567"
    assert s3.head_object(Bucket=bucket, Key="run/1/a.log")["ContentLength"] == len(PAYLOAD)
    assert moto_server.env["AWS_ENDPOINT_URL"] == moto_server.endpoint


def test_gcs_emulator_round_trip(gcs_emulator: GCSEmulator) -> None:
    """The GCS emulator stores a blob, lists it by prefix, and serves a byte range and its size."""
    bucket = gcs_emulator.client().bucket(gcs_emulator.make_bucket(_name("bkt")))
    bucket.blob("run/1/a.log").upload_from_string(PAYLOAD)
    bucket.blob("other/b.log").upload_from_string(b"x")

    client = gcs_emulator.client()
    assert [b.name for b in client.list_blobs(bucket.name, prefix="run/")] == ["run/1/a.log"]
    blob = client.bucket(bucket.name).get_blob("run/1/a.log")
    assert blob is not None
    assert blob.size == len(PAYLOAD)
    assert blob.download_as_bytes() == PAYLOAD
    assert blob.download_as_bytes(start=4, end=7) == b"4567"  # end is inclusive
    assert gcs_emulator.env["STORAGE_EMULATOR_HOST"] == gcs_emulator.endpoint


def test_azurite_round_trip(azurite: Azurite) -> None:
    """Azurite stores a blob, lists it by prefix, and serves a byte range and its size."""
    name = azurite.make_container(_name("ctr"))
    container = azurite.service_client().get_container_client(name)
    container.upload_blob("run/1/a.log", PAYLOAD)
    container.upload_blob("other/b.log", b"x")

    listed = [b.name for b in container.list_blobs(name_starts_with="run/")]
    assert listed == ["run/1/a.log"]
    assert container.download_blob("run/1/a.log").readall() == PAYLOAD
    assert container.download_blob("run/1/a.log", offset=4, length=4).readall() == b"4567"
    props = container.get_blob_client("run/1/a.log").get_blob_properties()
    assert props.size == len(PAYLOAD)
    assert azurite.env["METAFLOW_AZURE_STORAGE_BLOB_SERVICE_ENDPOINT"] == azurite.endpoint
