"""The kit's in-memory telemetry model: what the agent assembles and the OTLP encoder writes.

Plain data, no behaviour. Ids are raw bytes (16 for a trace, 8 for a span); times are
nanoseconds since the Unix epoch. Attribute values follow OTLP's AnyValue: str, bool, int,
float, bytes, a list of those, or a nested mapping (kvlist).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Union

AttrValue = Union[
    str, bool, int, float, bytes, Sequence["AttrValue"], Mapping[str, "AttrValue"], None
]
Attributes = Mapping[str, AttrValue]

# OTLP enum values, as the protocol numbers them.
SPAN_KIND_INTERNAL = 1
SPAN_KIND_SERVER = 2
SPAN_KIND_CLIENT = 3
STATUS_UNSET = 0
STATUS_OK = 1
STATUS_ERROR = 2
TEMPORALITY_DELTA = 1
TEMPORALITY_CUMULATIVE = 2
SEVERITY_UNSPECIFIED = 0
SEVERITY_DEBUG = 5
SEVERITY_INFO = 9
SEVERITY_WARN = 13
SEVERITY_ERROR = 17
SEVERITY_FATAL = 21


@dataclass(frozen=True)
class Scope:
    name: str
    version: str = ""


@dataclass
class SpanEvent:
    name: str
    time_ns: int
    attributes: Attributes = field(default_factory=dict)


@dataclass
class SpanLink:
    trace_id: bytes
    span_id: bytes
    attributes: Attributes = field(default_factory=dict)
    trace_state: str = ""


@dataclass
class Span:
    trace_id: bytes
    span_id: bytes
    name: str
    start_ns: int
    end_ns: int
    parent_span_id: bytes = b""
    kind: int = SPAN_KIND_INTERNAL
    attributes: Attributes = field(default_factory=dict)
    events: list[SpanEvent] = field(default_factory=list)
    links: list[SpanLink] = field(default_factory=list)
    status_code: int = STATUS_UNSET
    status_message: str = ""
    trace_state: str = ""
    flags: int = 1  # W3C sampled


@dataclass
class LogRecord:
    time_ns: int
    observed_ns: int
    body: AttrValue
    severity_number: int = SEVERITY_UNSPECIFIED
    severity_text: str = ""
    attributes: Attributes = field(default_factory=dict)
    trace_id: bytes = b""
    span_id: bytes = b""
    flags: int = 0
    event_name: str = ""


@dataclass
class NumberPoint:
    """One point of a sum or a gauge."""

    attributes: Attributes
    time_ns: int
    value: int | float
    start_ns: int = 0


@dataclass
class HistogramPoint:
    attributes: Attributes
    start_ns: int
    time_ns: int
    count: int
    sum: float
    bucket_counts: Sequence[int]
    explicit_bounds: Sequence[float]
    min: float | None = None
    max: float | None = None


@dataclass
class Sum:
    points: list[NumberPoint]
    monotonic: bool = True
    temporality: int = TEMPORALITY_CUMULATIVE


@dataclass
class Gauge:
    points: list[NumberPoint]


@dataclass
class Histogram:
    points: list[HistogramPoint]
    temporality: int = TEMPORALITY_CUMULATIVE


@dataclass
class Metric:
    name: str
    data: Sum | Gauge | Histogram
    unit: str = ""
    description: str = ""


@dataclass
class ResourceSpans:
    resource: Attributes
    scope: Scope
    spans: list[Span]


@dataclass
class LogBlock:
    """Lines of one attempt's stream, as log records that share all but their text, time and
    id: the attempt's identity with ``log.iostream`` and ``metaflow.log.source`` (encoded once,
    ``shared``), trace context, flags and observed time. ``texts`` are the lines, valid UTF-8
    without their newline; ``times`` one time for all or one a line; ``uids`` either one id a
    line or a stream's id prefix and first sequence number (see :mod:`mfotel.logs._lines`).
    ``attempt`` (pathspec, attempt number) is what the ledger records them under."""

    shared: bytes
    trace_id: bytes
    span_id: bytes
    observed_ns: int
    texts: list[bytes]
    times: int | list[int]
    uids: list[str] | tuple[str, int]
    attempt: tuple[str, int] | None = None
    flags: int = 1
    stream: str = ""  # stdout or stderr, for the console
    # Lines whose body or severity is not just their text (a JSON object, a level prefix),
    # by index: (body, severity number, severity text); see mfotel.logs._records.shape.
    special: dict[int, tuple[AttrValue, int, str]] = field(default_factory=dict)


@dataclass
class ResourceLogs:
    resource: Attributes
    scope: Scope
    records: list[LogRecord]
    blocks: list[LogBlock] = field(default_factory=list)

    def count(self) -> int:
        """Log records, those of the blocks included."""
        return len(self.records) + sum(len(block.texts) for block in self.blocks)


@dataclass
class ResourceMetrics:
    resource: Attributes
    scope: Scope
    metrics: list[Metric]
