"""Trace context and baggage in environment variables: W3C Trace Context, W3C Baggage, B3."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, MutableMapping

import pytest
from opentelemetry import baggage as otel_baggage
from opentelemetry import trace as otel_trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.context import Context
from opentelemetry.propagators.b3 import B3MultiFormat, B3SingleFormat
from opentelemetry.propagators.textmap import Getter, TextMapPropagator
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from mfotel.traces._propagation import (
    DEFAULT_PROPAGATORS,
    MAX_BAGGAGE_BYTES,
    MAX_BAGGAGE_MEMBERS,
    SpanContext,
    env_name,
    extract,
    inject,
    new_span_id,
    new_trace_id,
    parse_propagators,
    parse_traceparent,
    propagators_warning,
    unknown_propagators,
    valid_baggage,
    valid_tracestate,
)

# The W3C Trace Context spec's example ids, and the ids its test suite uses.
SPEC_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPEC_SPAN = "00f067aa0ba902b7"
SUITE_TRACE = "12345678901234567890123456789012"
SUITE_SPAN = "1234567890123456"
SUITE = f"{SUITE_TRACE}-{SUITE_SPAN}"
# The B3 spec's example ids.
B3_TRACE = "80f198ee56343ba864fe8b2a57d3eff7"
B3_SPAN = "e457b5a2e4d86bd1"
B3_PARENT = "05e3ac9a4f6e3b90"

ALL = ("tracecontext", "baggage", "b3", "b3multi")


def ctx(
    trace: str = SPEC_TRACE, span: str = SPEC_SPAN, sampled: bool = True, state: str = ""
) -> SpanContext:
    return SpanContext(bytes.fromhex(trace), bytes.fromhex(span), sampled, state)


# -- traceparent -----------------------------------------------------------------------------

VALID_TRACEPARENTS = [
    # value, trace id, span id, sampled
    pytest.param(f"00-{SPEC_TRACE}-{SPEC_SPAN}-01", SPEC_TRACE, SPEC_SPAN, True, id="spec-sampled"),
    pytest.param(
        f"00-{SPEC_TRACE}-{SPEC_SPAN}-00", SPEC_TRACE, SPEC_SPAN, False, id="spec-unsampled"
    ),
    pytest.param(f"00-{SUITE}-01", SUITE_TRACE, SUITE_SPAN, True, id="suite"),
    pytest.param(f"00-{SUITE}-ff", SUITE_TRACE, SUITE_SPAN, True, id="all-flags"),
    pytest.param(f"00-{SUITE}-02", SUITE_TRACE, SUITE_SPAN, False, id="random-flag-only"),
    pytest.param(f"00-{SUITE}-03", SUITE_TRACE, SUITE_SPAN, True, id="random-and-sampled"),
    pytest.param(f"cc-{SUITE}-01", SUITE_TRACE, SUITE_SPAN, True, id="future-version"),
    pytest.param(f"01-{SUITE}-00", SUITE_TRACE, SUITE_SPAN, False, id="version-01"),
    pytest.param(
        f"cc-{SUITE}-01-what-the-future-will-be-like",
        SUITE_TRACE,
        SUITE_SPAN,
        True,
        id="future-extra",
    ),
    pytest.param(f"fe-{SUITE}-01-", SUITE_TRACE, SUITE_SPAN, True, id="future-empty-extra"),
    pytest.param(f" 00-{SUITE}-01", SUITE_TRACE, SUITE_SPAN, True, id="ows-leading-space"),
    pytest.param(f"\t00-{SUITE}-01", SUITE_TRACE, SUITE_SPAN, True, id="ows-leading-tab"),
    pytest.param(f"00-{SUITE}-01 ", SUITE_TRACE, SUITE_SPAN, True, id="ows-trailing-space"),
    pytest.param(f"00-{SUITE}-01\t", SUITE_TRACE, SUITE_SPAN, True, id="ows-trailing-tab"),
    pytest.param(f"\t 00-{SUITE}-01 \t", SUITE_TRACE, SUITE_SPAN, True, id="ows-both"),
    pytest.param(
        f"00-{'0' * 31}1-{'0' * 15}1-01", "0" * 31 + "1", "0" * 15 + "1", True, id="smallest-ids"
    ),
]

INVALID_TRACEPARENTS = [
    pytest.param("", id="empty"),
    pytest.param("   ", id="blank"),
    pytest.param(f"00-{SUITE}-01.", id="v00-trailing-char"),
    pytest.param(f"00-{SUITE}-01-what-the-future-will-be-like", id="v00-extra-field"),
    pytest.param(f"00-{SUITE}-01-", id="v00-trailing-dash"),
    pytest.param(f"cc-{SUITE}-01.what-the-future-will-be-like", id="future-no-dash"),
    pytest.param(f"cc-{SUITE}-1", id="future-too-short"),
    pytest.param(f"ff-{SUITE}-01", id="version-ff"),
    pytest.param(f".0-{SUITE}-01", id="version-illegal-1"),
    pytest.param(f"0.-{SUITE}-01", id="version-illegal-2"),
    pytest.param(f"000-{SUITE}-01", id="version-too-long-3"),
    pytest.param(f"0000-{SUITE}-01", id="version-too-long-4"),
    pytest.param(f"0-{SUITE}-01", id="version-too-short"),
    pytest.param(f"0A-{SUITE}-01", id="version-uppercase"),
    pytest.param(f"00-{'0' * 32}-{SUITE_SPAN}-01", id="trace-all-zero"),
    pytest.param(f"00-.{SUITE_TRACE[1:]}-{SUITE_SPAN}-01", id="trace-illegal-first"),
    pytest.param(f"00-{SUITE_TRACE[:-1]}.-{SUITE_SPAN}-01", id="trace-illegal-last"),
    pytest.param(f"00-{SUITE_TRACE}3-{SUITE_SPAN}-01", id="trace-too-long"),
    pytest.param(f"00-{SUITE_TRACE[:-1]}-{SUITE_SPAN}-01", id="trace-too-short"),
    pytest.param(f"00-{SPEC_TRACE.upper()}-{SPEC_SPAN}-01", id="trace-uppercase"),
    pytest.param(f"00-{SUITE_TRACE[:-1]}\u0666-{SUITE_SPAN}-01", id="trace-non-ascii-digit"),
    pytest.param(f"00-{SUITE_TRACE}-{'0' * 16}-01", id="span-all-zero"),
    pytest.param(f"00-{SUITE_TRACE}-.{SUITE_SPAN[1:]}-01", id="span-illegal-first"),
    pytest.param(f"00-{SUITE_TRACE}-{SUITE_SPAN[:-1]}.-01", id="span-illegal-last"),
    pytest.param(f"00-{SUITE_TRACE}-{SUITE_SPAN}7-01", id="span-too-long"),
    pytest.param(f"00-{SUITE_TRACE}-{SUITE_SPAN[:-1]}-01", id="span-too-short"),
    pytest.param(f"00-{SPEC_TRACE}-{SPEC_SPAN.upper()}-01", id="span-uppercase"),
    pytest.param(f"00-{SUITE}-.0", id="flags-illegal-1"),
    pytest.param(f"00-{SUITE}-0.", id="flags-illegal-2"),
    pytest.param(f"00-{SUITE}-001", id="flags-too-long"),
    pytest.param(f"00-{SUITE}-1", id="flags-too-short"),
    pytest.param(f"00-{SUITE}-0A", id="flags-uppercase"),
    pytest.param(f"00_{SUITE_TRACE}_{SUITE_SPAN}_01", id="wrong-separator"),
    pytest.param(f"00-{SUITE_TRACE}{SUITE_SPAN}-01-0", id="fields-shifted"),
    pytest.param(f"\n00-{SUITE}-01", id="newline-is-not-ows"),
]


@pytest.mark.parametrize(("value", "trace", "span", "sampled"), VALID_TRACEPARENTS)
def test_valid_traceparent_is_read(value: str, trace: str, span: str, sampled: bool) -> None:
    """A valid traceparent (spec examples, flags, future versions, OWS) gives ids and sampling."""
    assert parse_traceparent(value) == ctx(trace, span, sampled)


@pytest.mark.parametrize("value", INVALID_TRACEPARENTS)
def test_invalid_traceparent_is_rejected(value: str) -> None:
    """Each malformed traceparent of the W3C test suite, or with uppercase hex, gives no context."""
    assert parse_traceparent(value) is None
    assert extract({"TRACEPARENT": value}, ["tracecontext"]) == (None, "")


@pytest.mark.parametrize("value", [p.values[0] for p in VALID_TRACEPARENTS + INVALID_TRACEPARENTS])
def test_traceparent_validity_agrees_with_opentelemetry(value: str) -> None:
    """We and opentelemetry-python's TraceContext propagator accept the same traceparents."""
    theirs = _otel_context(TraceContextTextMapPropagator(), {"traceparent": value})
    ours = parse_traceparent(value)
    if value.startswith("\n"):
        # Python's \s accepts a newline around the value; HTTP OWS is only space and tab.
        assert ours is None
        return
    assert (ours is not None) == theirs.is_valid
    if ours is not None:
        assert (ours.trace_id.hex(), ours.span_id.hex()) == _otel_ids(theirs)
        assert ours.sampled == theirs.trace_flags.sampled


