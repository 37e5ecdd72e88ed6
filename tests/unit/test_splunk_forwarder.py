"""The Splunk Universal Forwarder app: its files, read as Splunk reads .conf files, and the rules
they carry, applied as Splunk applies them, to lines Metaflow's own writer makes."""

from __future__ import annotations

import configparser
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from metaflow.mflog.mflog import decorate
from metaflow.mflog.mflog import parse as metaflow_parse

from mfotel.collector import targets
from mfotel.integrations.splunk import (
    INDEXED_FIELDS,
    LOG_PATH_REGEX,
    ForwarderConfigError,
    ForwarderOptions,
    default_log_dir,
    render,
    write_app,
)
from mfotel.integrations.splunk._forwarder import check_log_dirs, numbered, only_group

Conf = dict[str, dict[str, str]]
HEC_TEMPLATE = Path(targets()["splunk"].readme).parent / "template.yaml.j2"


# --- Splunk's .conf rules and pipeline, as small as the tests need them ---


def read_conf(text: str) -> Conf:
    """A .conf file as Splunk reads it: ``[stanza]`` lines, ``key = value`` split at the first
    ``=``, ``#`` comment lines. Settings outside a stanza, a repeated stanza or key, and a line
    that a trailing backslash would continue are errors here: the app never needs them."""
    conf: Conf = {}
    stanza: dict[str, str] | None = None
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        assert not line.endswith("\\"), f"line {number} would continue on the next: {line!r}"
        if stripped.startswith("[") and stripped.endswith("]"):
            name = stripped[1:-1]
            assert name not in conf, f"line {number}: stanza [{name}] twice"
            stanza = conf[name] = {}
            continue
        key, sep, value = stripped.partition("=")
        assert sep and stanza is not None, f"line {number} is no setting of a stanza: {line!r}"
        assert key.strip() not in stanza, f"line {number}: {key.strip()} twice"
        stanza[key.strip()] = value.strip()
    return conf


def read_app(files: dict[str, str]) -> dict[str, Conf]:
    return {name: read_conf(text) for name, text in files.items()}


def expand(fmt: str, match: re.Match[str]) -> dict[str, str]:
    """An index-time FORMAT (``name::$1 other::$2/$3``) filled in from a match, as WRITE_META
    writes it into the event's indexed fields."""
    text = re.sub(r"\$(\d+)", lambda m: match.group(int(m.group(1))) or "", fmt)
    return dict(pair.split("::", 1) for pair in text.split())


def index_time(app: dict[str, Conf], sourcetype: str, source: str, raw: str) -> dict[str, str]:
    """What the parsing tier does to one event: the indexed fields its TRANSFORMS write and its
    sourcetype after them (key ``sourcetype``). MetaData keys read ``source::<path>``."""
    props, transforms = app["local/props.conf"], app["local/transforms.conf"]
    result = {"sourcetype": sourcetype}
    for key, names in sorted(props[sourcetype].items()):
        if not key.startswith("TRANSFORMS-"):
            continue
        for name in (n.strip() for n in names.split(",")):
            rule = transforms[name]
            subject = {"MetaData:Source": f"source::{source}", "_raw": raw}[
                rule.get("SOURCE_KEY", "_raw")
            ]
            match = re.search(rule["REGEX"], subject)
            if match is None:
                continue
            if rule.get("WRITE_META") == "true":
                result.update(expand(rule["FORMAT"], match))
            elif rule.get("DEST_KEY") == "MetaData:Sourcetype":
                result["sourcetype"] = rule["FORMAT"].removeprefix("sourcetype::")
    return result


def search_time(app: dict[str, Conf], sourcetype: str, source: str, raw: str) -> dict[str, str]:
    """The fields a search head gives one event: EXTRACT- in class order (each ``(?ms)``-prefixed,
    as Splunk compiles them), then FIELDALIAS-."""
    stanza = app["local/props.conf"][sourcetype]
    fields = {"_raw": raw, "source": source}
    for key, value in sorted(stanza.items()):
        if key.startswith("EXTRACT-"):
            regex, _, field = value.rpartition(" in ")
            if not regex:
                regex, field = value, "_raw"
            match = re.search("(?ms)" + regex, fields[field])
            if match:
                fields.update({k: v for k, v in match.groupdict().items() if v is not None})
    for key, value in sorted(stanza.items()):
        if key.startswith("FIELDALIAS-"):
            words = value.split()
            for original, as_, alias in zip(words[::3], words[1::3], words[2::3]):
                assert as_ == "AS"
                if original in fields:
                    fields[alias] = fields[original]
    return fields


