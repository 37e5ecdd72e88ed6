"""What ``metaflow.tracing`` becomes when ``MF_TRACING`` is on.

Metaflow already calls these functions in the right places: ``cli`` wraps the ``run``,
``resume`` and ``step`` commands (so the runtime and every task process pass through here),
``inject_tracing_vars`` fills the environment of every task, sidecar and subprocess it
launches, ``post_fork`` runs in every ``parallel_map`` child. None of them touches the
network or imports OpenTelemetry: each process only writes small JSON messages to the run's
agent (see :mod:`mfotel._internal.ipc`), which assembles and exports them.

Trace shape: one trace per run, a root span ``RUN <Flow>`` made by the runtime process, one
span per task attempt (named after the step) made by the task process, ``parallel_map``
forks and :func:`traced` blocks as children of the attempt. Ids of a run's root derive from
the flow name and run id, so every process (and later tools) can name the run's trace
without being told: ``root_context(flow, run_id)``.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import sys
import time
from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any, Callable, TypeVar

from mfotel import settings
from mfotel._internal import identity, paths
from mfotel._internal.ipc import AgentClient, socket_dir
from mfotel.traces._ids import attempt_span_id, root_context
from mfotel.traces._propagation import (
    SpanContext,
    extract,
    inject,
    new_span_id,
    parse_propagators,
    propagators_warning,
)

F = TypeVar("F", bound=Callable[..., Any])

ENV_SOCKET = "MFOTEL_AGENT_SOCKET"
ENV_SPOOL = "MFOTEL_SPOOL_DIR"
ENV_LAUNCH = "MFOTEL_LAUNCH_NS"
ENV_RELAY = "MFOTEL_RELAY_SOCKET"
TEE_DRAIN_S = 2.0  # how long a container task waits for Metaflow's tee to write its last lines
AGENT_END_SLACK_S = 2.0  # ... and for its agent, beyond MFOTEL_SHUTDOWN_TIMEOUT_MS
# How long Metaflow's save_logs waits, beyond MFOTEL_SHUTDOWN_TIMEOUT_MS, for the agent of a
# killed container task to send what it has and hand the rest to the datastore.
HANDOFF_WAIT_S = 8.0
ENV_INERT = "MFOTEL_INERT"  # set by a runtime whose telemetry could not start
ENV_RUN_START = "MFOTEL_RUN_START"  # set in a deployment's steps: see remote.RUN_START
SPAN_KIND_INTERNAL = 1
SPAN_KIND_SERVER = 2
RUN_COMMANDS = ("cli/run", "cli/resume")


def warn(line: str) -> None:
    try:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def _propagators() -> tuple[str, ...]:
    return parse_propagators(os.environ.get("OTEL_PROPAGATORS"))


def _exception_info(exc: BaseException) -> dict[str, str]:
    import traceback

    return {
        "type": type(exc).__module__ + "." + type(exc).__qualname__
        if type(exc).__module__ not in ("builtins", "__main__")
        else type(exc).__qualname__,
        "message": str(exc),
        "stacktrace": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
    }


def _failed(exc: BaseException | None) -> bool:
    if exc is None:
        return False
    return not (isinstance(exc, SystemExit) and exc.code in (0, None))


class _Scope:
    """One process's telemetry context: who it is and where its messages go."""

    def __init__(self, client: AgentClient, context: SpanContext, ctx: dict[str, Any]) -> None:
        self.client = client
        self.context = context
        self.ctx = ctx
        self.ctx_json = json.dumps(ctx, separators=(",", ":"), default=str).encode()

    def send(self, kind: str, body: dict[str, Any]) -> None:
        body["t"] = kind
        body["ctx"] = self.ctx
        self.client.send(body)

    def end_message(
        self,
        name: str,
        context: SpanContext,
        parent_span_id: bytes,
        start_ns: int,
        exc: BaseException | None,
        kind: int = SPAN_KIND_INTERNAL,
        attrs: Mapping[str, Any] | None = None,
        links: list[dict[str, str]] | None = None,
        tee: bool | None = None,
    ) -> dict[str, Any]:
        """The ``end`` message of a span, ending now, for ``client.send`` (now, or later by
        whoever holds it)."""
        body: dict[str, Any] = {
            "t": "end",
            "ctx": self.ctx,
            "sid": context.span_id.hex(),
            "psid": parent_span_id.hex(),
            "name": name,
            "kind": kind,
            "start_ns": start_ns,
            "end_ns": time.time_ns(),
            "sampled": context.sampled,
            "attrs": dict(attrs or {}),
        }
        if links:
            body["links"] = links
        if tee is not None:
            body["tee"] = tee
        if _failed(exc):
            assert exc is not None
            body["status"] = 2
            body["msg"] = str(exc) or type(exc).__name__
            body["exc"] = _exception_info(exc)
        return body