def test_traceparent_property_writes_version_00() -> None:
    """SpanContext.traceparent is version 00 with lowercase hex and only the sampled flag."""
    assert ctx().traceparent == f"00-{SPEC_TRACE}-{SPEC_SPAN}-01"
    assert ctx(sampled=False).traceparent == f"00-{SPEC_TRACE}-{SPEC_SPAN}-00"
    assert parse_traceparent(f"cc-{SUITE}-ff-x") == ctx(SUITE_TRACE, SUITE_SPAN)
    assert ctx(SUITE_TRACE, SUITE_SPAN).traceparent == f"00-{SUITE}-01"


@pytest.mark.parametrize(
    ("trace_id", "span_id"),
    [
        pytest.param(bytes(16), b"\x01" * 8, id="zero-trace"),
        pytest.param(b"\x01" * 16, bytes(8), id="zero-span"),
        pytest.param(b"\x01" * 8, b"\x01" * 8, id="short-trace"),
        pytest.param(b"\x01" * 16, b"\x01" * 16, id="long-span"),
    ],
)
def test_span_context_refuses_invalid_ids(trace_id: bytes, span_id: bytes) -> None:
    """A SpanContext refuses all-zero or wrongly sized ids, so its traceparent is always valid."""
    with pytest.raises(ValueError):
        SpanContext(trace_id, span_id)


def test_span_context_is_frozen_and_hashable() -> None:
    """SpanContext is an immutable value: equal contexts are equal and hash alike."""
    context = ctx()
    with pytest.raises(AttributeError):
        context.sampled = False  # type: ignore[misc]
    assert {context, ctx()} == {context}


