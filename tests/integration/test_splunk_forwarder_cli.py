"""`mfotel splunk forwarder-config` on real runs: the app it writes, read back as Splunk reads it,
its rules applied to every log Metaflow persisted and checked against Metaflow's own readings
(its mflog parser, its client), and the same regexes run by PCRE (grep -P) and Perl."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from metaflow.mflog import BASH_MFLOG
from metaflow.mflog.mflog import parse as metaflow_parse

from mfotel.collector import targets
from tests.conftest import FlowRun, run_flow
from tests.unit.test_splunk_forwarder import (
    Conf,
    index_time,
    read_app,
    read_conf,
    search_time,
    splunk_time,
)

pytestmark = pytest.mark.flow

APP = "mfotel_metaflow"
SOURCETYPE = targets()["splunk"].settings["sourcetype"].default
IDENTITY = ("flow", "run_id", "step", "task_id", "attempt", "pathspec")
COMMAND = [sys.executable, "-m", "mfotel.cli", "splunk"]


def forwarder_config(*args: str, cwd: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    """The command for real, in a clean environment plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "MF", "METAFLOW_"))}
    env.update(extra)
    return subprocess.run(
        [*COMMAND, "forwarder-config", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def written_app(result: subprocess.CompletedProcess[str], app_dir: Path) -> dict[str, Conf]:
    assert result.returncode == 0, result.stderr
    return read_app(
        {
            str(p.relative_to(app_dir)): p.read_text()
            for p in sorted(app_dir.rglob("*"))
            if p.is_file()
        }
    )


def task_logs(root: Path) -> list[Path]:
    """Every task log under a datastore root, found by Metaflow's layout, not by a regex."""
    return sorted(root.glob("*/*/*/*/*.log"))


def events(props: dict[str, str], data: str) -> list[str]:
    """The events LINE_BREAKER cuts from a file (the breaker's first group between them)."""
    found, start = [], 0
    for match in re.finditer(props["LINE_BREAKER"], data):
        found.append(data[start : match.start(1)])
        start = match.end(1)
    found.append(data[start:])
    return [event for event in found if event]


def metaflow_tasks(run: FlowRun, flow: str) -> set[tuple[str, str]]:
    """(pathspec, attempt) of every attempt of the run, as Metaflow's client lists them."""
    code = (
        "import sys\n"
        "from metaflow import Run, namespace\n"
        "namespace(None)\n"
        "for step in Run(sys.argv[1]):\n"
        "    for task in step:\n"
        "        print(task.pathspec, task.current_attempt)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, f"{flow}/{run.run_id}"],
        cwd=run.workdir,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    found = set()
    for line in done.stdout.splitlines():
        pathspec, last = line.split()
        found |= {(pathspec, str(attempt)) for attempt in range(int(last) + 1)}
    return found


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> FlowRun:
    """A TinyFlow run without mfotel: Metaflow's runtime stamps every line itself."""
    run = run_flow("tiny_flow.py", tmp_path_factory.mktemp("tiny"))
    assert run.returncode == 0, run.output
    return run


@pytest.fixture(scope="module")
def failing(tmp_path_factory: pytest.TempPathFactory) -> FlowRun:
    """A FailFlow run traced by mfotel whose middle step fails twice (attempts 0 and 1): task
    lines carry the task as their source, the runtime's "Task failed." the runtime."""
    run = run_flow(
        "fail_flow.py",
        tmp_path_factory.mktemp("failing"),
        "--with",
        "retry:times=1,minutes_between_retries=0",
        env={"MF_TRACING": "console"},
    )
    assert run.returncode != 0 and run.run_id, run.output
    return run


@pytest.fixture(scope="module")
def app(
    tiny: FlowRun, failing: FlowRun, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Conf]:
    """The app for both runs' datastores, written by the command and read back."""
    out = tmp_path_factory.mktemp("apps")
    result = forwarder_config(
        "--log-dir",
        str(tiny.workdir / ".metaflow"),
        "--log-dir",
        str(failing.workdir / ".metaflow"),
        "-o",
        str(out),
        cwd=out,
    )
    return written_app(result, out / APP)


def roots(tiny: FlowRun, failing: FlowRun) -> list[Path]:
    return [tiny.workdir / ".metaflow", failing.workdir / ".metaflow"]


def test_writes_the_app_and_says_what_it_wrote(tiny: FlowRun, tmp_path: Path) -> None:
    """-o writes <dir>/<app>/local/*.conf and metadata/local.meta, one stderr line per file."""
    result = forwarder_config(
        "--log-dir", str(tiny.workdir / ".metaflow"), "-o", str(tmp_path), cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    names = ["inputs.conf", "props.conf", "transforms.conf", "fields.conf"]
    expected = [tmp_path / APP / "local" / n for n in names] + [
        tmp_path / APP / "metadata/local.meta"
    ]
    lines = result.stderr.splitlines()
    assert lines[:-1] == [f"mfotel: wrote {path}" for path in expected]
    assert "$SPLUNK_HOME/etc/apps/" in lines[-1]
    assert all(path.is_file() for path in expected)
    app = written_app(result, tmp_path / APP)
    assert list(app["local/inputs.conf"]) == [f"monitor://{tiny.workdir / '.metaflow'}"]


def test_every_task_log_and_nothing_else_is_monitored(
    app: dict[str, Conf], tiny: FlowRun, failing: FlowRun
) -> None:
    """Of all the files Metaflow keeps in the datastores, the whitelist takes exactly the task
    logs, every attempt's."""
    inputs = app["local/inputs.conf"]
    for root in roots(tiny, failing):
        whitelist = inputs[f"monitor://{root}"]["whitelist"]
        every_file = [p for p in root.rglob("*") if p.is_file()]
        taken = {p for p in every_file if re.search(whitelist, str(p))}
        assert taken == set(task_logs(root))
        assert len(every_file) > len(taken) > 0
    middle = failing.workdir / ".metaflow" / "FailFlow" / failing.run_id / "middle"
    assert sorted(p.name for p in middle.glob("*/*.log")) == [
        "0.runtime_stderr.log",
        "0.runtime_stdout.log",
        "1.runtime_stderr.log",
        "1.runtime_stdout.log",
    ]


def test_the_indexed_identity_of_each_log_is_metaflows(
    app: dict[str, Conf], tiny: FlowRun, failing: FlowRun
) -> None:
    """flow/run_id/step/task_id/attempt/pathspec written at index time from each log's path name
    every attempt Metaflow's client knows, and the search-time stream is the file's."""
    for run, flow in ((tiny, "TinyFlow"), (failing, "FailFlow")):
        seen = set()
        for path in task_logs(run.workdir / ".metaflow"):
            fields = index_time(app, SOURCETYPE, str(path), "")
            flow_, run_id, step, task_id, attempt = (fields[k] for k in IDENTITY[:5])
            assert fields["pathspec"] == f"{flow_}/{run_id}/{step}/{task_id}"
            assert (flow_, run_id) == (flow, run.run_id)
            seen.add((fields["pathspec"], attempt))
            stream = search_time(app, SOURCETYPE, str(path), "")["stream"]
            assert path.name.endswith(f"{stream}.log")
        assert seen == metaflow_tasks(run, flow)


def test_every_lines_fields_and_time_are_metaflows_reading(
    app: dict[str, Conf], tiny: FlowRun, failing: FlowRun
) -> None:
    """Each persisted line is one event whose source, id, message and time are what Metaflow's
    mflog parser reads from it, under either sourcetype."""
    props = app["local/props.conf"]
    count = 0
    for root in roots(tiny, failing):
        for path in task_logs(root):
            data = path.read_text()
            lines = events(props[SOURCETYPE], data)
            assert lines == [line for line in data.splitlines() if line]
            for raw in lines:
                parsed = metaflow_parse(raw.encode())
                assert parsed is not None, raw
                sourcetype = index_time(app, SOURCETYPE, str(path), raw)["sourcetype"]
                fields = search_time(app, sourcetype, str(path), raw)
                assert fields["mflog_source"] == parsed.logsource.decode()
                assert fields["metaflow.log.source"] == parsed.logsource.decode()
                assert fields["mflog_uid"] == fields["log.record.uid"] == parsed.id.decode()
                assert fields["message"] == parsed.msg.decode()
                assert fields["log.iostream"] == fields["stream"]
                assert splunk_time(props[SOURCETYPE], raw) == parsed.utc_tstamp
                count += 1
    assert count > 40


def test_runtime_lines_get_the_runtime_sourcetype(
    app: dict[str, Conf], tiny: FlowRun, failing: FlowRun
) -> None:
    """A line gets <sourcetype>:runtime exactly when Metaflow reads its source as runtime: the
    runtime's "Task failed.", and every line of a run without mfotel's relay."""
    kinds: dict[str, set[tuple[str, str]]] = {"tiny": set(), "failing": set()}
    for name, run in (("tiny", tiny), ("failing", failing)):
        for path in task_logs(run.workdir / ".metaflow"):
            for raw in path.read_text().splitlines():
                parsed = metaflow_parse(raw.encode())
                assert parsed is not None
                after = index_time(app, SOURCETYPE, str(path), raw)["sourcetype"]
                kinds[name].add((parsed.logsource.decode(), after))
                if parsed.msg == b"Task failed.":
                    assert after == f"{SOURCETYPE}:runtime"
    assert kinds["tiny"] == {("runtime", f"{SOURCETYPE}:runtime")}
    assert kinds["failing"] == {("runtime", f"{SOURCETYPE}:runtime"), ("task", SOURCETYPE)}


def test_old_style_logs_keep_their_identity_without_a_header(tmp_path: Path) -> None:
    """Pre-mflog <attempt>.stdout.log files are monitored and named by their path; their plain
    lines get no header fields and no parsed time."""
    root = tmp_path / ".metaflow"
    task = root / "OldFlow" / "17" / "start" / "3"
    task.mkdir(parents=True)
    (task / "0.stdout.log").write_text("hello from 2019\nsecond line\n")
    (task / "1.stderr.log").write_text("Traceback (most recent call last):\n")
    out = tmp_path / "apps"
    app = written_app(forwarder_config("-o", str(out), cwd=tmp_path), out / APP)
    (whitelist,) = (s["whitelist"] for s in app["local/inputs.conf"].values())
    props = app["local/props.conf"][SOURCETYPE]
    for path, attempt, stream in (
        (task / "0.stdout.log", "0", "stdout"),
        (task / "1.stderr.log", "1", "stderr"),
    ):
        assert re.search(whitelist, str(path))
        for raw in events(props, path.read_text()):
            indexed = index_time(app, SOURCETYPE, str(path), raw)
            assert indexed["pathspec"] == "OldFlow/17/start/3" and indexed["attempt"] == attempt
            assert indexed["sourcetype"] == SOURCETYPE
            fields = search_time(app, SOURCETYPE, str(path), raw)
            assert fields["stream"] == stream
            assert not {"mflog_source", "mflog_uid", "message"} & set(fields)
            assert splunk_time(props, raw) is None


def worker_logs(folder: Path) -> list[Path]:
    """A worker's .logs folder as Metaflow's own writers fill it: the bash mflog function the
    bootstrap uses, then metaflow.mflog.tee on the task's stdout and stderr."""
    folder.mkdir(parents=True)
    stdout, stderr = folder / "mflog_stdout", folder / "mflog_stderr"
    env = {**os.environ, "MFLOG_STDOUT": str(stdout), "MFLOG_STDERR": str(stderr)}
    bootstrap = f"{BASH_MFLOG} && mflog 'Setting up task environment.' && mflog 'Task is starting.'"
    subprocess.run(shlex.split(f'bash -c "{bootstrap}"'), env=env, check=True, capture_output=True)
    for path, text in ((stdout, "tiny start\n\nwith | and ]\n"), (stderr, "tiny to stderr\n")):
        subprocess.run(
            [sys.executable, "-m", "metaflow.mflog.tee", "task", str(path)],
            input=text.encode(),
            env=env,
            check=True,
            capture_output=True,
        )
    return [stdout, stderr]


def test_worker_logs_get_stream_and_header_fields_but_no_identity(tmp_path: Path) -> None:
    """--worker monitors the files a task writes on its worker: their lines, made by Metaflow's
    own bash mflog and tee, read as Metaflow reads them; neither path nor line names the task."""
    logs = worker_logs(tmp_path / "work" / ".logs")
    (tmp_path / "work" / ".logs" / "other.txt").write_text("not a log\n")
    out = tmp_path / "apps"
    result = forwarder_config(
        "--worker", "--log-dir", str(logs[0].parent), "-o", str(out), cwd=tmp_path
    )
    app = written_app(result, out / APP)
    (stanza,) = app["local/inputs.conf"].values()
    listed = {p for p in logs[0].parent.iterdir() if re.search(stanza["whitelist"], str(p))}
    assert listed == set(logs)
    props = app["local/props.conf"][SOURCETYPE]
    lines = 0
    for path in logs:
        for raw in events(props, path.read_text()):
            parsed = metaflow_parse(raw.encode())
            assert parsed is not None and parsed.logsource == b"task", raw
            assert index_time(app, SOURCETYPE, str(path), raw) == {"sourcetype": SOURCETYPE}
            fields = search_time(app, SOURCETYPE, str(path), raw)
            assert fields["stream"] == path.name.removeprefix("mflog_")
            assert (fields["mflog_uid"], fields["message"]) == (
                parsed.id.decode(),
                parsed.msg.decode(),
            )
            assert splunk_time(props, raw) == parsed.utc_tstamp
            lines += 1
    assert lines == 6


PERL = r"""
BEGIN { $re = $ENV{RE} }
chomp;
my $line = $_;
if ($line =~ /$re/) {
    my @groups = map { defined $-[$_] ? substr($line, $-[$_], $+[$_] - $-[$_]) : "\x00" } 1 .. $#+;
    my @named = map { "$_=$+{$_}" } sort keys %+;
    print "1\x1e", join("\x1f", @groups), "\x1e", join("\x1f", @named), "\n";
} else {
    print "0\n";
}
"""


def perl_matches(regex: str, subjects: list[str]) -> list[Any]:
    done = subprocess.run(
        ["perl", "-ne", PERL],
        input="\n".join(subjects) + "\n",
        env={**os.environ, "RE": regex, "LC_ALL": "C"},
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.split("\n")[:-1]  # not splitlines(): it breaks at the \x1e separators


def python_matches(regex: str, subjects: list[str]) -> list[Any]:
    found = []
    for subject in subjects:
        match = re.search(regex, subject)
        if match is None:
            found.append("0")
            continue
        groups = "\x1f".join("\x00" if g is None else g for g in match.groups())
        named = "\x1f".join(
            f"{k}={v}" for k, v in sorted(match.groupdict().items()) if v is not None
        )
        found.append(f"1\x1e{groups}\x1e{named}")
    return found


def test_the_regexes_mean_the_same_to_pcre_and_perl_as_to_python(
    app: dict[str, Conf], tiny: FlowRun, failing: FlowRun, tmp_path: Path
) -> None:
    """Every regex in the files, run by PCRE (grep -P) on every real path and line, matches the
    same ones as Python's re, and Perl captures the same groups."""
    if shutil.which("perl") is None or subprocess.run(["grep", "-qP", "x"], input=b"x").returncode:
        pytest.skip("needs perl and GNU grep with -P (PCRE): apt-get install perl grep")
    files = [p for root in roots(tiny, failing) for p in root.rglob("*") if p.is_file()]
    lines = [raw for p in files if p.suffix == ".log" for raw in p.read_text().splitlines()]
    paths = [str(p) for p in files] + [f"source::{p}" for p in files]
    worker = [str(p) for p in worker_logs(tmp_path / ".logs")]
    lines += [raw for p in worker for raw in Path(p).read_text().splitlines()]
    props = app["local/props.conf"][SOURCETYPE]
    transforms = app["local/transforms.conf"]
    cases = {
        "whitelist": (next(s["whitelist"] for s in app["local/inputs.conf"].values()), paths),
        "identity": (transforms[f"{APP}_identity_from_path"]["REGEX"], paths),
        "runtime": (transforms[f"{APP}_runtime_sourcetype"]["REGEX"], lines),
        "time prefix": (props["TIME_PREFIX"], lines),
        "header": ("(?ms)" + props["EXTRACT-mfotel_header"], lines),
        "stream": ("(?ms)" + props["EXTRACT-mfotel_stream"].rpartition(" in ")[0], paths),
        "worker stream": (
            "(?ms)" + props["EXTRACT-mfotel_worker_stream"].rpartition(" in ")[0],
            paths + worker,
        ),
    }
    for name, (regex, subjects) in cases.items():
        expected = python_matches(regex, subjects)
        assert any(m != "0" for m in expected), name
        assert perl_matches(regex, subjects) == expected, name
        listing = tmp_path / "subjects"
        listing.write_text("\n".join(subjects) + "\n")
        grep = subprocess.run(
            ["grep", "-nP", "-e", regex, str(listing)],
            env={**os.environ, "LC_ALL": "C"},
            capture_output=True,
            text=True,
        )
        assert grep.returncode in (0, 1), (name, grep.stderr)
        pcre = {int(line.split(":", 1)[0]) for line in grep.stdout.splitlines()}
        assert pcre == {n for n, m in enumerate(expected, 1) if m != "0"}, name


def test_defaults_monitor_the_datastore_found_from_here(tiny: FlowRun, tmp_path: Path) -> None:
    """Without options the command prints every file behind a separator, monitoring the
    .metaflow folder found from the working folder, into the HEC route's index and sourcetype;
    the printed files are the ones -o writes."""
    result = forwarder_config(cwd=tiny.workdir / ".metaflow" / "TinyFlow")
    assert result.returncode == 0, result.stderr
    parts = re.split(r"^# --- (\S+) ---\n", result.stdout, flags=re.M)
    assert parts[0] == ""
    printed = dict(zip(parts[1::2], parts[2::2]))
    assert list(printed) == [
        "local/inputs.conf",
        "local/props.conf",
        "local/transforms.conf",
        "local/fields.conf",
        "metadata/local.meta",
    ]
    ((name, stanza),) = read_conf(printed["local/inputs.conf"]).items()
    assert name == f"monitor://{tiny.workdir / '.metaflow'}"
    settings = targets()["splunk"].settings
    assert (stanza["index"], stanza["sourcetype"]) == (
        settings["index"].default,
        settings["sourcetype"].default,
    )
    written = forwarder_config("-o", str(tmp_path), cwd=tiny.workdir / ".metaflow" / "TinyFlow")
    assert written.returncode == 0, written.stderr
    for relative, text in printed.items():
        assert (tmp_path / APP / relative).read_text() + "\n" == text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--log-dir", "{tmp}/missing"], "mfotel: --log-dir {tmp}/missing is not a folder here"),
        ([], "mfotel: no Metaflow datastore here ({tmp}/nowhere does not exist)"),
        (["--log-dir", "{tmp}", "--index", "Metaflow"], "mfotel: --index 'Metaflow' is not a name"),
        (["--log-dir", "{tmp}", "--index", "_audit"], "mfotel: --index '_audit' is not a name"),
        (["--log-dir", "{tmp}", "--sourcetype", "a b"], "mfotel: --sourcetype 'a b' cannot name"),
        (["--log-dir", "{tmp}", "--app", "my/app"], "mfotel: --app 'my/app' is not a Splunk app"),
        (["--worker", "--log-dir", "x/.logs"], "mfotel: --log-dir 'x/.logs' with --worker is a"),
        (
            ["--log-dir", "{tmp}", "-o", "{tmp}/file/apps"],
            "mfotel: -o {tmp}/file/apps: cannot write",
        ),
    ],
)
def test_bad_input_is_one_line_naming_it_and_exit_2(
    tmp_path: Path, args: list[str], message: str
) -> None:
    """Each bad input exits 2 with one mfotel: line that names it and its fix, and prints and
    writes nothing else."""
    (tmp_path / "file").write_text("")
    result = forwarder_config(
        *(a.format(tmp=tmp_path) for a in args),
        cwd=tmp_path,
        METAFLOW_DATASTORE_SYSROOT_LOCAL=str(tmp_path / "nowhere"),
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(message.format(tmp=tmp_path)), result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]