def splunk_time(props: dict[str, str], raw: str) -> datetime | None:
    """The event time TIME_PREFIX, MAX_TIMESTAMP_LOOKAHEAD and TIME_FORMAT give (naive UTC)."""
    assert props["TZ"] == "UTC"
    prefix = re.search(props["TIME_PREFIX"], raw)
    if prefix is None:
        return None
    window = raw[prefix.end() : prefix.end() + int(props["MAX_TIMESTAMP_LOOKAHEAD"])]
    # Splunk's %6N is six digits of subseconds: Python's %f.
    return datetime.strptime(window, props["TIME_FORMAT"].replace("%6N", "%f"))


def rendered(tmp_path: Path, **options: Any) -> dict[str, Conf]:
    """The app for ``options``, read back; it monitors ``tmp_path`` unless told otherwise."""
    log_dirs = options.pop("log_dirs", (str(tmp_path),))
    return read_app(render(ForwarderOptions(log_dirs, **options)))


LINES = [
    decorate(b"task", b"tiny start"),
    decorate(b"runtime", b"Task failed."),
    decorate(b"task", b""),
    decorate(b"task", b"a | pipe ] and [MFLOG|0|not a header] inside"),
    decorate(b"task", "unicode: π ✓".encode()),
    b"[!" + decorate(b"task", b"persist me"),
]


# --- The files ---


def test_render_gives_the_app_files(tmp_path: Path) -> None:
    """The app has inputs, props, transforms and fields in local/, and its sharing in metadata/."""
    files = render(ForwarderOptions((str(tmp_path),)))
    assert list(files) == [
        "local/inputs.conf",
        "local/props.conf",
        "local/transforms.conf",
        "local/fields.conf",
        "metadata/local.meta",
    ]
    assert read_conf(files["metadata/local.meta"]) == {"": {"export": "system"}}


def test_configparser_reads_the_conf_files_but_not_local_meta(tmp_path: Path) -> None:
    """configparser (no interpolation, strict, '=' only, case kept) reads each .conf file as
    Splunk does; only the [] stanza of local.meta is beyond it."""
    files = render(ForwarderOptions((str(tmp_path),)))
    for name, text in files.items():
        parser = configparser.ConfigParser(
            interpolation=None, strict=True, delimiters=("=",), comment_prefixes=("#",)
        )
        parser.optionxform = str  # type: ignore[assignment,method-assign]
        if name.endswith(".meta"):
            with pytest.raises(configparser.MissingSectionHeaderError):
                parser.read_string(text)
            continue
        parser.read_string(text)
        as_read = {s: dict(parser[s]) for s in parser.sections()}
        assert as_read == read_conf(text), name


def test_inputs_monitor_each_datastore_with_index_sourcetype_and_whitelist(tmp_path: Path) -> None:
    """Each --log-dir is one monitor stanza with the index, the sourcetype, a whitelist of task
    logs and a per-path CRC salt."""
    one, two = tmp_path / "a" / ".metaflow", tmp_path / "b" / ".metaflow"
    one.mkdir(parents=True)
    two.mkdir(parents=True)
    app = rendered(tmp_path, log_dirs=(str(one), str(two), str(one)), index="ml", sourcetype="mf")
    inputs = app["local/inputs.conf"]
    assert list(inputs) == [f"monitor://{one}", f"monitor://{two}"]
    for stanza in inputs.values():
        assert stanza == {
            "disabled": "false",
            "index": "ml",
            "sourcetype": "mf",
            "whitelist": numbered(LOG_PATH_REGEX),
            "crcSalt": "<SOURCE>",
        }


@pytest.mark.parametrize(
    ("path", "listed"),
    [
        ("/h/.metaflow/TinyFlow/1796/start/1/0.runtime_stdout.log", True),
        ("/h/.metaflow/TinyFlow/1796/start/1/2.task_stderr.log", True),
        ("/h/.metaflow/OldFlow/17/start/3/0.stdout.log", True),
        ("/h/.metaflow/TinyFlow/1796/start/1/0.data.json", False),
        ("/h/.metaflow/TinyFlow/1796/start/1/0.DONE.lock", False),
        ("/h/.metaflow/TinyFlow/1796/start/1/_meta/0.stdout.log.json", False),
        ("/h/.metaflow/TinyFlow/1796/start/1/tmp0.runtime_stdout.log", False),
        ("/h/.metaflow/TinyFlow/data/ab/abcdef", False),
    ],
)
def test_the_whitelist_takes_task_logs_only(tmp_path: Path, path: str, listed: bool) -> None:
    """The monitor's whitelist takes every attempt's log, old-style ones too, and nothing else
    Metaflow keeps in the datastore."""
    (whitelist,) = {s["whitelist"] for s in rendered(tmp_path)["local/inputs.conf"].values()}
    assert bool(re.search(whitelist, path)) is listed


