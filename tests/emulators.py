"""Real object-store emulators on loopback for tests: moto (S3), gcp-storage-emulator, Azurite.

Each ``start_*`` function starts one server as a subprocess on a free 127.0.0.1 port, copies
its output line by line to a log file, and returns once the server has said it is listening and
answered one request. On failure it raises ``EmulatorError`` with the last lines of that log.
``.env`` on each handle is what a subprocess (boto3, google-cloud-storage, azure-storage-blob,
and Metaflow with ``--datastore=s3|gs|azure``) needs to use that emulator. The clients are
imported lazily, so importing this module needs none of them.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from mfotel.testing import free_port
from mfotel.testing._wait import wait_until

START_TIMEOUT = 30.0

# Azurite: 3.36+ need Node >= 21/22; 3.35.0 runs on the Node 18/20 that Debian ships.
AZURITE_VERSION = "3.35.0"
AZURITE_PREFIX = Path.home() / ".cache" / "mfotel" / "azurite"
AZURITE_BIN = AZURITE_PREFIX / "node_modules" / ".bin" / "azurite-blob"
# The well-known development account every Azurite serves (published by Microsoft).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
# Name of the Metaflow Azure client provider that the Azurite fixture installs (see below).
AZURITE_CLIENT_PROVIDER = "mfotel-azurite"


class EmulatorError(RuntimeError):
    """An emulator could not be installed or did not start."""


class EmulatorProcess:
    """A server subprocess whose output goes to ``log_path``; ready once ``ready`` is printed."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        ready: str,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.startup_seconds = 0.0
        self._ready_re = re.compile(ready)
        self._env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self._cond = threading.Condition()
        self._tail: deque[str] = deque(maxlen=60)
        self._ready = False
        self._ended = False
        self._proc: subprocess.Popen[bytes] | None = None
        self._pump_thread: threading.Thread | None = None

    def start(
        self,
        probe_url: str,
        timeout: float = START_TIMEOUT,
        probe_context: ssl.SSLContext | None = None,
    ) -> None:
        """Start it and wait until it prints its ready line and ``probe_url`` answers."""
        began = time.monotonic()
        self._proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=self._env,
            start_new_session=True,  # a Ctrl-C in pytest is not also sent to the server
        )
        assert self._proc.stdout is not None
        log = self.log_path.open("w", encoding="utf-8")
        self._pump_thread = threading.Thread(
            target=self._pump, args=(self._proc.stdout, log), name=f"{self.name}-log", daemon=True
        )
        self._pump_thread.start()
        wait_until(self._cond, lambda: self._ready or self._ended, timeout)
        if not self._ready:
            code = self._proc.poll()
            self.stop()
            if code is not None:
                raise self.error(f"exited with code {code} before it was ready")
            raise self.error(f"printed no ready line within {timeout:.0f}s")
        try:
            _get(probe_url, max(1.0, timeout - (time.monotonic() - began)), probe_context)
        except OSError as err:
            self.stop()
            raise self.error(f"said it was ready but {probe_url} did not answer: {err}") from err
        self.startup_seconds = time.monotonic() - began

    def _pump(self, stream: IO[bytes], log: IO[str]) -> None:
        with log:
            for raw in stream:
                line = raw.decode("utf-8", errors="replace")
                log.write(line)
                log.flush()
                with self._cond:
                    self._tail.append(line.rstrip("\n"))
                    if not self._ready and self._ready_re.search(line):
                        self._ready = True
                    self._cond.notify_all()
        with self._cond:
            self._ended = True
            self._cond.notify_all()

    def error(self, what: str) -> EmulatorError:
        """An EmulatorError saying ``what``, with the last lines the server printed."""
        with self._cond:
            tail = "\n".join(self._tail) or "(nothing)"
        return EmulatorError(f"{self.name} {what}. Last lines of {self.log_path}:\n{tail}")

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate it (kill if it lingers) and wait for its log to be written out."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._pump_thread is not None:
            self._pump_thread.join(timeout)


def _get(url: str, timeout: float, context: ssl.SSLContext | None = None) -> int:
    """The HTTP status ``url`` answers with (an error status is still an answer)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return int(err.code)


# --- AWS S3: moto in server mode ------------------------------------------------------------


@dataclass
class MotoServer:
    """moto's S3 (and other AWS APIs) at ``endpoint``; ``env`` points boto3 and Metaflow at it."""

    endpoint: str
    env: dict[str, str]
    process: EmulatorProcess

    def client(self, service: str = "s3") -> Any:
        """A boto3 client of ``service`` for this server, independent of os.environ."""
        import boto3

        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        )

    def make_bucket(self, name: str) -> str:
        """Create bucket ``name`` (no error if it exists); returns the name."""
        client = self.client()
        try:
            client.create_bucket(Bucket=name)
        except client.exceptions.BucketAlreadyOwnedByYou:
            pass
        return name


