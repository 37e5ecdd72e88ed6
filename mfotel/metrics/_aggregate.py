"""Cumulative aggregation of monitor measurements, in the agent.

Timers become histograms in seconds, counters monotonic sums, gauges gauges. Each series is
keyed by its name and its full attribute set (the task identity), so a point is one task's.
"""

from __future__ import annotations

import bisect
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mfotel._internal.model import (
    Gauge,
    Histogram,
    HistogramPoint,
    Metric,
    NumberPoint,
    Sum,
)

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


class Aggregator:
    def __init__(self) -> None:
        self._series: dict[tuple[Hashable, ...], _Series] = {}

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
        """Current cumulative state, grouped by resource key; one Metric per name and kind."""
        grouped: dict[Hashable, dict[tuple[str, str], Metric]] = {}
        for series in self._series.values():
            metrics = grouped.setdefault(series.resource_key, {})
            metric = metrics.get((series.kind, series.name))
            if metric is None:
                metric = _new_metric(series)
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
                value = int(series.value) if float(series.value).is_integer() else series.value
                data.points.append(
                    NumberPoint(series.attributes, now_ns, value, start_ns=series.start_ns)
                )
            else:
                data.points.append(NumberPoint(series.attributes, series.time_ns, series.value))
        return {key: list(metrics.values()) for key, metrics in grouped.items()}


def _new_metric(series: _Series) -> Metric:
    if series.kind in ("counter", "cumulative"):
        return Metric(series.name, Sum(points=[], monotonic=True), unit="1")
    if series.kind == "gauge":
        return Metric(series.name, Gauge(points=[]))
    return Metric(series.name, Histogram(points=[]), unit="s")
