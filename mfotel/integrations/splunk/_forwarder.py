"""A Splunk app for the Universal Forwarder that reads the logs Metaflow persisted.

:func:`render` turns :class:`ForwarderOptions` into the app's files (``local/inputs.conf``,
``props.conf``, ``transforms.conf``, ``fields.conf`` and ``metadata/local.meta``), as text;
:func:`write_app` writes them to ``<dir>/<app>/``. Events land like those of the OTLP → HEC
route (``render-config --target splunk``): the same index and sourcetype by default,
``<sourcetype>:runtime`` for the lines Metaflow's runtime wrote, and the identity as the same
indexed fields (``flow``, ``run_id``, ``step``, ``task_id``, ``attempt``, ``pathspec``).

Every regular expression the files carry is a constant here, written in the subset that PCRE
(Splunk) and Python's ``re`` read alike: ``(?P<name>…)`` groups, ASCII classes, no
look-behind. The tests apply them, as read back from the rendered files, to real logs.
Nothing here prints; ``mfotel splunk forwarder-config`` does.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from mfotel._internal.paths import find_local_root

DEFAULT_APP = "mfotel_metaflow"
README = "mfotel/integrations/splunk/README.md"

# Where a remote worker (AWS Batch, Kubernetes, Argo Workflows) has the task write its logs:
# Metaflow exports MFLOG_STDOUT=$PWD/.logs/mflog_stdout (and mflog_stderr) before the code
# package is unpacked, so $PWD is the image's working directory, "/" for most images.
WORKER_LOG_DIR = "/.logs"

# --- The regular expressions, each written into the files as it stands here ---

# A persisted log's path: <root>/<Flow>/<run>/<step>/<task>/<attempt>.<source>_<stream>.log,
# or <attempt>.<stream>.log before Metaflow 2.2 (see mfotel/logs/_layout.py). Unanchored on
# the left: at index time the path reads "source::/…/.metaflow/…", at search time "/…".
LOG_PATH_REGEX = (
    r"/(?P<flow>[A-Za-z_][A-Za-z0-9_]*)/(?P<run_id>[^/\s]+)/(?P<step>[^/\s]+)"
    r"/(?P<task_id>[^/\s]+)/(?P<attempt>[0-9]+)\.(?:(?:runtime|task)_)?"
    r"(?P<stream>stdout|stderr)\.log$"
)
# The files a worker's task writes as it runs: $PWD/.logs/mflog_stdout and mflog_stderr. Their
# path holds no identity, and neither do their lines (see README.md, "On a remote worker").
WORKER_LOG_PATH_REGEX = r"/mflog_(?P<stream>stdout|stderr)$"
# A persisted line: [MFLOG|0|2026-12-02T06:56:12.977147Z|runtime|<line id>]<message>. The
# fields follow metaflow.mflog.mflog.parse: the source runs to the first "|", the id to the
# first "]". A leading "[!" (persist me) never reaches a file, but is read as Metaflow does.
MFLOG_HEADER_REGEX = (
    r"^(?:\[!)?\[MFLOG\|0\|[0-9T:.-]+Z\|(?P<mflog_source>[^|]+)\|(?P<mflog_uid>[^\]]+)\]"
    r"(?P<message>.*)"
)
TIME_PREFIX_REGEX = r"^(?:\[!)?\[MFLOG\|0\|"
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%6NZ"
MAX_TIMESTAMP_LOOKAHEAD = len("2026-12-02T06:56:12.977147Z")
# Lines the runtime stamped itself; they get the sourcetype <sourcetype>:runtime, as the HEC
# route gives records whose metaflow.log.source is runtime. (Index-time transforms need a
# capturing group even when FORMAT uses none.)
RUNTIME_LINE_REGEX = r"^(?:\[!)?\[MFLOG\|0\|[^|]*\|(runtime)\|"
LINE_BREAKER_REGEX = r"([\r\n]+)"

# A printed DataFrame or JSON record is often longer than Splunk's 10,000-byte default; no
# limit at all (0) would let one runaway line fill an indexer's memory.
TRUNCATE = 100_000

# The identity fields the HEC route makes searchable (collector/targets/splunk/template.yaml.j2),
# all from the path; written at index time. pathspec is the first four joined by "/".
INDEXED_FIELDS = ("flow", "run_id", "step", "task_id", "attempt", "pathspec")
# Search-time names for what the HEC route carries as OpenTelemetry attributes.
OTEL_ALIASES = (
    ("mflog_source", "metaflow.log.source"),
    ("mflog_uid", "log.record.uid"),
    ("stream", "log.iostream"),
)
# Fields whose value is not a word of the raw line: a search for stream=stderr must not also
# ask the index for the term "stderr" (fields.conf INDEXED_VALUE = false).
NOT_IN_RAW = ("stream", "log.iostream")

_INDEX = re.compile(r"[a-z0-9][a-z0-9_-]*")
_SOURCETYPE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:-]{0,199}")
_APP = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.]{0,99}")
_RESERVED_APP = frozenset(  # names Windows will not give a folder
    ["CON", "PRN", "AUX", "NUL"] + [f"{p}{n}" for p in ("COM", "LPT") for n in "123456789"]
)
_NAMED_GROUP = re.compile(r"\(\?P<(\w+)>")


class ForwarderConfigError(ValueError):
    """Bad input; the message is one line naming the input and the fix."""


@dataclass(frozen=True)
class ForwarderOptions:
    """What to monitor and where its events go. ``index`` and ``sourcetype`` left as None are
    the HEC route's defaults (``mfotel render-config --target splunk``)."""

    log_dirs: tuple[str, ...]
    worker: bool = False
    index: str | None = None
    sourcetype: str | None = None
    app: str = DEFAULT_APP


