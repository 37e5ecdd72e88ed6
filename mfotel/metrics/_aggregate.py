"""Aggregation of monitor measurements, in the agent.

Timers become histograms in seconds, counters monotonic sums, gauges gauges. Each series is
keyed by its name and its full attribute set (the task identity), so a point is one task's.

Temporality follows ``OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE`` as the OpenTelemetry
specification defines it: ``cumulative`` (the default) reports running totals since the series
began; ``delta`` reports what happened since the previous collection, for every sum and
histogram; ``lowmemory`` does so for counters and histograms and keeps observed running totals
cumulative. Backends that want deltas (Datadog drops the first cumulative point of a series,
which for a task's one-shot duration is the only one) need ``delta``.
"""

from __future__ import annotations

import bisect
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mfotel._internal.model import (
    TEMPORALITY_CUMULATIVE,
    TEMPORALITY_DELTA,
    Gauge,
    Histogram,
    HistogramPoint,
    Metric,
    NumberPoint,
    Sum,
)
from mfotel._internal.otlp.config import TEMPORALITY_PREFERENCES

# Seconds: Metaflow timers span milliseconds (a metadata call) to hours (a task).
BOUNDS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
    120,
    300,
    600,
    1800,
    3600,
    7200,
)


@dataclass
class _Series:
    name: str
    kind: str
    resource_key: Hashable
    attributes: dict[str, Any]
    start_ns: int
    time_ns: int = 0
    value: float = 0
    count: int = 0
    total: float = 0.0
    low: float | None = None
    high: float | None = None
    buckets: list[int] = field(default_factory=lambda: [0] * (len(BOUNDS) + 1))
    reported: float = 0.0  # delta "cumulative" series: the running total last reported
    fresh: bool = True  # delta: something was recorded since the last collection




class Aggregator:
    def __init__(self, temporality: str = "cumulative") -> None:
        if temporality not in TEMPORALITY_PREFERENCES:
            raise ValueError(f"unknown temporality preference {temporality!r}")
        self._series: dict[tuple[Hashable, ...], _Series] = {}
        self._delta_kinds = {
            "cumulative": frozenset(),
            "delta": frozenset({"counter", "timer", "cumulative"}),
            "lowmemory": frozenset({"counter", "timer"}),
        }[temporality]

    def record(
        self,
        kind: str,
        name: str,
        value: float,
        time_ns: int,
        resource_key: Hashable,
        attributes: Mapping[str, Any],
    ) -> None:
        key = (kind, name, resource_key, tuple(sorted((k, str(v)) for k, v in attributes.items())))
        series = self._series.get(key)
        if series is None:
            series = _Series(name, kind, resource_key, dict(attributes), start_ns=time_ns)
            self._series[key] = series
        series.time_ns = max(series.time_ns, time_ns)
        series.fresh = True
        if kind == "counter":
            series.value += value
        elif kind in ("gauge", "cumulative"):
            # "cumulative": a running total kept by the caller, exported as a monotonic sum.
            series.value = value
        else:
            series.count += 1
            series.total += value
            series.low = value if series.low is None else min(series.low, value)
            series.high = value if series.high is None else max(series.high, value)
            series.buckets[bisect.bisect_left(BOUNDS, value)] += 1

    def __len__(self) -> int:
        return len(self._series)

    def collect(self, now_ns: int) -> dict[Hashable, list[Metric]]:
        """The state to report, grouped by resource key; one Metric per name and kind.

        Delta series report what was recorded since the previous call (nothing if nothing
        was) and start again from zero.
        """
        grouped: dict[Hashable, dict[tuple[str, str], Metric]] = {}
        for series in self._series.values():
            delta = series.kind in self._delta_kinds
            if delta and not series.fresh:
                continue
            metrics = grouped.setdefault(series.resource_key, {})
            metric = metrics.get((series.kind, series.name))
            if metric is None:
                metric = _new_metric(series, delta)
                metrics[(series.kind, series.name)] = metric
            data = metric.data
            if isinstance(data, Histogram):
                data.points.append(
                    HistogramPoint(
                        attributes=series.attributes,
                        start_ns=series.start_ns,
                        time_ns=now_ns,
                        count=series.count,
                        sum=series.total,
                        bucket_counts=list(series.buckets),
                        explicit_bounds=list(BOUNDS),
                        min=series.low,
                        max=series.high,
                    )
                )
            elif isinstance(data, Sum):
                since = series.reported if delta and series.kind == "cumulative" else 0
                raw = series.value - since
                value = int(raw) if float(raw).is_integer() else raw
                data.points.append(
                    NumberPoint(series.attributes, now_ns, value, start_ns=series.start_ns)
                )
            else:
                data.points.append(NumberPoint(series.attributes, series.time_ns, series.value))
            if delta:
                _restart(series, now_ns)
        return {key: list(metrics.values()) for key, metrics in grouped.items()}


def _restart(series: _Series, now_ns: int) -> None:
    """A delta series after it is reported: empty, starting now."""
    series.start_ns = now_ns
    series.fresh = False
    if series.kind == "cumulative":
        series.reported = series.value
        return
    series.value = 0
    series.count = 0
    series.total = 0.0
    series.low = series.high = None
    series.buckets = [0] * (len(BOUNDS) + 1)


def _new_metric(series: _Series, delta: bool) -> Metric:
    temporality = TEMPORALITY_DELTA if delta else TEMPORALITY_CUMULATIVE
    if series.kind in ("counter", "cumulative"):
        return Metric(series.name, Sum(points=[], monotonic=True, temporality=temporality), "1")
    if series.kind == "gauge":
        return Metric(series.name, Gauge(points=[]))
    return Metric(series.name, Histogram(points=[], temporality=temporality), unit="s")