class _Run:
    """The runtime process of ``run`` or ``resume``: starts the agent, owns the root span."""

    agent: Any

    def __init__(self, command: str, obj: Any, kwargs: Mapping[str, Any]) -> None:
        self.command = command
        self.start_ns = time.time_ns()
        self.flow_name = str(getattr(getattr(obj, "flow", None), "name", "") or "")
        self.parent, self.baggage = extract(os.environ, _propagators())
        problem = propagators_warning(os.environ.get("OTEL_PROPAGATORS"))
        if problem:
            warn(f"mfotel: {problem}")
        # Every setting is checked before anything starts: a bad one must leave nothing behind.
        settings.check_all()
        self.mode = settings.tracing_mode()
        capture = settings.MFOTEL_CAPTURE_LOGS.get_bool()
        self.shutdown_s = settings.MFOTEL_SHUTDOWN_TIMEOUT_MS.get_int() / 1000.0
        self.state_dir, self.spool_dir = _state_and_spool_dirs(obj)
        self.socket_path = os.path.join(socket_dir(), f"{os.getpid()}-{os.urandom(4).hex()}.sock")
        self.agent = _start_agent(self.socket_path, self.spool_dir, self.state_dir, self.mode)
        self.relay_path: str | None = None
        if capture:
            from mfotel.logs import _relay

            relay_path = self.socket_path[: -len(".sock")] + ".relay"
            if _relay.start(relay_path, self.socket_path, self.spool_dir) is not None:
                self.relay_path = relay_path
        self.client = AgentClient(self.socket_path, self.spool_dir, "runtime")
        self.tags = identity.clean_tags(kwargs.get("tags") or (), warn)
        sys_tags = getattr(getattr(obj, "metadata", None), "sticky_sys_tags", None) or ()
        self.tags += [t for t in identity.clean_tags(sorted(sys_tags)) if t not in self.tags]
        self.tags += [t for t in identity.extra_tags(os.environ, warn) if t not in self.tags]
        self.origin_run_id = self._origin(obj, kwargs) if command == "cli/resume" else None
        self.run_id: str | None = None
        self.scope: _Scope | None = None
        self.pending_events: list[dict[str, Any]] = []

    @staticmethod
    def _origin(obj: Any, kwargs: Mapping[str, Any]) -> str | None:
        origin = kwargs.get("origin_run_id")
        if origin:
            return str(origin)
        try:
            from metaflow.util import get_latest_run_id

            latest = get_latest_run_id(lambda *a, **k: None, obj.flow.name)
            return str(latest) if latest else None
        except Exception:
            return None

    def started(self, run_id: str | None) -> _Scope | None:
        if self.scope is None and run_id:
            self.run_id = str(run_id)
            context = root_context(self.flow_name, self.run_id, self.parent)
            user = os.environ.get("METAFLOW_USER") or _username()
            resource = identity.resource_attributes(
                self.flow_name, self.run_id, user, self.tags, os.environ
            )
            ctx = {"tid": context.trace_id.hex(), "sid": context.span_id.hex(), "res": resource}
            self.scope = _Scope(self.client, context, ctx)
            from mfotel.logs._ledger import note_run_trace

            note_run_trace(
                paths.delivered_dir(self.state_dir), self.flow_name, self.run_id, context.trace_id
            )
            self.scope.send(
                "start",
                {
                    "sid": context.span_id.hex(),
                    "name": f"RUN {self.flow_name}",
                    "kind": SPAN_KIND_SERVER,
                    "start_ns": self.start_ns,
                    "root": True,
                },
            )
            for event in self.pending_events:
                self.scope.send("event", event)
            self.pending_events.clear()
        return self.scope

    def inject(self, env: MutableMapping[str, str]) -> None:
        scope = self.started(env.get("METAFLOW_RUN_ID") or _current_run_id())
        if scope is not None:
            inject(scope.context, self.baggage, _propagators(), env)
        env[ENV_SOCKET] = self.socket_path
        env[ENV_SPOOL] = self.spool_dir
        if self.relay_path:
            env[ENV_RELAY] = self.relay_path
        env[ENV_LAUNCH] = str(time.time_ns())

    def event(self, body: dict[str, Any]) -> None:
        scope = self.started(_current_run_id())
        if scope is None:
            self.pending_events.append(body)
        else:
            scope.send("event", body)

    def finish(self, exc: BaseException | None) -> None:
        scope = self.started(_current_run_id() or self.run_id)
        if scope is None:
            # The run never got an id (it failed before starting); it still gets a span.
            scope = self.started(f"unstarted-{os.getpid()}-{self.start_ns}")
        assert scope is not None
        if exc is None or not _failed(exc):
            result = "success"
        elif isinstance(exc, KeyboardInterrupt):
            result = "cancellation"
        elif type(exc).__name__ == "TaskFailed":
            result = "failure"
        else:
            result = "error"
        links = []
        if self.origin_run_id:
            origin = root_context(self.flow_name, self.origin_run_id)
            links.append(
                {
                    "tid": origin.trace_id.hex(),
                    "sid": origin.span_id.hex(),
                    "metaflow.run.id": self.origin_run_id,
                }
            )
        scope.client.send(
            scope.end_message(
                f"RUN {self.flow_name}",
                scope.context,
                self.parent.span_id if self.parent else b"",
                self.start_ns,
                exc,
                kind=SPAN_KIND_SERVER,
                attrs={"cicd.pipeline.result": result, "metaflow.command": self.command[4:]},
                links=links,
            )
        )
        scope.send("run_end", {})
        self.client.close(timeout_s=1.0)
        timeout = self.shutdown_s + 1.0
        state = _wait_for_agent(self.agent, timeout) if self.agent is not None else "done"
        if state == "sending":
            warn(
                "mfotel: the exporter is still sending; it goes on in the background "
                f"(pid {self.agent.pid}) and spools what it cannot send"
            )
        elif state == "died":
            code = self.agent.wait()
            warn(
                f"mfotel: the exporter stopped during the run (exit code {code}); what it had "
                f"not sent yet is lost, the rest is in {self.spool_dir}: run `mfotel replay`"
            )