def test_worker_inputs_watch_the_tasks_own_log_files(tmp_path: Path) -> None:
    """With worker=True the stanza watches a path on the worker, absent here, for mflog_stdout
    and mflog_stderr only."""
    app = rendered(tmp_path, log_dirs=("/.logs", "/mnt/metaflow/"), worker=True)
    inputs = app["local/inputs.conf"]
    assert list(inputs) == ["monitor:///.logs", "monitor:///mnt/metaflow"]
    whitelist = inputs["monitor:///.logs"]["whitelist"]
    assert re.search(whitelist, "/.logs/mflog_stdout")
    assert re.search(whitelist, "/.logs/mflog_stderr")
    assert not re.search(whitelist, "/.logs/mflog_stdout.1")
    assert not re.search(whitelist, "/.logs/save_logs.log")


def test_props_break_lines_and_read_the_header_timestamp(tmp_path: Path) -> None:
    """The sourcetype breaks on every newline, never merges lines, keeps long ones, reads the
    header's UTC timestamp to the microsecond and wires both index-time transforms."""
    props = rendered(tmp_path)["local/props.conf"]
    assert list(props) == ["metaflow:log", "metaflow:log:runtime"]
    stanza = props["metaflow:log"]
    assert {k: stanza[k] for k in ("SHOULD_LINEMERGE", "LINE_BREAKER", "TZ")} == {
        "SHOULD_LINEMERGE": "false",
        "LINE_BREAKER": "([\\r\\n]+)",
        "TZ": "UTC",
    }
    assert stanza["TIME_FORMAT"] == "%Y-%m-%dT%H:%M:%S.%6NZ"
    assert stanza["MAX_TIMESTAMP_LOOKAHEAD"] == "27"
    assert int(stanza["TRUNCATE"]) >= 10_000
    assert stanza["EVENT_BREAKER_ENABLE"] == "true"
    assert not any(key.startswith("SEDCMD") for key in stanza)
    assert stanza["TRANSFORMS-mfotel_identity"] == "mfotel_metaflow_identity_from_path"
    assert stanza["TRANSFORMS-mfotel_runtime"] == "mfotel_metaflow_runtime_sourcetype"
    search_keys = {k: v for k, v in stanza.items() if k.startswith(("EXTRACT-", "FIELDALIAS-"))}
    assert props["metaflow:log:runtime"] == search_keys


def test_transforms_write_the_identity_and_the_runtime_sourcetype(tmp_path: Path) -> None:
    """The identity transform reads the source key and writes indexed fields; the runtime one
    rewrites the sourcetype, both named after the app."""
    transforms = rendered(tmp_path, app="my_app", sourcetype="mf:lines")["local/transforms.conf"]
    identity = transforms["my_app_identity_from_path"]
    assert identity["SOURCE_KEY"] == "MetaData:Source"
    assert identity["WRITE_META"] == "true"
    assert identity["FORMAT"] == (
        "flow::$1 run_id::$2 step::$3 task_id::$4 attempt::$5 pathspec::$1/$2/$3/$4"
    )
    runtime = transforms["my_app_runtime_sourcetype"]
    assert runtime["DEST_KEY"] == "MetaData:Sourcetype"
    assert runtime["FORMAT"] == "sourcetype::mf:lines:runtime"


def test_fields_conf_marks_the_indexed_fields_and_the_values_not_in_the_line(
    tmp_path: Path,
) -> None:
    """Every identity field is INDEXED; stream and its alias are not words of the raw line."""
    fields = rendered(tmp_path)["local/fields.conf"]
    assert {name for name, s in fields.items() if s == {"INDEXED": "true"}} == set(INDEXED_FIELDS)
    assert fields["stream"] == fields["log.iostream"] == {"INDEXED_VALUE": "false"}