def test_new_ids_are_random_and_sized() -> None:
    """new_trace_id gives 16 bytes and new_span_id 8 bytes, different every call."""
    traces = {new_trace_id() for _ in range(100)}
    spans = {new_span_id() for _ in range(100)}
    assert len(traces) == 100 and all(len(t) == 16 for t in traces)
    assert len(spans) == 100 and all(len(s) == 8 for s in spans)


def test_new_ids_are_never_all_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    """An all-zero draw from os.urandom is thrown away and drawn again."""
    draws: Iterator[bytes] = iter([bytes(16), b"\x07" * 16, bytes(8), b"\x09" * 8])
    monkeypatch.setattr(os, "urandom", lambda n: next(draws))
    assert new_trace_id() == b"\x07" * 16
    assert new_span_id() == b"\x09" * 8


# -- tracestate ------------------------------------------------------------------------------

_TS_KEY = "abcdefghijklmnopqrstuvwxyz0123456789_-*/"
_TS_VALUE = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) not in ",=")

VALID_TRACESTATES = [
    # value, what is passed on
    pytest.param(
        "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE",
        "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE",
        id="spec-example",
    ),
    pytest.param("foo=1", "foo=1", id="single"),
    pytest.param(" \tfoo=1 \t", "foo=1", id="outer-ows-trimmed"),
    pytest.param(
        "foo=1 \t , \t bar=2, \t baz=3", "foo=1 \t , \t bar=2, \t baz=3", id="inner-ows-verbatim"
    ),
    pytest.param("foo=1,,bar=2", "foo=1,,bar=2", id="empty-member"),
    pytest.param("fw529a3039@dt=FWsFZnQ0ZWM", "fw529a3039@dt=FWsFZnQ0ZWM", id="multi-tenant"),
    pytest.param("1a@b=1", "1a@b=1", id="tenant-starts-with-digit"),
    pytest.param(f"{_TS_KEY}={_TS_VALUE}", f"{_TS_KEY}={_TS_VALUE}", id="all-allowed-characters"),
    pytest.param(
        f"{_TS_KEY}@a-z0-9_-*/={_TS_VALUE}",
        f"{_TS_KEY}@a-z0-9_-*/={_TS_VALUE}",
        id="all-allowed-vendor",
    ),
    pytest.param("z" * 256 + "=1", "z" * 256 + "=1", id="key-256"),
    pytest.param(
        "t" * 241 + "@" + "v" * 14 + "=1",
        "t" * 241 + "@" + "v" * 14 + "=1",
        id="tenant-241-system-14",
    ),
    pytest.param("a=" + "x" * 256, "a=" + "x" * 256, id="value-256"),
    pytest.param(
        ",".join(f"bar{i:02d}={i:02d}" for i in range(1, 33)),
        ",".join(f"bar{i:02d}={i:02d}" for i in range(1, 33)),
        id="32-members",
    ),
]

INVALID_TRACESTATES = [
    pytest.param("", id="empty"),
    pytest.param(" , ", id="only-separators"),
    pytest.param("foo=1,foo=1", id="duplicate-same"),
    pytest.param("foo=1,foo=2", id="duplicate-different"),
    pytest.param("foo =1", id="space-before-equals"),
    pytest.param("FOO=1", id="uppercase-key"),
    pytest.param("foo.bar=1", id="dot-in-key"),
    pytest.param("1foo=1", id="simple-key-starts-with-digit"),
    pytest.param("foo@=1,bar=2", id="empty-system"),
    pytest.param("@foo=1,bar=2", id="empty-tenant"),
    pytest.param("foo@@bar=1,bar=2", id="double-at"),
    pytest.param("foo@bar@baz=1,bar=2", id="two-ats"),
    pytest.param("foo@1bar=1", id="system-starts-with-digit"),
    pytest.param("z" * 257 + "=1", id="key-257"),
    pytest.param("t" * 242 + "@v=1", id="tenant-242"),
    pytest.param("t@" + "v" * 15 + "=1", id="system-15"),
    pytest.param("a=" + "x" * 257, id="value-257"),
    pytest.param("foo=bar=baz", id="equals-in-value"),
    pytest.param("foo=,bar=3", id="empty-value"),
    pytest.param("foo", id="no-equals"),
    pytest.param("foo=a\tb", id="tab-in-value"),
    pytest.param("foo=caf\u00e9", id="non-ascii-value"),
    pytest.param(",".join(f"bar{i:02d}={i:02d}" for i in range(1, 34)), id="33-members"),
]


@pytest.mark.parametrize(("value", "expected"), VALID_TRACESTATES)
def test_valid_tracestate_passes_through(value: str, expected: str) -> None:
    """A valid tracestate is carried verbatim (outer OWS trimmed) with the traceparent."""
    assert valid_tracestate(value) == expected
    context, _ = extract({"TRACEPARENT": f"00-{SUITE}-00", "TRACESTATE": value}, ["tracecontext"])
    assert context == ctx(SUITE_TRACE, SUITE_SPAN, False, expected)


@pytest.mark.parametrize("value", INVALID_TRACESTATES)
def test_invalid_tracestate_is_discarded_whole(value: str) -> None:
    """An invalid tracestate (bad member, duplicate key, 33 members) is dropped; context kept."""
    assert valid_tracestate(value) == ""
    context, _ = extract({"TRACEPARENT": f"00-{SUITE}-00", "TRACESTATE": value}, ["tracecontext"])
    assert context == ctx(SUITE_TRACE, SUITE_SPAN, False)