class _Task:
    """A task process (one attempt) or a fork of one."""

    def __init__(self, obj: Any, kwargs: Mapping[str, Any]) -> None:
        self.start_ns = int(os.environ.get(ENV_LAUNCH) or time.time_ns())
        flow_name = str(getattr(getattr(obj, "flow", None), "name", "") or "")
        run_id = str(kwargs.get("run_id"))
        step_name = str(kwargs.get("step_name"))
        task_id = str(kwargs.get("task_id"))
        attempt = int(kwargs.get("retry_count") or 0)
        parent, self.baggage = extract(os.environ, _propagators())
        if parent is None:
            # Launched by a scheduler that knows nothing of us: join the run's derived trace.
            parent = root_context(flow_name, run_id)
        self.parent_span_id = parent.span_id
        self.flow_name, self.run_id = flow_name, run_id
        self.attempt = attempt
        self.pathspec = f"{flow_name}/{run_id}/{step_name}/{task_id}"

        # Derived, so that a later backfill of this attempt's persisted log joins this span.
        span_id = attempt_span_id(
            parent.trace_id, f"{flow_name}/{run_id}/{step_name}/{task_id}", attempt
        )
        self.context = SpanContext(parent.trace_id, span_id, parent.sampled, parent.trace_state)
        tags = identity.clean_tags(kwargs.get("opt_tag") or (), warn)
        sys_tags = getattr(getattr(obj, "metadata", None), "sticky_sys_tags", None) or ()
        tags += [t for t in identity.clean_tags(sorted(sys_tags)) if t not in tags]
        tags += [t for t in identity.extra_tags(os.environ) if t not in tags]
        user = os.environ.get("METAFLOW_USER") or _username()
        resource = identity.resource_attributes(flow_name, run_id, user, tags, os.environ)
        attrs = identity.task_attributes(flow_name, run_id, step_name, task_id, attempt)
        clone_of = kwargs.get("clone_only")
        if clone_of:
            attrs["metaflow.task.clone_of"] = str(clone_of)
        self.name = step_name
        self.socket_path = os.environ.get(ENV_SOCKET) or None
        self.spool_dir = os.environ.get(ENV_SPOOL) or None
        self.agent: Any = None
        self.owns_agent = self.socket_path is None  # no runtime: this attempt has its own
        self.debug = False
        self.in_container = _metaflow_captures(os.environ)
        self.storage: Any = None
        # A deployment's step (Argo Workflows, Step Functions, Airflow): no runtime process
        # owns the run, so its tasks make the run's root span (see _root_end).
        self.run_start = os.environ.get(ENV_RUN_START) if self.socket_path is None else None
        self.final_attempt = self.run_start is not None and attempt >= _retries(
            obj, step_name, kwargs
        )
        role = "task"
        if self.socket_path is None:
            # No runtime launched this task (a Batch or Kubernetes container, a scheduler's
            # worker): the attempt gets an agent of its own, which ends with it. (A runtime's
            # agent that died leaves its tasks spooling instead, as the run says.)
            settings.check_all()
            from mfotel._internal.remote import apply_remote_endpoint

            problem = apply_remote_endpoint(os.environ)
            if problem:
                warn(f"mfotel: {problem}")
                os.environ["MFOTEL_WARNED"] = "1"  # the agent's spooling says no more
            self.shutdown_s = settings.MFOTEL_SHUTDOWN_TIMEOUT_MS.get_int() / 1000.0
            self.state_dir, self.spool_dir = _state_and_spool_dirs(obj)
            self.socket_path = os.path.join(
                socket_dir(), f"{os.getpid()}-{os.urandom(4).hex()}.sock"
            )
            began = time.monotonic()
            self.agent = _start_agent(
                self.socket_path,
                self.spool_dir,
                self.state_dir,
                settings.tracing_mode(),
                hold=(self.pathspec, attempt),
            )
            self.debug = settings.MFOTEL_DEBUG.get_bool()
            if self.debug:
                warn(f"mfotel debug: the attempt's agent started in {_ms(began)} ms")
            role = "runtime"  # the agent's owner: it stops once this process says it is done
        client = AgentClient(self.socket_path, self.spool_dir, role)
        ctx_body = {
            "tid": self.context.trace_id.hex(),
            "sid": self.context.span_id.hex(),
            "res": resource,
            "attrs": attrs,
        }
        self.scope = _Scope(client, self.context, ctx_body)
        start: dict[str, Any] = {
            "sid": self.context.span_id.hex(),
            "psid": self.parent_span_id.hex(),
            "name": step_name,
            "kind": SPAN_KIND_INTERNAL,
            "start_ns": self.start_ns,
        }
        flow_datastore = getattr(obj, "flow_datastore", None)
        datastore_type = getattr(flow_datastore, "TYPE", None)
        if flow_datastore is not None and isinstance(datastore_type, str):
            # Local: the agent reads this attempt's persisted log back when it ends. Any: where
            # an agent whose task was killed puts what the container would lose.
            start["ds"] = [datastore_type, str(flow_datastore.datastore_root)]
            if datastore_type != "local" and self.owns_agent:
                self.storage = getattr(flow_datastore, "_storage_impl", None)
        if self.in_container and settings.MFOTEL_CAPTURE_LOGS.get_bool():
            # In a container, Metaflow's tee writes these; the agent follows them.
            start["mflog"] = [os.environ["MFLOG_STDOUT"], os.environ["MFLOG_STDERR"]]
        if self.agent is not None:
            start["owns_agent"] = True  # the agent serves this attempt alone, and ends with it
        if self.run_start is not None and self.final_attempt and self.agent is not None:
            # If this attempt is killed, the run ends with it: the agent ends the root span.
            start["root_if_killed"] = self._root_end(failed=True)
        if self.owns_agent:
            from mfotel.logs._ledger import note_run_trace

            note_run_trace(
                paths.delivered_dir(self.state_dir), flow_name, run_id, self.context.trace_id
            )
        self.scope.send("start", start)
        self.current = self.context
        inject(self.context, self.baggage, _propagators(), os.environ)
        _join_user_opentelemetry(self.context)
        self.captured = False
        # In a Batch or Kubernetes container Metaflow's own bash capture (MFLOG_STDOUT/ERR)
        # already tees both streams into the task's persisted logs and passes the plain lines
        # to the container's output; a tee of ours in front of it would put our mflog headers
        # into both. There the lines stay Metaflow's, for `mfotel backfill` / `tail --export`.
        if settings.MFOTEL_CAPTURE_LOGS.get_bool() and not self.in_container:
            from mfotel.logs import _tee

            self.captured = _tee.start(
                self.socket_path, self.spool_dir, self.scope.ctx_json, os.environ.get(ENV_RELAY)
            )

    def finish(self, exc: BaseException | None) -> None:
        result = "failure" if _failed(exc) else "success"
        self.scope.client.send(
            self.scope.end_message(
                self.name,
                self.context,
                self.parent_span_id,
                self.start_ns,
                exc,
                attrs={"cicd.pipeline.task.run.result": result},
                tee=self.captured,
            )
        )
        if self.agent is None:
            self.scope.client.close(timeout_s=1.0)
            if self.storage is not None:
                self._hand_off()  # what the client had to put in the inbox, for replay
            return
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()  # what the task printed last, on its way to Metaflow's tee
            except (OSError, ValueError):
                pass
        if self.in_container:
            _await_metaflow_tee(os.environ, TEE_DRAIN_S)
        if self.run_start is not None and (
            (self.name == "end" and not _failed(exc)) or (_failed(exc) and self.final_attempt)
        ):
            self.scope.client.send(self._root_end(_failed(exc)))
        self.scope.send("run_end", {})
        self.scope.client.close(timeout_s=1.0)
        began = time.monotonic()
        state = _wait_for_agent(self.agent, self.shutdown_s + AGENT_END_SLACK_S)
        if self.debug:
            warn(f"mfotel debug: the attempt's end waited {_ms(began)} ms for its agent ({state})")
        if state == "sending":
            warn(
                "mfotel: the exporter is still sending this task's telemetry; it goes on in "
                f"the background (pid {self.agent.pid}) and spools what it cannot send"
            )
        elif state == "died":
            warn(
                f"mfotel: the exporter stopped during the task (exit code {self.agent.wait()}); "
                f"what it had not sent yet is lost, the rest is in {self.spool_dir}"
            )
        if self.storage is not None and state != "sending":
            self._hand_off()

    def _root_end(self, failed: bool) -> dict[str, Any]:
        """The ``end`` message of the run's root span, made by the task that ends the run: the
        ``end`` step, or an attempt that fails with no retry left. Its ids derive from the
        run, as every task's parent does; it starts when the scheduler says the run started."""
        assert self.run_start is not None
        root = root_context(self.flow_name, self.run_id)
        ctx = {"tid": root.trace_id.hex(), "sid": root.span_id.hex(), "res": self.scope.ctx["res"]}
        body = _Scope(self.scope.client, root, ctx).end_message(
            f"RUN {self.flow_name}",
            root,
            b"",
            _parse_time(self.run_start) or self.start_ns,
            None,
            kind=SPAN_KIND_SERVER,
            attrs={
                "cicd.pipeline.result": "failure" if failed else "success",
                "metaflow.run.ended_by": self.pathspec,
            },
        )
        if failed:
            body["status"] = 2
            body["msg"] = f"{self.pathspec} failed"
        return body

    def _hand_off(self) -> None:
        """What the container would lose (spool, ledger) goes to the datastore."""
        from mfotel._internal.handoff import hand_off

        assert self.spool_dir is not None
        try:
            owners = {os.getpid()} | ({self.agent.pid} if self.agent is not None else set())
            hand_off(
                self.storage, self.state_dir, self.spool_dir, self.pathspec, self.attempt, owners
            )
        except Exception as exc:
            warn(
                f"mfotel: could not put this task's unsent telemetry into the datastore ({exc}); "
                f"it stays in {self.spool_dir}"
            )

    @contextlib.contextmanager
    def child_span(self, name: str, attrs: Mapping[str, Any] | None = None) -> Iterator[None]:
        parent = self.current
        context = SpanContext(parent.trace_id, new_span_id(), parent.sampled, parent.trace_state)
        self.current = context
        start_ns = time.time_ns()
        error: BaseException | None = None
        try:
            yield
        except BaseException as exc:
            error = exc
            raise
        finally:
            self.current = parent
            end = self.scope.end_message(
                name, context, parent.span_id, start_ns, error, attrs=attrs
            )
            self.scope.client.send(end)


