"""Build the kit's slim collector with the OpenTelemetry Collector Builder, and find it again.

The binary is cached outside the repository under ``<cache>/mfotel/collector/<key>/mfotelcol``,
where ``key`` is a hash of the manifest's content: editing the manifest builds a new binary,
anything else reuses the cached one.

ocb generates the distribution's sources. Its own module step runs ``go mod tidy``, which also
resolves the *test-only* dependencies of every component; several of those are not served by the
Go module proxy this kit is built from. So ocb is asked for sources only, and the kit resolves
the modules the build imports with ``go get`` (checksums verified as usual) and compiles with
``go build``: the same binary, without the test dependencies.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from mfotel.settings import MFOTEL_COLLECTOR_BIN

MANIFEST = Path(__file__).with_name("manifest.yaml")
BINARY_NAME = "mfotelcol"


# Components the templates may use that the kit's own build cannot include: the Go module proxy
# it is built from refuses these modules (HTTP 403/404), so configs using them need the official
# contrib distribution (image or binary) instead.
NOT_IN_SLIM_BUILD = {
    "splunk_hec": "github.com/open-telemetry/opentelemetry-collector-contrib"
    "/exporter/splunkhecexporter",
}
CONTRIB_IMAGE = "otel/opentelemetry-collector-contrib:0.155.0"


class CollectorError(RuntimeError):
    """The collector cannot be built or found; the message is one line naming the fix."""


@dataclass(frozen=True)
class Manifest:
    """What the build needs from the manifest: its text, cache key and Go modules."""

    text: str
    key: str
    modules: tuple[str, ...]  # "path@version"
    core_version: str  # the collector release, e.g. v0.155.0

    @classmethod
    def load(cls, path: Path = MANIFEST) -> Manifest:
        text = path.read_text()
        data = yaml.safe_load(text)
        modules: list[str] = []
        for kind in (
            "receivers",
            "processors",
            "exporters",
            "extensions",
            "connectors",
            "providers",
        ):
            for entry in data.get(kind) or ():
                mod, version = entry["gomod"].split()
                modules.append(f"{mod}@{version}")
        core = next(
            m.split("@")[1]
            for m in modules
            if m.startswith("go.opentelemetry.io/collector/receiver/")
        )
        key = hashlib.sha256(text.encode()).hexdigest()[:16]
        return cls(text=text, key=key, modules=tuple(modules), core_version=core)


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mfotel" / "collector"


def cached_binary(manifest: Manifest | None = None) -> Path:
    """Where the binary built from ``manifest`` lives (whether or not it exists yet)."""
    m = manifest or Manifest.load()
    return cache_root() / m.key / BINARY_NAME


def find_binary() -> Path | None:
    """``MFOTEL_COLLECTOR_BIN`` if set, else the cached build of the current manifest, else None."""
    configured = MFOTEL_COLLECTOR_BIN.get_str()
    if configured:
        path = Path(configured).expanduser()
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise CollectorError(
                f"MFOTEL_COLLECTOR_BIN={configured} is not an executable file; "
                "point it at an otelcol binary or unset it to use `mfotel collector build`"
            )
        return path
    path = cached_binary()
    return path if path.is_file() else None


def _go() -> str:
    go = shutil.which("go")
    if go is None:
        raise CollectorError(
            "building the collector needs Go (>= 1.24): install it from https://go.dev/dl/ "
            "or your package manager, or set MFOTEL_COLLECTOR_BIN to an existing otelcol binary"
        )
    return go


def _run(cmd: list[str], cwd: Path, env: dict[str, str], log: Callable[[str], None]) -> None:
    log("$ " + " ".join(cmd[:6]) + (" …" if len(cmd) > 6 else ""))
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        raise CollectorError(f"`{' '.join(cmd[:3])}` failed (exit {proc.returncode}):\n{tail}")


def _builder(go: str, version: str, env: dict[str, str], log: Callable[[str], None]) -> Path:
    bindir = cache_root() / "ocb" / version
    builder = bindir / "builder"
    if not builder.is_file():
        bindir.mkdir(parents=True, exist_ok=True)
        _run(
            [go, "install", f"go.opentelemetry.io/collector/cmd/builder@{version}"],
            cwd=bindir,
            env={**env, "GOBIN": str(bindir)},
            log=log,
        )
    return builder


def build(force: bool = False, log: Callable[[str], None] | None = None) -> Path:
    """Build the slim collector unless the current manifest's binary is cached; return its path."""
    say = log or (lambda line: print(line, file=sys.stderr))
    manifest = Manifest.load()
    target = cached_binary(manifest)
    if target.is_file() and not force:
        return target
    go = _go()
    env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-mod=mod"}
    builder = _builder(go, manifest.core_version, env, say)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="build-", dir=target.parent) as tmp:
        work = Path(tmp)
        config = yaml.safe_load(manifest.text)
        config["dist"]["output_path"] = str(work / "src")
        (work / "manifest.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        _run(
            [
                str(builder),
                "--config",
                str(work / "manifest.yaml"),
                "--skip-compilation",
                "--skip-get-modules",
            ],
            cwd=work,
            env=env,
            log=say,
        )
        src = work / "src"
        _run([go, "mod", "init", BINARY_NAME], cwd=src, env=env, log=say)
        core = manifest.core_version
        pins = [
            f"go.opentelemetry.io/collector/otelcol@{core}",
            f"go.opentelemetry.io/collector/service@{core}",
        ]
        _run([go, "get", *manifest.modules, *pins], cwd=src, env=env, log=say)
        out = work / BINARY_NAME
        _run(
            [go, "build", "-trimpath", "-ldflags=-s -w", "-o", str(out), "."],
            cwd=src,
            env=env,
            log=say,
        )
        (target.parent / "manifest.yaml").write_text(manifest.text)
        os.replace(out, target)
    return target
