"""The one seam between the log tailers and where Metaflow keeps its logs.

A store lists the objects under a prefix (with their sizes), reads an object from an offset
in chunks, and stats one object; for the kit's own objects beside Metaflow's (``.mfotel/``:
the spool and ledger containers hand off, see ``mfotel._internal.handoff``) it also writes
and deletes one. Every adapter keys objects by their path below
the datastore root (``Flow/run/step/task/0.task_stdout.log``), so everything above the seam
is the same for the local filesystem, S3, GCS and Azure Blob.

The cloud adapters import their SDK only when they are used, so the kit installs without
them; a missing SDK is one line naming the ``pip install`` that fixes it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

CHUNK = 1 << 20
DATASTORES = ("local", "s3", "gs", "azure")
_EXTRAS = {"s3": "boto3", "gs": "google-cloud-storage", "azure": "azure-storage-blob"}


class StoreError(Exception):
    """The store cannot be used as configured; the message is one line naming the fix."""


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    mtime: float = 0.0  # seconds since the epoch; 0 when the store does not say


class LogStore(Protocol):
    """Where persisted logs live. ``key`` is a path below the datastore root, ``/``-separated."""

    root: str

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Every object whose key starts with ``prefix`` (a folder path ending in ``/``)."""
        ...

    def read(self, key: str, offset: int, end: int | None = None) -> Iterator[bytes]:
        """The object's bytes from ``offset`` (to ``end``, exclusive, when given), in chunks."""
        ...

    def stat(self, key: str) -> int | None:
        """The object's size, or None when it does not exist."""
        ...

    def url(self, key: str) -> str:
        """The object's full address, as a user would paste it (``s3://bucket/…``)."""
        ...

    def write(self, key: str, data: bytes) -> None:
        """Create or replace the object."""
        ...

    def delete(self, key: str) -> None:
        """Remove the object; no error when it is already gone."""
        ...


def missing_extra(datastore: str) -> StoreError:
    return StoreError(
        f"--datastore {datastore} needs the {_EXTRAS[datastore]} package: "
        f'pip install "mfotel[{datastore}]"'
    )


def open_store(datastore: str, root: str, environ: Mapping[str, str] | None = None) -> LogStore:
    """The adapter for ``datastore`` (``local``, ``s3``, ``gs`` or ``azure``) at ``root``."""
    env = os.environ if environ is None else environ
    if datastore == "local":
        return LocalStore(root)
    if datastore == "s3":
        return S3Store(root, env)
    if datastore == "gs":
        return GCSStore(root, env)
    if datastore == "azure":
        return AzureStore(root, env)
    raise StoreError(
        f"--datastore {datastore!r} is not one of {', '.join(DATASTORES)}: pick one of them"
    )