_TIME = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:?\d\d)?$"
)


def _retries(obj: Any, step_name: str, kwargs: Mapping[str, Any]) -> int:
    """How many retries this step has in all: the user code's, and the error retries of its
    decorators (``@catch``'s fallback attempt), as Metaflow's runtime counts them."""
    retries = int(kwargs.get("max_user_code_retries") or 0)
    try:
        step = getattr(obj.flow, step_name)
        retries += max([int(d.step_task_retry_count()[1] or 0) for d in step.decorators] or [0])
    except Exception:
        pass
    return retries


def _ms(since: float) -> int:
    return round((time.monotonic() - since) * 1000)


def _parse_time(text: str) -> int | None:
    """An RFC 3339 / ISO 8601 time (Argo, Step Functions, Airflow) in ns; None if it is not."""
    match = _TIME.match(text.strip())
    if match is None:
        return None
    import calendar

    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    try:
        seconds = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
    except (ValueError, OverflowError):
        return None
    fraction = int((match.group(7) or "0").ljust(9, "0"))
    zone = match.group(8) or "Z"
    if zone != "Z":
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        seconds -= sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60)
    return seconds * 1_000_000_000 + fraction


def _metaflow_captures(environ: Mapping[str, str]) -> bool:
    """Whether Metaflow's remote log capture (``mflog.bash_capture_logs``) runs this task."""
    return bool(environ.get("MFLOG_STDOUT") and environ.get("MFLOG_STDERR"))