def test_indexed_field_names_are_those_the_hec_route_makes() -> None:
    """The identity fields are the HEC route's own, read from its collector template."""
    hec = re.findall(r'\("(\w+)", "metaflow\.[\w.]+"\)', HEC_TEMPLATE.read_text())
    assert tuple(hec) == INDEXED_FIELDS


def test_defaults_are_the_hec_routes_index_and_sourcetype(tmp_path: Path) -> None:
    """Without index and sourcetype, events land where `render-config --target splunk` sends
    them, and runtime lines get its <sourcetype>:runtime."""
    settings = targets()["splunk"].settings
    index, sourcetype = settings["index"].default, settings["sourcetype"].default
    app = rendered(tmp_path)
    (stanza,) = app["local/inputs.conf"].values()
    assert (stanza["index"], stanza["sourcetype"]) == (index, sourcetype)
    runtime = app["local/transforms.conf"]["mfotel_metaflow_runtime_sourcetype"]
    assert runtime["FORMAT"] == f"sourcetype::{sourcetype}:runtime"


# --- The rules, on lines Metaflow's own writer made ---


@pytest.mark.parametrize("line", LINES)
def test_header_fields_are_metaflows_own_reading(tmp_path: Path, line: bytes) -> None:
    """Source, line id and message from the header extraction, and the event time, are what
    metaflow.mflog parses from the same line."""
    app = rendered(tmp_path)
    raw = line.decode()
    fields = search_time(app, "metaflow:log", "/x/F/1/s/2/0.runtime_stdout.log", raw)
    parsed = metaflow_parse(line)
    assert parsed is not None
    assert fields["mflog_source"] == fields["metaflow.log.source"] == parsed.logsource.decode()
    assert fields["mflog_uid"] == fields["log.record.uid"] == parsed.id.decode()
    assert fields["message"] == parsed.msg.decode()
    assert splunk_time(app["local/props.conf"]["metaflow:log"], raw) == parsed.utc_tstamp


@pytest.mark.parametrize("line", LINES)
def test_runtime_lines_and_only_they_get_the_runtime_sourcetype(
    tmp_path: Path, line: bytes
) -> None:
    """The sourcetype becomes <sourcetype>:runtime exactly when Metaflow reads the line's source
    as runtime."""
    app = rendered(tmp_path)
    parsed = metaflow_parse(line)
    assert parsed is not None
    after = index_time(app, "metaflow:log", "/x/F/1/s/2/0.runtime_stdout.log", line.decode())
    runtime = parsed.logsource == b"runtime"
    assert after["sourcetype"] == ("metaflow:log:runtime" if runtime else "metaflow:log")


@pytest.mark.parametrize(
    ("source", "identity", "stream"),
    [
        (
            "/home/u/.metaflow/TinyFlow/1796197611038437/start/1/0.runtime_stdout.log",
            ("TinyFlow", "1796197611038437", "start", "1", "0"),
            "stdout",
        ),
        (
            "/r/.metaflow/ProbeFlow/argo-probe-x7k2/flaky/t-0a1b/1.task_stderr.log",
            ("ProbeFlow", "argo-probe-x7k2", "flaky", "t-0a1b", "1"),
            "stderr",
        ),
        ("/r/OldFlow/17/start/3/12.stderr.log", ("OldFlow", "17", "start", "3", "12"), "stderr"),
    ],
)
def test_identity_and_stream_come_from_the_path(
    tmp_path: Path, source: str, identity: tuple[str, ...], stream: str
) -> None:
    """The indexed identity and the search-time stream come from the file's path alone, also
    for pre-mflog logs, whose lines have no header."""
    app = rendered(tmp_path)
    raw = "a legacy line without a header"
    indexed = index_time(app, "metaflow:log", source, raw)
    flow, run, step, task, attempt = identity
    assert indexed == {
        "sourcetype": "metaflow:log",
        "flow": flow,
        "run_id": run,
        "step": step,
        "task_id": task,
        "attempt": attempt,
        "pathspec": f"{flow}/{run}/{step}/{task}",
    }
    fields = search_time(app, "metaflow:log", source, raw)
    assert fields["stream"] == fields["log.iostream"] == stream
    assert not set(fields) & set(INDEXED_FIELDS), "no search-time field shadows an indexed one"
    assert "message" not in fields
    assert splunk_time(app["local/props.conf"]["metaflow:log"], raw) is None