def hec_route_defaults() -> tuple[str, str]:
    """The Splunk target's default index and sourcetype, so both routes land in one place."""
    from mfotel.collector import targets  # reads the packaged target.yaml files

    settings = targets()["splunk"].settings
    return settings["index"].default, settings["sourcetype"].default


def default_log_dir(environ: Mapping[str, str], cwd: str = ".") -> str:
    """The local datastore root a run from ``cwd`` would use, as an absolute path."""
    sysroot = environ.get("METAFLOW_DATASTORE_SYSROOT_LOCAL")
    if sysroot:
        nested = os.path.join(sysroot, ".metaflow")  # Metaflow's own reading of the variable
        return os.path.abspath(nested if os.path.isdir(nested) else sysroot)
    return find_local_root(cwd)


def check_log_dirs(log_dirs: tuple[str, ...], worker: bool) -> tuple[str, ...]:
    """The folders as absolute paths, each once. A datastore folder must exist here; a worker's
    is a path on the worker, so it must be absolute but is not looked for."""
    found: list[str] = []
    for given in log_dirs:
        if any(c in given for c in "\r\n\0"):
            raise ForwarderConfigError(f"--log-dir {given!r}: a path cannot hold line breaks")
        if worker:
            if not given.startswith("/"):
                raise ForwarderConfigError(
                    f"--log-dir {given!r} with --worker is a path on the worker: give it "
                    f"absolute, as the forwarder there sees it (e.g. {WORKER_LOG_DIR})"
                )
            path = os.path.normpath(given)
        else:
            path = os.path.abspath(os.path.expanduser(given))
            if not os.path.isdir(path):
                raise ForwarderConfigError(
                    f"--log-dir {given} is not a folder here: pass the .metaflow folder your "
                    "runs write to (METAFLOW_DATASTORE_SYSROOT_LOCAL/.metaflow), or --worker "
                    "for a path on a remote worker"
                )
        if path not in found:
            found.append(path)
    for inner in found:
        for outer in found:
            if inner != outer and inner.startswith(outer.rstrip("/") + "/"):
                raise ForwarderConfigError(
                    f"--log-dir {inner} is inside --log-dir {outer}: keep only {outer} "
                    "(Splunk reads a file of two overlapping monitors by one of them only)"
                )
    return tuple(found)