def _join_user_opentelemetry(context: SpanContext) -> None:
    """If the flow uses OpenTelemetry itself, make the attempt span its current parent.

    Only when the flow already imported it: importing OpenTelemetry here would cost every task
    the SDK's import time for nothing. Subprocesses join through ``TRACEPARENT`` instead.
    """
    if "opentelemetry.trace" not in sys.modules:
        return
    try:
        from opentelemetry import context as otel_context
        from opentelemetry import trace as otel_trace

        state = (
            otel_trace.TraceState.from_header([context.trace_state])
            if context.trace_state
            else None
        )
        remote = otel_trace.SpanContext(
            trace_id=int.from_bytes(context.trace_id, "big"),
            span_id=int.from_bytes(context.span_id, "big"),
            is_remote=True,
            trace_flags=otel_trace.TraceFlags(1 if context.sampled else 0),
            trace_state=state,
        )
        otel_context.attach(otel_trace.set_span_in_context(otel_trace.NonRecordingSpan(remote)))
    except Exception:
        pass


_run: _Run | None = None
_task: _Task | None = None


def _click_obj() -> Any:
    """Metaflow's state object: the commands get it from click, below our wrapper."""
    from metaflow._vendor import click

    context = click.get_current_context(silent=True)
    return getattr(context, "obj", None)