def start_moto(workdir: Path) -> MotoServer:
    """moto's server on a free port, logging to ``workdir/moto.log``."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    proc = EmulatorProcess(
        "moto",
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        workdir / "moto.log",
        ready=re.escape(f"Running on {endpoint}"),
    )
    proc.start(f"{endpoint}/moto-api/")
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
        "METAFLOW_S3_ENDPOINT_URL": endpoint,
    }
    return MotoServer(endpoint, env, proc)


# --- Google Cloud Storage: gcp-storage-emulator ---------------------------------------------


@dataclass
class GCSEmulator:
    """gcp-storage-emulator at ``endpoint``; ``env`` points the GCS client and Metaflow at it."""

    endpoint: str
    env: dict[str, str]
    process: EmulatorProcess
    project: str = "test"

    def client(self) -> Any:
        """A google.cloud.storage.Client for this emulator, independent of os.environ."""
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        return storage.Client(
            project=self.project,
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options={"api_endpoint": self.endpoint},
        )

    def make_bucket(self, name: str) -> str:
        """Create bucket ``name`` (no error if it exists); returns the name."""
        from google.api_core.exceptions import Conflict

        try:
            self.client().create_bucket(name)
        except Conflict:
            pass
        return name


def start_gcs(workdir: Path) -> GCSEmulator:
    """gcp-storage-emulator (in memory) on a free port, logging to ``workdir/gcs.log``."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    proc = EmulatorProcess(
        "gcp-storage-emulator",
        [
            *(sys.executable, "-m", "gcp_storage_emulator", "start"),
            *("--host", "127.0.0.1", "--port", str(port), "--in-memory"),
        ],
        workdir / "gcs.log",
        ready=r"All services started",
    )
    proc.start(f"{endpoint}/storage/v1/b?project=test")
    # Metaflow builds its client from google.auth.default(), which needs credentials even
    # though the emulator ignores them: an authorized-user file whose token is still valid
    # (expiry far ahead), so nothing ever tries to refresh it against Google.
    adc = workdir / "application_default_credentials.json"
    adc.write_text(
        json.dumps(
            {
                "type": "authorized_user",
                "client_id": "emulator",
                "client_secret": "emulator",
                "refresh_token": "emulator",
                "token": "emulator",
                "expiry": "2999-01-01T00:00:00Z",
            }
        )
    )
    env = {
        "STORAGE_EMULATOR_HOST": endpoint,
        "GOOGLE_CLOUD_PROJECT": "test",
        "GOOGLE_APPLICATION_CREDENTIALS": str(adc),
    }
    return GCSEmulator(endpoint, env, proc)


# --- Azure Blob Storage: Azurite from npm ---------------------------------------------------

# Metaflow's Azure datastore authenticates only with a bearer token from an "Azure client
# provider" (DefaultAzureCredential by default), and azure-core refuses bearer tokens over plain
# HTTP. So Azurite runs with TLS and `--oauth basic`, and this Metaflow extension (put on
# PYTHONPATH by ``.env``) supplies a provider whose token is an unsigned JWT that Azurite's basic
# OAuth accepts (it checks issuer, audience and times, not the signature).
_PROVIDER_MODULE = '''\
"""Test-only Metaflow Azure client provider for Azurite (written by tests/emulators.py)."""
import base64
import json
import time


def _part(obj):
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


class AzuriteTokenCredential(object):
    def get_token(self, *scopes, **kwargs):
        from azure.core.credentials import AccessToken

        now = int(time.time())
        tenant = "00000000-0000-0000-0000-000000000000"
        claims = {
            "aud": "https://storage.azure.com",
            "iss": "https://sts.windows.net/%s/" % tenant,
            "tid": tenant,
            "oid": "00000000-0000-0000-0000-000000000001",
            "iat": now - 60,
            "nbf": now - 60,
            "exp": now + 12 * 3600,
        }
        token = "%s.%s.unsigned" % (_part({"alg": "none", "typ": "JWT"}), _part(claims))
        return AccessToken(token, claims["exp"])

    def __hash__(self):
        return hash(AzuriteTokenCredential)

    def __eq__(self, other):
        return isinstance(other, AzuriteTokenCredential)


class AzuriteClientProvider(object):
    name = "@NAME@"

    @staticmethod
    def create_cacheable_azure_credential(*args, **kwargs):
        return AzuriteTokenCredential()
'''


@dataclass
class Azurite:
    """Azurite's blob service (TLS) at ``endpoint``; ``env`` points the SDK and Metaflow at it."""

    endpoint: str
    connection_string: str
    env: dict[str, str]
    ca_bundle: Path
    process: EmulatorProcess

    def service_client(self) -> Any:
        """An azure.storage.blob.BlobServiceClient (shared key) trusting Azurite's certificate."""
        from azure.storage.blob import BlobServiceClient

        return BlobServiceClient.from_connection_string(
            self.connection_string, connection_verify=str(self.ca_bundle)
        )

    def make_container(self, name: str) -> str:
        """Create container ``name`` (no error if it exists); returns the name."""
        from azure.core.exceptions import ResourceExistsError

        try:
            self.service_client().create_container(name)
        except ResourceExistsError:
            pass
        return name