def test_tracestate_without_traceparent_is_ignored() -> None:
    """A tracestate with no valid traceparent gives no context at all."""
    assert extract({"TRACESTATE": "foo=1"}, ["tracecontext"]) == (None, "")
    assert extract({"TRACEPARENT": "junk", "TRACESTATE": "foo=1"}, ["tracecontext"]) == (None, "")


# -- lowercase traceparent (Metaflow's built-in tracing) -------------------------------------

OTHER = f"00-{SUITE}-01"
SPEC = f"00-{SPEC_TRACE}-{SPEC_SPAN}-01"


def test_lowercase_traceparent_is_read() -> None:
    """The lowercase traceparent/tracestate written by Metaflow's built-in tracing is read."""
    context, _ = extract({"traceparent": SPEC, "tracestate": "foo=1"}, ["tracecontext"])
    assert context == ctx(state="foo=1")


def test_uppercase_traceparent_wins_over_lowercase() -> None:
    """With two valid but different traceparents, TRACEPARENT and its own TRACESTATE win."""
    env = {"TRACEPARENT": SPEC, "TRACESTATE": "up=1", "traceparent": OTHER, "tracestate": "low=1"}
    assert extract(env, ["tracecontext"])[0] == ctx(state="up=1")


def test_lowercase_tracestate_does_not_join_a_different_uppercase_context() -> None:
    """A lowercase tracestate belongs to the lowercase traceparent, never to a different context."""
    env = {"TRACEPARENT": SPEC, "traceparent": OTHER, "tracestate": "low=1"}
    assert extract(env, ["tracecontext"])[0] == ctx()


def test_lowercase_tracestate_joins_the_same_context() -> None:
    """When both spellings carry one traceparent, a tracestate written only lowercase is used."""
    env = {"TRACEPARENT": SPEC, "traceparent": SPEC, "tracestate": "low=1"}
    assert extract(env, ["tracecontext"])[0] == ctx(state="low=1")


def test_invalid_uppercase_traceparent_falls_back_to_lowercase() -> None:
    """An invalid TRACEPARENT neither hides a valid lowercase one nor lends it its TRACESTATE."""
    env = {"TRACEPARENT": "junk", "TRACESTATE": "up=1", "traceparent": SPEC, "tracestate": "low=1"}
    assert extract(env, ["tracecontext"])[0] == ctx(state="low=1")


# -- B3 single -------------------------------------------------------------------------------

VALID_B3 = [
    # value, trace id, span id, sampled
    pytest.param(f"{B3_TRACE}-{B3_SPAN}-1-{B3_PARENT}", B3_TRACE, B3_SPAN, True, id="spec-128-bit"),
    pytest.param(f"{B3_TRACE}-{B3_SPAN}-1", B3_TRACE, B3_SPAN, True, id="accept"),
    pytest.param(f"{B3_TRACE}-{B3_SPAN}-0", B3_TRACE, B3_SPAN, False, id="deny"),
    pytest.param(f"{B3_TRACE}-{B3_SPAN}-d", B3_TRACE, B3_SPAN, True, id="debug"),
    pytest.param(f"{B3_TRACE}-{B3_SPAN}", B3_TRACE, B3_SPAN, True, id="defer"),
    pytest.param(
        f"{B3_SPAN}-{B3_PARENT}-1", "0" * 16 + B3_SPAN, B3_PARENT, True, id="64-bit-padded"
    ),
    pytest.param(
        f"{B3_TRACE.upper()}-{B3_SPAN.upper()}-0", B3_TRACE, B3_SPAN, False, id="uppercase-accepted"
    ),
    pytest.param(f" {B3_TRACE}-{B3_SPAN}-1 ", B3_TRACE, B3_SPAN, True, id="ows"),
]

INVALID_B3 = [
    pytest.param("0", id="lone-deny"),
    pytest.param("1", id="lone-accept"),
    pytest.param("d", id="lone-debug"),
    pytest.param("", id="empty"),
    pytest.param(f"{B3_TRACE}", id="trace-only"),
    pytest.param(f"{B3_TRACE}-{B3_SPAN}-x", id="bad-sampling"),
    pytest.param(f"{B3_TRACE}-{B3_SPAN}-", id="empty-sampling"),
    pytest.param(f"{B3_TRACE}-{B3_SPAN}-true", id="word-sampling"),
    pytest.param(f"{B3_TRACE}-{B3_SPAN}-1-{B3_PARENT}-x", id="five-fields"),
    pytest.param(f"{B3_TRACE}-{B3_SPAN}-1-xyz", id="bad-parent"),
    pytest.param(f"{'0' * 32}-{B3_SPAN}-1", id="zero-trace"),
    pytest.param(f"{'0' * 16}-{B3_SPAN}-1", id="zero-64-bit-trace"),
    pytest.param(f"{B3_TRACE}-{'0' * 16}-1", id="zero-span"),
    pytest.param(f"{B3_TRACE[:20]}-{B3_SPAN}-1", id="trace-20-chars"),
    pytest.param(f"{B3_TRACE}-{B3_SPAN[:15]}-1", id="span-15-chars"),
    pytest.param(f"{B3_TRACE[:-1]}g-{B3_SPAN}-1", id="trace-not-hex"),
]


@pytest.mark.parametrize(("value", "trace", "span", "sampled"), VALID_B3)
def test_valid_b3_single_is_read(value: str, trace: str, span: str, sampled: bool) -> None:
    """B3 gives 128-bit ids, pads 64-bit trace ids, and maps 1/d/absent to sampled and 0 to not."""
    assert extract({"B3": value}, ["b3"]) == (ctx(trace, span, sampled), "")