def _username() -> str | None:
    try:
        from metaflow.util import get_username

        name = get_username()
        return str(name) if name else None
    except Exception:
        return None


def _current_run_id() -> str | None:
    module = sys.modules.get("metaflow.metaflow_current")
    current = getattr(module, "current", None)
    try:
        run_id = getattr(current, "run_id", None)
    except Exception:
        return None
    return str(run_id) if run_id else None


def _state_and_spool_dirs(obj: Any) -> tuple[str, str]:
    impl = getattr(obj, "datastore_impl", None)
    local_root = (
        getattr(impl, "datastore_root", None) if getattr(impl, "TYPE", None) == "local" else None
    )
    return paths.state_dir(os.environ, local_root), paths.spool_dir(os.environ, local_root)


def _wait_for_agent(agent: Any, timeout: float) -> str:
    """``done``, ``sending`` or ``died``: wait for the agent's byte saying it has sent (or
    spooled) everything. Waiting for the byte, not the process, spares the run the agent's
    own teardown; end of file without the byte means the agent died."""
    import select

    reader = agent.stdout
    if reader is None:
        return "done"
    try:
        ready, _, _ = select.select([reader], [], [], timeout)
        if not ready:
            return "sending"
        return "done" if os.read(reader.fileno(), 1) else "died"
    except (OSError, ValueError):
        return "done"


def _unread(fd: int) -> int:
    """Bytes waiting in the pipe behind ``fd`` (0 when it is not a pipe, or on any error)."""
    try:
        import fcntl
        import struct
        import termios

        return int(struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0])
    except (OSError, ValueError, ImportError):
        return 0