def test_regex_helpers_keep_group_numbers() -> None:
    """numbered() keeps every group's number; only_group() keeps one group and its name."""
    named = re.compile(LOG_PATH_REGEX)
    plain = re.compile(numbered(LOG_PATH_REGEX))
    subject = "/r/F/1/s/2/3.task_stderr.log"
    named_match, plain_match = named.search(subject), plain.search(subject)
    assert named_match and plain_match
    assert plain.groups == named.groups and not plain.groupindex
    for name, number in named.groupindex.items():
        assert plain_match.group(number) == named_match.group(name)
    assert re.compile(only_group(LOG_PATH_REGEX, "stream")).groupindex == {"stream": 1}


# --- Options ---


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"index": "Metaflow"}, "--index 'Metaflow' is not a name Splunk accepts"),
        ({"index": "_internal"}, "--index '_internal' is not a name Splunk accepts"),
        ({"index": "my_kvstore"}, "--index 'my_kvstore' is not a name Splunk accepts"),
        ({"index": ""}, "--index '' is not a name Splunk accepts"),
        ({"sourcetype": "meta flow"}, "--sourcetype 'meta flow' cannot name a props.conf"),
        ({"sourcetype": "source::x"}, "--sourcetype 'source::x' cannot name a props.conf"),
        ({"app": "../apps"}, "--app '../apps' is not a Splunk app folder name"),
        ({"app": "mfotel."}, "--app 'mfotel.' is not a Splunk app folder name"),
        ({"app": "con"}, "--app 'con' is not a Splunk app folder name"),
        ({"log_dirs": ()}, "no --log-dir to monitor"),
        ({"log_dirs": ("/no/such/.metaflow",)}, "--log-dir /no/such/.metaflow is not a folder"),
        ({"log_dirs": ("rel/.logs",), "worker": True}, "--log-dir 'rel/.logs' with --worker"),
    ],
)
def test_bad_options_are_named_with_their_fix(
    tmp_path: Path, options: dict[str, Any], message: str
) -> None:
    """Each bad option raises ForwarderConfigError, one line that names it and says what to do."""
    with pytest.raises(ForwarderConfigError) as caught:
        rendered(tmp_path, **options)
    text = str(caught.value)
    assert text.startswith(message)
    assert "\n" not in text and ": " in text


def test_overlapping_log_dirs_are_refused(tmp_path: Path) -> None:
    """A folder inside another is refused (one file, two monitors); the same folder twice is one."""
    inner = tmp_path / "TinyFlow"
    inner.mkdir()
    assert check_log_dirs((str(tmp_path), f"{tmp_path}/"), worker=False) == (str(tmp_path),)
    with pytest.raises(ForwarderConfigError, match=f"--log-dir {inner} is inside --log-dir"):
        check_log_dirs((str(tmp_path), str(inner)), worker=False)


def test_default_log_dir_is_found_as_metaflow_finds_it(tmp_path: Path) -> None:
    """The default is the .metaflow folder found upward from here, or Metaflow's reading of
    METAFLOW_DATASTORE_SYSROOT_LOCAL (the folder holding .metaflow), as an absolute path."""
    root = tmp_path / ".metaflow"
    (root / "TinyFlow").mkdir(parents=True)
    assert default_log_dir({}, str(root / "TinyFlow")) == str(root)
    assert default_log_dir({"METAFLOW_DATASTORE_SYSROOT_LOCAL": str(tmp_path)}) == str(root)
    assert default_log_dir({"METAFLOW_DATASTORE_SYSROOT_LOCAL": str(root)}) == str(root)


def test_write_app_writes_the_files_under_the_app_folder(tmp_path: Path) -> None:
    """write_app puts each file at <dir>/<app>/<path> and returns those paths in order."""
    files = render(ForwarderOptions((str(tmp_path),), app="mf_app"))
    written = write_app(files, str(tmp_path / "apps"), "mf_app")
    assert written == [str(tmp_path / "apps" / "mf_app" / name) for name in files]
    for path, text in zip(written, files.values()):
        assert Path(path).read_text() == text


def test_write_app_names_a_folder_it_cannot_write(tmp_path: Path) -> None:
    """A destination below a regular file is refused with the path and the fix."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    files = render(ForwarderOptions((str(tmp_path),)))
    with pytest.raises(ForwarderConfigError, match=r"^-o .*a-file/x: cannot write .*choose a"):
        write_app(files, str(blocker / "x"), "mfotel_metaflow")