@pytest.mark.parametrize("value", INVALID_B3)
def test_invalid_b3_single_gives_no_context(value: str) -> None:
    """A lone sampling state (deny "0" included) or a malformed B3 value gives no context."""
    assert extract({"B3": value}, ["b3"]) == (None, "")


def test_lone_b3_deny_lets_the_next_propagator_decide() -> None:
    """B3="0" carries no ids, so the next configured propagator's context is used."""
    env = {"B3": "0", "TRACEPARENT": SPEC}
    assert extract(env, ["b3", "tracecontext"])[0] == ctx()


# -- B3 multi --------------------------------------------------------------------------------

VALID_B3_MULTI = [
    # environment, trace id, span id, sampled
    pytest.param({"X_B3_SAMPLED": "1"}, B3_TRACE, True, id="accept"),
    pytest.param({"X_B3_SAMPLED": "0"}, B3_TRACE, False, id="deny"),
    pytest.param({}, B3_TRACE, True, id="defer"),
    pytest.param({"X_B3_FLAGS": "1"}, B3_TRACE, True, id="debug"),
    pytest.param({"X_B3_FLAGS": "1", "X_B3_SAMPLED": "0"}, B3_TRACE, True, id="debug-beats-deny"),
    pytest.param({"X_B3_SAMPLED": "true"}, B3_TRACE, True, id="legacy-true"),
    pytest.param({"X_B3_SAMPLED": "false"}, B3_TRACE, False, id="legacy-false"),
    pytest.param({"X_B3_TRACEID": B3_SPAN}, "0" * 16 + B3_SPAN, True, id="64-bit-padded"),
    pytest.param({"X_B3_PARENTSPANID": B3_PARENT}, B3_TRACE, True, id="parent-ignored"),
]


@pytest.mark.parametrize(("extra", "trace", "sampled"), VALID_B3_MULTI)
def test_valid_b3_multi_is_read(extra: dict[str, str], trace: str, sampled: bool) -> None:
    """X_B3_* variables give the context; Flags=1 means sampled, Sampled=0/false means not."""
    env = {"X_B3_TRACEID": B3_TRACE, "X_B3_SPANID": B3_SPAN, **extra}
    assert extract(env, ["b3multi"]) == (ctx(trace, B3_SPAN, sampled), "")


@pytest.mark.parametrize(
    "env",
    [
        pytest.param({"X_B3_SAMPLED": "0"}, id="lone-deny"),
        pytest.param({"X_B3_TRACEID": B3_TRACE}, id="no-span"),
        pytest.param({"X_B3_SPANID": B3_SPAN}, id="no-trace"),
        pytest.param({"X_B3_TRACEID": "0" * 32, "X_B3_SPANID": B3_SPAN}, id="zero-trace"),
        pytest.param({"X_B3_TRACEID": B3_TRACE, "X_B3_SPANID": "xyz"}, id="bad-span"),
        pytest.param(
            {"x-b3-traceid": B3_TRACE, "x-b3-spanid": B3_SPAN}, id="header-names-not-env-names"
        ),
    ],
)
def test_invalid_b3_multi_gives_no_context(env: dict[str, str]) -> None:
    """Without a valid X_B3_TRACEID and X_B3_SPANID there is no context."""
    assert extract(env, ["b3multi"]) == (None, "")


# -- baggage ---------------------------------------------------------------------------------

VALID_BAGGAGE = [
    # value, what is passed on
    pytest.param(
        "userId=alice,serverNode=DF%2028,isProduction=false",
        "userId=alice,serverNode=DF%2028,isProduction=false",
        id="spec-example",
    ),
    pytest.param(
        "key1=value1;property1;property2, key2 = value2, key3=value3; propertyKey=propertyValue",
        "key1=value1;property1;property2,key2 = value2,key3=value3; propertyKey=propertyValue",
        id="spec-properties",
    ),
    pytest.param("a=", "a=", id="empty-value"),
    pytest.param("a=b=c", "a=b=c", id="equals-in-value"),
    pytest.param("!#$%&'*+-.^_`|~=1", "!#$%&'*+-.^_`|~=1", id="all-token-characters"),
    pytest.param(" \ta=1 \t", "a=1", id="outer-ows"),
]

PARTLY_VALID_BAGGAGE = [
    # value, what is passed on
    pytest.param("a=1,b c=2,d=3", "a=1,d=3", id="space-in-key"),
    pytest.param("a=1,b=x y,d=3", "a=1,d=3", id="space-in-value"),
    pytest.param('a=1,b="x",d=3', "a=1,d=3", id="quote-in-value"),
    pytest.param("a=1,b=x\\y,d=3", "a=1,d=3", id="backslash-in-value"),
    pytest.param("a=1,b(=2,d=3", "a=1,d=3", id="separator-in-key"),
    pytest.param("a=1,=2,d=3", "a=1,d=3", id="empty-key"),
    pytest.param("a=1,b,d=3", "a=1,d=3", id="no-equals"),
    pytest.param("a=1,,d=3", "a=1,d=3", id="empty-member"),
    pytest.param("a=1,b=caf\u00e9,d=3", "a=1,d=3", id="non-ascii"),
    pytest.param("a=1,b=2;p(=1,d=3", "a=1,d=3", id="bad-property-key"),
    pytest.param("a=1,b=2;p=x y,d=3", "a=1,d=3", id="bad-property-value"),
    pytest.param("a=1,b=2;,d=3", "a=1,d=3", id="empty-property"),
    pytest.param("b c=2", "", id="nothing-valid"),
]