def _split_url(root: str, scheme: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` → (``bucket``, ``some/prefix/``); the scheme is optional."""
    rest = root[len(scheme) + 3 :] if root.startswith(scheme + "://") else root
    bucket, _, prefix = rest.strip("/").partition("/")
    if not bucket:
        raise StoreError(f"--datastore-root {root!r} names no bucket: use {scheme}://BUCKET/PREFIX")
    return bucket, (prefix.strip("/") + "/") if prefix.strip("/") else ""


class LocalStore:
    """A local folder: Metaflow's local datastore root (``.metaflow``)."""

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        if not os.path.isdir(self.root):
            raise StoreError(
                f"--datastore-root {root!r} is not a folder: point it at the local datastore "
                "root (the .metaflow folder the runs wrote)"
            )

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        base = os.path.join(self.root, *prefix.strip("/").split("/")) if prefix else self.root
        for folder, dirs, files in os.walk(base):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            rel = os.path.relpath(folder, self.root).replace(os.sep, "/")
            for name in sorted(files):
                key = name if rel == "." else f"{rel}/{name}"
                try:
                    stat = os.stat(os.path.join(folder, name))
                except OSError:
                    continue
                yield ObjectInfo(key, stat.st_size, stat.st_mtime)

    def read(self, key: str, offset: int, end: int | None = None) -> Iterator[bytes]:
        with open(self._path(key), "rb") as handle:
            handle.seek(offset)
            left = None if end is None else end - offset
            while left is None or left > 0:
                chunk = handle.read(CHUNK if left is None else min(CHUNK, left))
                if not chunk:
                    return
                if left is not None:
                    left -= len(chunk)
                yield chunk

    def stat(self, key: str) -> int | None:
        try:
            return os.path.getsize(self._path(key))
        except OSError:
            return None

    def url(self, key: str) -> str:
        return self._path(key)

    def write(self, key: str, data: bytes) -> None:
        path = self._path(key)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)

    def delete(self, key: str) -> None:
        try:
            os.unlink(self._path(key))
        except FileNotFoundError:
            pass

    def _path(self, key: str) -> str:
        return os.path.join(self.root, *key.split("/"))


class S3Store:
    """S3 (or anything that speaks it): boto3, honouring ``METAFLOW_S3_ENDPOINT_URL`` and the
    standard AWS variables (credentials, region, ``AWS_ENDPOINT_URL``)."""

    def __init__(self, root: str, environ: Mapping[str, str]) -> None:
        try:
            import boto3
            from botocore.config import Config
            from botocore.exceptions import BotoCoreError, ClientError
        except ImportError:
            raise missing_extra("s3") from None
        self.root = root if root.startswith("s3://") else f"s3://{root}"
        self.bucket, self.prefix = _split_url(root, "s3")
        self._errors = (BotoCoreError, ClientError)
        endpoint = environ.get("METAFLOW_S3_ENDPOINT_URL") or environ.get("AWS_ENDPOINT_URL")
        self._client: Any = boto3.session.Session().client(
            "s3",
            endpoint_url=endpoint or None,
            config=Config(retries={"max_attempts": 5, "mode": "standard"}),
        )

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        paginator = self._client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
                for item in page.get("Contents", ()):
                    yield ObjectInfo(
                        item["Key"][len(self.prefix) :],
                        int(item["Size"]),
                        item["LastModified"].timestamp() if "LastModified" in item else 0.0,
                    )
        except self._errors as exc:
            raise _cloud_error("s3", self.root, exc) from None

    def read(self, key: str, offset: int, end: int | None = None) -> Iterator[bytes]:
        span = f"bytes={offset}-" if end is None else f"bytes={offset}-{end - 1}"
        try:
            body = self._client.get_object(Bucket=self.bucket, Key=self.prefix + key, Range=span)[
                "Body"
            ]
            yield from body.iter_chunks(CHUNK)
        except self._errors as exc:
            if _code(exc) == "InvalidRange":  # nothing past offset
                return
            raise _cloud_error("s3", self.url(key), exc) from None

    def stat(self, key: str) -> int | None:
        try:
            head = self._client.head_object(Bucket=self.bucket, Key=self.prefix + key)
        except self._errors as exc:
            if _code(exc) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise _cloud_error("s3", self.url(key), exc) from None
        return int(head["ContentLength"])

    def url(self, key: str) -> str:
        return f"s3://{self.bucket}/{self.prefix}{key}"

    def write(self, key: str, data: bytes) -> None:
        try:
            self._client.put_object(Bucket=self.bucket, Key=self.prefix + key, Body=data)
        except self._errors as exc:
            raise _cloud_error("s3", self.url(key), exc, "write") from None

    def delete(self, key: str) -> None:
        try:
            self._client.delete_object(Bucket=self.bucket, Key=self.prefix + key)
        except self._errors as exc:
            raise _cloud_error("s3", self.url(key), exc, "delete") from None


class GCSStore:
    """Google Cloud Storage: google-cloud-storage, honouring ``STORAGE_EMULATOR_HOST``."""

    def __init__(self, root: str, environ: Mapping[str, str]) -> None:
        try:
            from google.api_core import exceptions as gexc
            from google.cloud import storage
        except ImportError:
            raise missing_extra("gs") from None
        self.root = root if root.startswith("gs://") else f"gs://{root}"
        self.bucket_name, self.prefix = _split_url(root, "gs")
        self._errors: tuple[type[BaseException], ...] = (gexc.GoogleAPIError,)
        self._not_found = gexc.NotFound
        try:
            if environ.get("STORAGE_EMULATOR_HOST"):
                from google.auth.credentials import AnonymousCredentials

                client = storage.Client(
                    project=environ.get("GOOGLE_CLOUD_PROJECT") or "emulator",
                    credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
                )
            else:
                client = storage.Client()
        except Exception as exc:  # google.auth raises its own DefaultCredentialsError
            raise _cloud_error("gs", self.root, exc) from None
        self._bucket: Any = client.bucket(self.bucket_name)

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        try:
            for blob in self._bucket.list_blobs(prefix=self.prefix + prefix):
                updated = blob.updated.timestamp() if blob.updated else 0.0
                yield ObjectInfo(blob.name[len(self.prefix) :], int(blob.size or 0), updated)
        except self._errors as exc:
            raise _cloud_error("gs", self.root, exc) from None

    def read(self, key: str, offset: int, end: int | None = None) -> Iterator[bytes]:
        size = self.stat(key) if end is None else end
        if size is None:
            return
        position = offset
        while position < size:
            stop = min(position + CHUNK, size)
            try:
                data = self._bucket.blob(self.prefix + key).download_as_bytes(
                    start=position, end=stop - 1, checksum=None
                )
            except self._not_found:
                return
            except self._errors as exc:
                raise _cloud_error("gs", self.url(key), exc) from None
            if not data:
                return
            position += len(data)
            yield data

    def stat(self, key: str) -> int | None:
        try:
            blob = self._bucket.get_blob(self.prefix + key)
        except self._errors as exc:
            raise _cloud_error("gs", self.url(key), exc) from None
        return None if blob is None else int(blob.size or 0)

    def url(self, key: str) -> str:
        return f"gs://{self.bucket_name}/{self.prefix}{key}"

    def write(self, key: str, data: bytes) -> None:
        try:
            self._bucket.blob(self.prefix + key).upload_from_string(data)
        except self._errors as exc:
            raise _cloud_error("gs", self.url(key), exc, "write") from None

    def delete(self, key: str) -> None:
        try:
            self._bucket.blob(self.prefix + key).delete()
        except self._not_found:
            return
        except self._errors as exc:
            raise _cloud_error("gs", self.url(key), exc, "delete") from None


class AzureStore:
    """Azure Blob Storage: azure-storage-blob, with Metaflow's Azure settings.

    The root is ``container/prefix`` (Metaflow's ``METAFLOW_DATASTORE_SYSROOT_AZURE``). The
    account comes from ``METAFLOW_AZURE_STORAGE_BLOB_SERVICE_ENDPOINT`` with Azure's default
    credential chain, or from ``AZURE_STORAGE_CONNECTION_STRING``.
    """

    def __init__(self, root: str, environ: Mapping[str, str]) -> None:
        try:
            from azure.core import exceptions as aexc
            from azure.storage.blob import BlobServiceClient
        except ImportError:
            raise missing_extra("azure") from None
        self.root = root
        self.container, self.prefix = _split_url(root, "azure")
        self._errors: tuple[type[BaseException], ...] = (aexc.AzureError,)
        self._not_found = aexc.ResourceNotFoundError
        connection = environ.get("AZURE_STORAGE_CONNECTION_STRING")
        endpoint = environ.get("METAFLOW_AZURE_STORAGE_BLOB_SERVICE_ENDPOINT")
        service: Any
        if connection:
            service = BlobServiceClient.from_connection_string(connection)
        elif endpoint:
            try:
                from azure.identity import DefaultAzureCredential
            except ImportError:
                raise missing_extra("azure") from None
            service = BlobServiceClient(endpoint, credential=DefaultAzureCredential())
        else:
            raise StoreError(
                "--datastore azure needs an account: set "
                "METAFLOW_AZURE_STORAGE_BLOB_SERVICE_ENDPOINT (or AZURE_STORAGE_CONNECTION_STRING)"
            )
        self._container: Any = service.get_container_client(self.container)

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        try:
            for blob in self._container.list_blobs(name_starts_with=self.prefix + prefix):
                modified = blob.last_modified.timestamp() if blob.last_modified else 0.0
                yield ObjectInfo(blob.name[len(self.prefix) :], int(blob.size or 0), modified)
        except self._errors as exc:
            raise _cloud_error("azure", self.root, exc) from None

    def read(self, key: str, offset: int, end: int | None = None) -> Iterator[bytes]:
        length = None if end is None else end - offset
        if length is not None and length <= 0:
            return
        try:
            stream = self._container.download_blob(self.prefix + key, offset=offset, length=length)
            yield from stream.chunks()
        except self._not_found:
            return
        except self._errors as exc:
            if "InvalidRange" in str(exc):
                return
            raise _cloud_error("azure", self.url(key), exc) from None

    def stat(self, key: str) -> int | None:
        try:
            props = self._container.get_blob_client(self.prefix + key).get_blob_properties()
        except self._not_found:
            return None
        except self._errors as exc:
            raise _cloud_error("azure", self.url(key), exc) from None
        return int(props.size)

    def url(self, key: str) -> str:
        return f"azure://{self.container}/{self.prefix}{key}"

    def write(self, key: str, data: bytes) -> None:
        try:
            self._container.upload_blob(self.prefix + key, data, overwrite=True)
        except self._errors as exc:
            raise _cloud_error("azure", self.url(key), exc, "write") from None

    def delete(self, key: str) -> None:
        try:
            self._container.delete_blob(self.prefix + key)
        except self._not_found:
            return
        except self._errors as exc:
            raise _cloud_error("azure", self.url(key), exc, "delete") from None


def _code(exc: BaseException) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


_HINTS = {
    "s3": "check AWS credentials (AWS_PROFILE / AWS_ACCESS_KEY_ID), AWS_REGION and the bucket",
    "gs": "check Google credentials (GOOGLE_APPLICATION_CREDENTIALS) and the bucket",
    "azure": "check the storage account endpoint, its credentials and the container",
}


def _cloud_error(
    datastore: str, where: str, exc: BaseException, action: str = "read"
) -> StoreError:
    text = " ".join(str(exc).split())[:200] or type(exc).__name__
    return StoreError(f"cannot {action} {where}: {text}: {_HINTS[datastore]}")