def _await_metaflow_tee(environ: Mapping[str, str], timeout: float) -> None:
    """Until Metaflow's tee (which may still be starting) has taken what the task wrote to fds
    1 and 2 and put it in ``$MFLOG_STDOUT`` / ``$MFLOG_STDERR``, for the agent to read back."""
    deadline = time.monotonic() + timeout
    while (_unread(1) or _unread(2)) and time.monotonic() < deadline:
        time.sleep(0.005)
    paths = (environ["MFLOG_STDOUT"], environ["MFLOG_STDERR"])
    last: tuple[int, ...] = ()
    while time.monotonic() < deadline:
        try:
            sizes = tuple(os.path.getsize(path) for path in paths)
        except OSError:
            sizes = ()
        if sizes and sizes == last:
            return
        last = sizes
        time.sleep(0.02)


def _await_attempt_agent(environ: Mapping[str, str]) -> None:
    """In a Batch or Kubernetes container, Metaflow's ``save_logs`` runs once the task has
    exited, and the container ends right after it, taking every process with it. An agent
    whose task was killed, or stopped waiting for it, is then still sending and has yet to
    hand the attempt's ledger and spool to the datastore: give it that time (bounded), so
    that a backfill later sends only what did not arrive, and nothing is left on a disk that
    is about to go. Returns at once when no agent holds the attempt. Never raises."""
    try:
        pathspec, attempt = environ.get("MF_PATHSPEC"), environ.get("MF_ATTEMPT")
        if not pathspec or not attempt or not attempt.isdigit():
            return
        from mfotel._internal.ipc import await_attempt

        limit = settings.MFOTEL_SHUTDOWN_TIMEOUT_MS.get_int() / 1000.0 + HANDOFF_WAIT_S
        waited = await_attempt(pathspec, int(attempt), limit)
        if waited >= limit:
            warn(
                f"mfotel: the exporter of {pathspec} (attempt {attempt}) was still busy after "
                f"{waited:.0f} s; the container ends without what it had not handed off"
            )
        elif waited > 0 and settings.MFOTEL_DEBUG.get_bool():
            warn(f"mfotel debug: save_logs waited {waited * 1000:.0f} ms for the attempt's agent")
    except Exception:  # Metaflow's own logs come first
        pass