@pytest.mark.parametrize(("value", "expected"), VALID_BAGGAGE)
def test_valid_baggage_passes_through(value: str, expected: str) -> None:
    """Valid W3C baggage (the spec's examples, properties, OWS) is passed on member for member."""
    assert valid_baggage(value) == expected
    assert extract({"BAGGAGE": value}, ["baggage"]) == (None, expected)


@pytest.mark.parametrize(("value", "expected"), PARTLY_VALID_BAGGAGE)
def test_invalid_baggage_members_are_dropped(value: str, expected: str) -> None:
    """An invalid baggage member is dropped on its own; the valid ones around it are kept."""
    assert valid_baggage(value) == expected


def test_baggage_is_capped_at_180_members() -> None:
    """Beyond 180 members the rest of the baggage is dropped whole, from the end."""
    members = [f"k{i}=v" for i in range(200)]
    assert valid_baggage(",".join(members)) == ",".join(members[:MAX_BAGGAGE_MEMBERS])


def test_baggage_is_capped_at_8192_bytes() -> None:
    """Baggage keeps the leading whole members that fit in 8192 bytes, never a partial member."""
    member = "k=" + "v" * 98  # 100 bytes, 101 with its comma
    result = valid_baggage(",".join([member] * 100))
    assert result == ",".join([member] * 81)  # 81 * 101 - 1 = 8180
    assert len(result) <= MAX_BAGGAGE_BYTES
    exact = "k=" + "v" * (MAX_BAGGAGE_BYTES - 2)
    assert valid_baggage(exact) == exact
    assert valid_baggage(exact + "v") == ""
    assert valid_baggage(f"a=1,{exact}") == "a=1"


def test_baggage_needs_the_baggage_propagator() -> None:
    """BAGGAGE is read only when baggage is a configured propagator."""
    assert extract({"BAGGAGE": "a=1"}, ["tracecontext"]) == (None, "")


def test_lowercase_baggage_is_read_when_uppercase_is_absent() -> None:
    """Lowercase baggage (Metaflow's built-in tracing) is read; BAGGAGE wins over it."""
    assert extract({"baggage": "a=1"}, ["baggage"]) == (None, "a=1")
    assert extract({"BAGGAGE": "b=2", "baggage": "a=1"}, ["baggage"]) == (None, "b=2")


# -- extract ---------------------------------------------------------------------------------


def test_first_valid_context_wins_in_configured_order() -> None:
    """Propagators are tried in the configured order and the first valid context is the parent."""
    env = {"TRACEPARENT": SPEC, "B3": f"{B3_TRACE}-{B3_SPAN}-1"}
    assert extract(env, ["tracecontext", "b3"])[0] == ctx()
    assert extract(env, ["b3", "tracecontext"])[0] == ctx(B3_TRACE, B3_SPAN)
    assert extract(
        {"TRACEPARENT": "junk", "B3": f"{B3_TRACE}-{B3_SPAN}-1"}, ["tracecontext", "b3"]
    )[0] == ctx(B3_TRACE, B3_SPAN)


def test_unconfigured_formats_are_not_read() -> None:
    """Only the configured propagators are read: no propagators, no context and no baggage."""
    env = {"TRACEPARENT": SPEC, "BAGGAGE": "a=1", "B3": f"{B3_TRACE}-{B3_SPAN}"}
    assert extract(env, []) == (None, "")
    assert extract(env, ["b3multi"]) == (None, "")


# -- inject ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["tracecontext", "b3", "b3multi"])
@pytest.mark.parametrize("sampled", [True, False])
def test_inject_extract_round_trip(name: str, sampled: bool) -> None:
    """What inject writes for a propagator, extract reads back as the same context."""
    env: dict[str, str] = {}
    state = "rojo=00f067aa0ba902b7" if name == "tracecontext" else ""
    context = SpanContext(new_trace_id(), new_span_id(), sampled, state)
    inject(context, "", [name], env)
    assert extract(env, [name]) == (context, "")


def test_inject_extract_round_trip_of_everything() -> None:
    """With every propagator configured, context and baggage survive inject then extract."""
    env: dict[str, str] = {}
    context = ctx(state="congo=t61rcWkgMzE")
    inject(context, "a=1,b=2;p", ALL, env)
    assert extract(env, ALL) == (context, "a=1,b=2;p")
    assert extract(env, ["tracecontext"])[0] == context
    assert extract(env, ["b3"])[0] == extract(env, ["b3multi"])[0] == ctx()  # B3 has no tracestate


def test_inject_tracecontext_writes_both_spellings_alike() -> None:
    """Both spellings of traceparent and tracestate get one value, replacing stale ones."""
    env = {"traceparent": OTHER, "tracestate": "old=1", "TRACESTATE": "old=2"}
    inject(ctx(state="new=1"), "", ["tracecontext"], env)
    assert env == {
        "TRACEPARENT": SPEC,
        "traceparent": SPEC,
        "TRACESTATE": "new=1",
        "tracestate": "new=1",
    }


def test_inject_removes_stale_tracestate_and_baggage() -> None:
    """A context without tracestate and empty baggage remove the old values in both spellings."""
    env = {"TRACESTATE": "old=1", "tracestate": "old=2", "BAGGAGE": "a=1", "baggage": "b=2"}
    inject(ctx(), "", ["tracecontext", "baggage"], env)
    assert env == {"TRACEPARENT": SPEC, "traceparent": SPEC}