def check_index(index: str) -> str:
    if not _INDEX.fullmatch(index) or "kvstore" in index:
        raise ForwarderConfigError(
            f"--index {index!r} is not a name Splunk accepts: use lowercase letters, digits, "
            "'_' and '-', not first '_' or '-', and not the word kvstore (e.g. metaflow)"
        )
    return index


def check_sourcetype(sourcetype: str) -> str:
    if not _SOURCETYPE.fullmatch(sourcetype) or "::" in sourcetype:
        raise ForwarderConfigError(
            f"--sourcetype {sourcetype!r} cannot name a props.conf stanza: use letters, "
            "digits, '_', '.', '-' and single ':' (e.g. metaflow:log)"
        )
    return sourcetype


def check_app(app: str) -> str:
    if not _APP.fullmatch(app) or app.endswith(".") or app.upper() in _RESERVED_APP:
        raise ForwarderConfigError(
            f"--app {app!r} is not a Splunk app folder name: use letters, digits, '.' and "
            f"'_', not ending in '.' (e.g. {DEFAULT_APP})"
        )
    return app


def numbered(regex: str) -> str:
    """``regex`` with its named groups made plain ones, for settings that use ``$1``…``$n``."""
    return _NAMED_GROUP.sub("(", regex)


def only_group(regex: str, name: str) -> str:
    """``regex`` with every named group but ``name`` made non-capturing."""
    return _NAMED_GROUP.sub(lambda m: m.group(0) if m.group(1) == name else "(?:", regex)


def identity_format() -> str:
    """The index-time FORMAT that writes the identity from :data:`LOG_PATH_REGEX`'s groups."""
    groups = re.compile(LOG_PATH_REGEX).groupindex
    parts = [f"{name}::${groups[name]}" for name in INDEXED_FIELDS[:-1]]
    pathspec = "/".join(f"${groups[name]}" for name in ("flow", "run_id", "step", "task_id"))
    return " ".join([*parts, f"pathspec::{pathspec}"])


def render(options: ForwarderOptions) -> dict[str, str]:
    """The app's files, by path inside the app folder, in the order they are best read."""
    app = check_app(options.app)
    index, sourcetype = options.index, options.sourcetype
    if index is None or sourcetype is None:
        default_index, default_sourcetype = hec_route_defaults()
        index = default_index if index is None else index
        sourcetype = default_sourcetype if sourcetype is None else sourcetype
    check_index(index)
    check_sourcetype(sourcetype)
    log_dirs = check_log_dirs(options.log_dirs, options.worker)
    if not log_dirs:
        raise ForwarderConfigError("no --log-dir to monitor: pass at least one")
    return {
        "local/inputs.conf": _inputs(log_dirs, options.worker, index, sourcetype),
        "local/props.conf": _props(app, sourcetype),
        "local/transforms.conf": _transforms(app, sourcetype),
        "local/fields.conf": _fields(),
        "metadata/local.meta": _meta(),
    }


def write_app(files: Mapping[str, str], output_dir: str, app: str) -> list[str]:
    """Write ``files`` under ``<output_dir>/<app>/``; the paths written, in order."""
    root = os.path.join(os.path.abspath(output_dir), check_app(app))
    written = []
    for relative, text in files.items():
        path = os.path.join(root, relative)
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
        except OSError as err:
            raise ForwarderConfigError(
                f"-o {output_dir}: cannot write {path} ({err.strerror or err}): choose a "
                "folder you can write to"
            ) from None
        written.append(path)
    return written


def _header(purpose: str) -> list[str]:
    return [
        f"# {purpose}",
        f"# Written by `mfotel splunk forwarder-config`; what each setting does: {README}.",
        "",
    ]


def _stanza(name: str, settings: list[tuple[str, str]], comment: str = "") -> list[str]:
    lines = [f"# {comment}"] if comment else []
    lines.append(f"[{name}]")
    lines.extend(f"{key} = {value}" for key, value in settings)
    lines.append("")
    return lines