def node_tools_missing() -> bool:
    """True when Node.js or npm is not on PATH (Azurite needs both)."""
    return shutil.which("node") is None or shutil.which("npm") is None


def ensure_azurite(prefix: Path = AZURITE_PREFIX, version: str = AZURITE_VERSION) -> Path:
    """``azurite-blob`` of ``version`` under ``prefix``, npm-installed there first if missing."""
    binary = prefix / "node_modules" / ".bin" / "azurite-blob"
    manifest = prefix / "node_modules" / "azurite" / "package.json"
    try:
        installed = json.loads(manifest.read_text()).get("version")
    except (OSError, ValueError):
        installed = None
    if binary.exists() and installed == version:
        return binary
    prefix.mkdir(parents=True, exist_ok=True)
    npm = shutil.which("npm") or "npm"
    argv = [npm, "install", "--prefix", str(prefix), f"azurite@{version}"]
    argv += ["--no-audit", "--no-fund", "--loglevel=error"]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise EmulatorError(f"`{' '.join(argv)}` failed: {err}") from err
    if done.returncode != 0 or not binary.exists():
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-30:])
        raise EmulatorError(f"`{' '.join(argv)}` exited {done.returncode}:\n{tail}")
    return binary


def _self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """A certificate and key for 127.0.0.1, valid for two days."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([x509.OID_SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "azurite-cert.pem", directory / "azurite-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def _ca_bundle(directory: Path, cert: Path) -> Path:
    """The public CAs (certifi's, if installed) plus ``cert``: safe as REQUESTS_CA_BUNDLE."""
    bundle = directory / "ca-bundle.pem"
    parts = []
    try:
        import certifi

        parts.append(Path(certifi.where()).read_text())
    except ImportError:
        pass
    parts.append(cert.read_text())
    bundle.write_text("\n".join(parts))
    return bundle


def _write_metaflow_extension(directory: Path) -> Path:
    """A metaflow_extensions package adding the Azurite client provider; returns its root."""
    root = directory / "mfext"
    plugins = root / "metaflow_extensions" / "mfotel_azurite" / "plugins"
    plugins.mkdir(parents=True, exist_ok=True)
    (plugins / "mfextinit_mfotel_azurite.py").write_text(
        "AZURE_CLIENT_PROVIDERS_DESC = [\n"
        f'    ("{AZURITE_CLIENT_PROVIDER}", ".azurite_credential.AzuriteClientProvider"),\n'
        "]\n"
    )
    (plugins / "azurite_credential.py").write_text(
        _PROVIDER_MODULE.replace("@NAME@", AZURITE_CLIENT_PROVIDER)
    )
    return root


def start_azurite(workdir: Path, binary: Path | None = None) -> Azurite:
    """Azurite's blob service over TLS on a free port, data and log (azurite.log) in ``workdir``."""
    binary = binary or ensure_azurite()
    cert, key = _self_signed_cert(workdir)
    bundle = _ca_bundle(workdir, cert)
    data = workdir / "data"
    data.mkdir(exist_ok=True)
    port = free_port()
    endpoint = f"https://127.0.0.1:{port}/{AZURITE_ACCOUNT}"
    proc = EmulatorProcess(
        "azurite",
        [
            *(str(binary), "--blobHost", "127.0.0.1", "--blobPort", str(port)),
            *("--location", str(data), "--silent", "--skipApiVersionCheck", "--loose"),
            *("--disableTelemetry", "--cert", str(cert), "--key", str(key), "--oauth", "basic"),
        ],
        workdir / "azurite.log",
        ready=r"successfully listens on",
    )
    # Unauthenticated, so it answers 403: any HTTP answer over verified TLS means it is up.
    proc.start(f"{endpoint}?comp=list", probe_context=ssl.create_default_context(cafile=cert))
    connection_string = (
        f"DefaultEndpointsProtocol=https;AccountName={AZURITE_ACCOUNT};"
        f"AccountKey={AZURITE_KEY};BlobEndpoint={endpoint};"
    )
    ext = _write_metaflow_extension(workdir)
    pythonpath = os.pathsep.join(p for p in (str(ext), os.environ.get("PYTHONPATH", "")) if p)
    env = {
        "AZURE_STORAGE_CONNECTION_STRING": connection_string,
        "METAFLOW_AZURE_STORAGE_BLOB_SERVICE_ENDPOINT": endpoint,
        "METAFLOW_DEFAULT_AZURE_CLIENT_PROVIDER": AZURITE_CLIENT_PROVIDER,
        "PYTHONPATH": pythonpath,
        "REQUESTS_CA_BUNDLE": str(bundle),
    }
    return Azurite(endpoint, connection_string, env, bundle, proc)