def test_inject_b3multi_removes_contradicting_variables() -> None:
    """A stale X_B3_FLAGS=1 or X_B3_PARENTSPANID cannot survive an inject that denies sampling."""
    env = {"X_B3_FLAGS": "1", "X_B3_PARENTSPANID": B3_PARENT, "X_B3_SAMPLED": "1"}
    inject(ctx(sampled=False), "", ["b3multi"], env)
    assert env == {"X_B3_TRACEID": SPEC_TRACE, "X_B3_SPANID": SPEC_SPAN, "X_B3_SAMPLED": "0"}
    assert extract(env, ["b3multi"])[0] == ctx(sampled=False)


def test_inject_b3_single_writes_128_bit_ids_and_sampling() -> None:
    """B3 is written as {128-bit trace}-{span}-{1|0}, replacing a stale value."""
    env = {"B3": "0"}
    inject(ctx(sampled=False), "", ["b3"], env)
    assert env == {"B3": f"{SPEC_TRACE}-{SPEC_SPAN}-0"}


def test_inject_leaves_unconfigured_formats_alone() -> None:
    """Variables of formats that are not configured are neither written nor removed."""
    env = {"TRACEPARENT": OTHER, "BAGGAGE": "a=1", "X_B3_FLAGS": "1"}
    inject(ctx(), "b=2", ["b3"], env)
    assert env == {
        "TRACEPARENT": OTHER,
        "BAGGAGE": "a=1",
        "X_B3_FLAGS": "1",
        "B3": f"{SPEC_TRACE}-{SPEC_SPAN}-1",
    }
    before = dict(env)
    inject(ctx(), "b=2", [], env)
    assert env == before


class _CaseInsensitiveEnviron(MutableMapping[str, str]):
    """os.environ as Windows has it: one variable whatever the case of its name."""

    def __init__(self) -> None:
        self.data: dict[str, str] = {}

    def __getitem__(self, key: str) -> str:
        return self.data[key.upper()]

    def __setitem__(self, key: str, value: str) -> None:
        self.data[key.upper()] = value

    def __delitem__(self, key: str) -> None:
        del self.data[key.upper()]

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)


def test_inject_is_right_where_names_are_case_insensitive() -> None:
    """In a case-insensitive environment (Windows) inject leaves exactly the one context."""
    env = _CaseInsensitiveEnviron()
    env["tracestate"] = "old=1"
    inject(ctx(state="new=1"), "a=1", ["tracecontext", "baggage"], env)
    assert env.data == {"TRACEPARENT": SPEC, "TRACESTATE": "new=1", "BAGGAGE": "a=1"}
    inject(ctx(), "", ["tracecontext", "baggage"], env)
    assert env.data == {"TRACEPARENT": SPEC}
    assert extract(env, DEFAULT_PROPAGATORS) == (ctx(), "")


# -- OTEL_PROPAGATORS ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(None, ("tracecontext", "baggage"), id="unset"),
        pytest.param("", ("tracecontext", "baggage"), id="empty"),
        pytest.param(" , ", ("tracecontext", "baggage"), id="blank"),
        pytest.param("b3", ("b3",), id="b3"),
        pytest.param("b3multi,baggage", ("b3multi", "baggage"), id="order-kept"),
        pytest.param(" TraceContext , B3MULTI ", ("tracecontext", "b3multi"), id="case-and-spaces"),
        pytest.param("b3,b3,tracecontext", ("b3", "tracecontext"), id="duplicates"),
        pytest.param("none", (), id="none"),
        pytest.param("None", (), id="none-case"),
        pytest.param("b3,none", (), id="none-wins"),
        pytest.param("b3,xyz", ("b3",), id="unknown-skipped"),
        pytest.param("xyz", ("tracecontext", "baggage"), id="only-unknown-means-default"),
        pytest.param("jaeger,xray", ("tracecontext", "baggage"), id="unsupported-otel-names"),
    ],
)
def test_parse_propagators(value: str | None, expected: tuple[str, ...]) -> None:
    """OTEL_PROPAGATORS is a case-insensitive list; none disables; unknown names are skipped."""
    assert parse_propagators(value) == expected


def test_unknown_propagator_gives_one_warning_line() -> None:
    """One unknown name gives exactly the documented one-line warning."""
    assert unknown_propagators("tracecontext,xyz") == ("xyz",)
    assert propagators_warning("tracecontext,xyz") == (
        "OTEL_PROPAGATORS: unknown propagator 'xyz' ignored; "
        "use tracecontext, baggage, b3 or b3multi"
    )


def test_several_unknown_propagators_share_one_line() -> None:
    """Several unknown names, as written and without duplicates, are reported on one line."""
    assert unknown_propagators("Foo, b3, bar ,Foo") == ("Foo", "bar")
    warning = propagators_warning("Foo, b3, bar ,Foo")
    assert warning == (
        "OTEL_PROPAGATORS: unknown propagators 'Foo', 'bar' ignored; "
        "use tracecontext, baggage, b3 or b3multi"
    )


@pytest.mark.parametrize("value", [None, "", "none", "tracecontext,baggage,b3,b3multi", "B3"])
def test_no_warning_for_known_propagators(value: str | None) -> None:
    """Known names, none and an unset variable produce no warning."""
    assert propagators_warning(value) is None
    assert unknown_propagators(value) == ()


# -- env_name --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("X-B3-TraceId", "X_B3_TRACEID"),
        ("x-b3-parentspanid", "X_B3_PARENTSPANID"),
        ("traceparent", "TRACEPARENT"),
        ("b3", "B3"),
        ("my.vendor header", "MY_VENDOR_HEADER"),
        ("caf\u00e9-\u0131d", "CAF___D"),
        ("", ""),
    ],
)
def test_env_name(header: str, expected: str) -> None:
    """Header names become uppercase ASCII environment names with every other character as "_"."""
    assert env_name(header) == expected