def _inputs(log_dirs: tuple[str, ...], worker: bool, index: str, sourcetype: str) -> str:
    if worker:
        purpose = "On the worker's forwarder: the logs each task writes as it runs."
        whitelist = numbered(WORKER_LOG_PATH_REGEX)
    else:
        purpose = "On the forwarder: every task attempt's logs in Metaflow's local datastore."
        whitelist = numbered(LOG_PATH_REGEX)
    lines = _header(purpose)
    for path in log_dirs:
        lines += _stanza(
            f"monitor://{path}",
            [
                ("disabled", "false"),
                ("index", index),
                ("sourcetype", sourcetype),
                ("whitelist", whitelist),
                # Legacy logs of two tasks can begin alike; each path is written once.
                ("crcSalt", "<SOURCE>"),
            ],
        )
    return "\n".join(lines)


def _search_time() -> list[tuple[str, str]]:
    aliases = " ".join(f"{field} AS {alias}" for field, alias in OTEL_ALIASES)
    return [
        ("EXTRACT-mfotel_header", MFLOG_HEADER_REGEX),
        ("EXTRACT-mfotel_stream", f"{only_group(LOG_PATH_REGEX, 'stream')} in source"),
        ("EXTRACT-mfotel_worker_stream", f"{WORKER_LOG_PATH_REGEX} in source"),
        ("FIELDALIAS-mfotel_otel_names", aliases),
    ]


def _props(app: str, sourcetype: str) -> str:
    lines = _header(
        "Forwarder (input), indexers or heavy forwarder (parsing, index-time fields) and "
        "search heads (search-time fields) each use their part."
    )
    lines += _stanza(
        sourcetype,
        [
            ("CHARSET", "UTF-8"),
            ("EVENT_BREAKER_ENABLE", "true"),
            ("EVENT_BREAKER", LINE_BREAKER_REGEX),
            ("SHOULD_LINEMERGE", "false"),
            ("LINE_BREAKER", LINE_BREAKER_REGEX),
            ("TRUNCATE", str(TRUNCATE)),
            ("TIME_PREFIX", TIME_PREFIX_REGEX),
            ("TIME_FORMAT", TIME_FORMAT),
            ("TZ", "UTC"),
            ("MAX_TIMESTAMP_LOOKAHEAD", str(MAX_TIMESTAMP_LOOKAHEAD)),
            ("TRANSFORMS-mfotel_identity", f"{app}_identity_from_path"),
            ("TRANSFORMS-mfotel_runtime", f"{app}_runtime_sourcetype"),
            *_search_time(),
        ],
        "Every line of a task's log is one event; the raw line is kept as Metaflow wrote it.",
    )
    lines += _stanza(
        f"{sourcetype}:runtime",
        _search_time(),
        "Lines the runtime stamped get this sourcetype at index time; the same fields.",
    )
    return "\n".join(lines)


def _transforms(app: str, sourcetype: str) -> str:
    lines = _header("On the indexers or a heavy forwarder: applied once, when events are parsed.")
    lines += _stanza(
        f"{app}_identity_from_path",
        [
            ("SOURCE_KEY", "MetaData:Source"),
            ("REGEX", numbered(LOG_PATH_REGEX)),
            ("FORMAT", identity_format()),
            ("WRITE_META", "true"),
        ],
        "flow, run_id, step, task_id, attempt and pathspec from the file's path, indexed.",
    )
    lines += _stanza(
        f"{app}_runtime_sourcetype",
        [
            ("REGEX", RUNTIME_LINE_REGEX),
            ("DEST_KEY", "MetaData:Sourcetype"),
            ("FORMAT", f"sourcetype::{sourcetype}:runtime"),
        ],
        "The runtime's own lines (Task failed., …) get their own sourcetype, as over HEC.",
    )
    return "\n".join(lines)


def _fields() -> str:
    lines = _header("On the search heads: how a search asks the index for these fields.")
    for name in INDEXED_FIELDS:
        lines += _stanza(name, [("INDEXED", "true")])
    for name in NOT_IN_RAW:
        lines += _stanza(name, [("INDEXED_VALUE", "false")])
    return "\n".join(lines)


def _meta() -> str:
    lines = _header("Share the app's fields with every app, so searches from Search see them.")
    lines += _stanza("", [("export", "system")])
    return "\n".join(lines)