def _start_agent(
    socket_path: str,
    spool_dir: str,
    state_dir: str,
    mode: str,
    hold: tuple[str, int] | None = None,
) -> Any:
    """Start the agent on a socket this process binds, so that it can connect and send at
    once: what it sends waits in the socket while the agent's interpreter starts. With
    ``hold`` (an attempt's pathspec and number), the agent also holds that attempt's lock
    until it has handed everything off, which Metaflow's ``save_logs`` waits for (see
    :func:`_await_attempt_agent`)."""
    import subprocess

    from mfotel._internal.ipc import hold_attempt, listen
    from mfotel._internal.proc import boot_command

    listener = None
    held = hold_attempt(*hold) if hold is not None else None
    try:
        os.makedirs(os.path.dirname(socket_path), mode=0o700, exist_ok=True)
        listener = listen(socket_path)
        fds = (listener.fileno(),) if held is None else (listener.fileno(), held)
        extra = [] if held is None else ["--hold-fd", str(held)]
        return subprocess.Popen(
            [
                *boot_command("mfotel._internal.agent.__main__", isolated=False),
                "--socket",
                socket_path,
                "--spool-dir",
                spool_dir,
                "--state-dir",
                state_dir,
                "--parent-pid",
                str(os.getpid()),
                "--listen-fd",
                str(listener.fileno()),
                "--mode",
                mode,
                *extra,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            start_new_session=True,
            pass_fds=fds,
        )
    except OSError as exc:
        warn(f"mfotel: could not start the exporter ({exc}); telemetry is spooled to {spool_dir}")
        return None
    finally:
        if listener is not None:
            listener.close()  # the agent has its own copy
        if held is not None:
            os.close(held)  # ... and of this


# -- the metaflow.tracing interface ------------------------------------------------------


def init_tracing() -> None:
    """Nothing to do: each process sets itself up in :func:`cli`."""


def cli(name: str) -> Callable[[F], F]:
    def wrap(func: F) -> F:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            global _run, _task
            if name in RUN_COMMANDS and _run is None:
                try:
                    _run = _Run(name, _click_obj(), kwargs)
                except Exception as exc:  # telemetry must never stop the run
                    warn(f"mfotel: telemetry is off for this run: {exc}")
                    # Tasks inherit this environment: keep them inert, and quiet, too. (Not
                    # MF_TRACING=off: the runtime already names our plugins on task command
                    # lines, and tasks must still know them.)
                    os.environ[ENV_INERT] = "1"
                    return func(*args, **kwargs)
                state: _Run | _Task = _run
            elif name == "save_logs":
                _await_attempt_agent(os.environ)
                return func(*args, **kwargs)
            elif name == "cli/step" and _task is None and not os.environ.get(ENV_INERT):
                try:
                    _task = _Task(_click_obj(), kwargs)
                except Exception as exc:
                    warn(f"mfotel: telemetry is off for this task: {exc}")
                    return func(*args, **kwargs)
                state = _task
            else:
                return func(*args, **kwargs)
            error: BaseException | None = None
            try:
                return func(*args, **kwargs)
            except BaseException as exc:
                error = exc
                raise
            finally:
                try:
                    state.finish(error)
                except Exception as exc:
                    warn(f"mfotel: could not close telemetry cleanly: {exc}")

        return wrapper  # type: ignore[return-value]

    return wrap


@contextlib.contextmanager
def post_fork() -> Iterator[None]:
    """A ``parallel_map`` child: a span under the task that ends when the child exits.

    Metaflow ends these children with ``os._exit`` inside this block, so the span is
    announced at the start and the agent ends it when the child's connection closes.
    """
    if _task is None:
        yield
        return
    try:
        parent = _task.current
        context = SpanContext(parent.trace_id, new_span_id(), parent.sampled, parent.trace_state)
        _task.current = context
        _task.scope.send(
            "start",
            {
                "sid": context.span_id.hex(),
                "psid": parent.span_id.hex(),
                "name": "parallel_map",
                "kind": SPAN_KIND_INTERNAL,
                "start_ns": time.time_ns(),
                "sampled": context.sampled,
                "attrs": {"process.pid": os.getpid()},
                "eof_ends": True,
            },
        )
        inject(context, _task.baggage, _propagators(), os.environ)
    except Exception:
        pass
    yield


def inject_tracing_vars(env_dict: dict[str, str]) -> dict[str, str]:
    try:
        if _run is not None:
            _run.inject(env_dict)
        elif _task is not None:
            inject(_task.current, _task.baggage, _propagators(), env_dict)
        else:
            # A process that launches tasks elsewhere (`kubernetes step`, a deployer): the
            # remote task joins our trace and exports with the same settings.
            from mfotel._internal.remote import container_env

            for key, value in container_env(os.environ).items():
                env_dict.setdefault(key, value)
    except Exception as exc:
        warn(f"mfotel: could not pass the trace context on: {exc}")
    return env_dict


def get_trace_id() -> str:
    if _task is not None:
        return _task.current.trace_id.hex()
    if _run is not None and _run.scope is not None:
        return _run.scope.context.trace_id.hex()
    return ""


@contextlib.contextmanager
def traced(name: str, attrs: Mapping[str, Any] | None = None) -> Iterator[None]:
    if _task is None:
        yield
        return
    with _task.child_span(name, attrs):
        yield


def tracing(func: F) -> F:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with traced(func.__name__):
            return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


# -- used by the monitor and event-logger plugins ---------------------------------------


def emit_event(level: str, module: str, name: str, payload: Any) -> None:
    body = {
        "name": f"{module}.{name}" if module else name,
        "time_ns": time.time_ns(),
        "level": level,
        "payload": payload if isinstance(payload, dict) else {"msg": payload},
    }
    try:
        if _task is not None:
            _task.scope.send("event", body)
        elif _run is not None:
            _run.event(body)
    except Exception:
        pass


def log_event(payload: Any) -> None:
    """An event-logger payload (``{"level", "module", "name", "payload"}``) as a span event."""
    if isinstance(payload, dict):
        emit_event(
            str(payload.get("level", "info")),
            str(payload.get("module", "")),
            str(payload.get("name", "event")),
            payload.get("payload"),
        )
    else:
        emit_event("info", "", "event", payload)


def emit_metric(kind: str, name: str, value: float) -> None:
    body = {"kind": kind, "name": name, "value": value, "time_ns": time.time_ns()}
    try:
        if _task is not None:
            _task.scope.send("metric", body)
        elif _run is not None and _run.scope is not None:
            _run.scope.send("metric", body)
    except Exception:
        pass