# -- interoperability with opentelemetry-python ----------------------------------------------


class _EnvGetter(Getter[Mapping[str, str]]):
    """Lets an OpenTelemetry propagator read an environment: header name → env_name()."""

    def get(self, carrier: Mapping[str, str], key: str) -> list[str] | None:
        value = carrier.get(env_name(key))
        return None if value is None else [value]

    def keys(self, carrier: Mapping[str, str]) -> list[str]:
        return list(carrier)


def _otel_context(
    propagator: TextMapPropagator, headers: Mapping[str, str]
) -> otel_trace.SpanContext:
    return otel_trace.get_current_span(propagator.extract(headers)).get_span_context()


def _otel_ids(context: otel_trace.SpanContext) -> tuple[str, str]:
    return otel_trace.format_trace_id(context.trace_id), otel_trace.format_span_id(context.span_id)


def _otel_parent(context: SpanContext, state: list[tuple[str, str]] | None = None) -> Context:
    span_context = otel_trace.SpanContext(
        trace_id=int.from_bytes(context.trace_id, "big"),
        span_id=int.from_bytes(context.span_id, "big"),
        is_remote=False,
        trace_flags=otel_trace.TraceFlags(1 if context.sampled else 0),
        trace_state=otel_trace.TraceState(state or []),
    )
    return otel_trace.set_span_in_context(otel_trace.NonRecordingSpan(span_context))


def _their_env(propagator: TextMapPropagator, parent: Context) -> dict[str, str]:
    headers: dict[str, str] = {}
    propagator.inject(headers, context=parent)
    return {env_name(name): value for name, value in headers.items()}


INTEROP = [
    pytest.param(TraceContextTextMapPropagator(), "tracecontext", id="tracecontext"),
    pytest.param(B3SingleFormat(), "b3", id="b3"),
    pytest.param(B3MultiFormat(), "b3multi", id="b3multi"),
]


@pytest.mark.parametrize(("propagator", "name"), INTEROP)
@pytest.mark.parametrize("sampled", [True, False])
def test_we_read_what_opentelemetry_writes(
    propagator: TextMapPropagator, name: str, sampled: bool
) -> None:
    """A context opentelemetry-python injects (names env_name()d) extracts to the same context."""
    expected = SpanContext(new_trace_id(), new_span_id(), sampled)
    env = _their_env(propagator, _otel_parent(expected))
    assert extract(env, [name]) == (expected, "")


@pytest.mark.parametrize(("propagator", "name"), INTEROP)
@pytest.mark.parametrize("sampled", [True, False])
def test_opentelemetry_reads_what_we_write(
    propagator: TextMapPropagator, name: str, sampled: bool
) -> None:
    """A context we inject is extracted by opentelemetry-python with the same ids and sampling."""
    ours = SpanContext(new_trace_id(), new_span_id(), sampled)
    env: dict[str, str] = {}
    inject(ours, "", [name], env)
    theirs = otel_trace.get_current_span(
        propagator.extract(env, getter=_EnvGetter())
    ).get_span_context()
    assert theirs.is_valid
    assert _otel_ids(theirs) == (ours.trace_id.hex(), ours.span_id.hex())
    assert theirs.trace_flags.sampled == sampled


def test_opentelemetry_64_bit_b3_trace_id_is_padded_alike() -> None:
    """A 64-bit B3 trace id means the same 128-bit trace id to us and to opentelemetry-python."""
    headers = {"b3": f"{B3_SPAN}-{B3_PARENT}-1"}
    theirs = _otel_context(B3SingleFormat(), headers)
    ours, _ = extract({env_name(k): v for k, v in headers.items()}, ["b3"])
    assert ours is not None
    assert (ours.trace_id.hex(), ours.span_id.hex()) == _otel_ids(theirs)


def test_tracestate_interoperates_with_opentelemetry() -> None:
    """tracestate survives opentelemetry-python → us → opentelemetry-python unchanged."""
    entries = [("rojo", "00f067aa0ba902b7"), ("congo", "t61rcWkgMzE"), ("fw529a3039@dt", "x y")]
    parent = SpanContext(new_trace_id(), new_span_id())
    env = _their_env(TraceContextTextMapPropagator(), _otel_parent(parent, entries))
    ours, _ = extract(env, ["tracecontext"])
    assert ours is not None and ours.trace_state == env["TRACESTATE"]
    out: dict[str, str] = {}
    inject(ours, "", ["tracecontext"], out)
    theirs = otel_trace.get_current_span(
        TraceContextTextMapPropagator().extract(out, getter=_EnvGetter())
    ).get_span_context()
    assert list(theirs.trace_state.items()) == entries


def test_baggage_interoperates_with_opentelemetry() -> None:
    """opentelemetry-python's percent-encoded baggage passes through us and reads back the same."""
    entries = {"user.id": "alice", "note": "a b,c;d=e", "unicode": "caf\u00e9", "empty": ""}
    context: Context = Context()
    for key, value in entries.items():
        context = otel_baggage.set_baggage(key, value, context)
    headers: dict[str, str] = {}
    W3CBaggagePropagator().inject(headers, context=context)
    env = {env_name(k): v for k, v in headers.items()}
    _, baggage = extract(env, ["baggage"])
    assert baggage == env["BAGGAGE"]
    out: dict[str, str] = {}
    inject(ctx(), baggage, ["baggage"], out)
    back = W3CBaggagePropagator().extract(out, getter=_EnvGetter())
    assert dict(otel_baggage.get_all(back)) == entries
