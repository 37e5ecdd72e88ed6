"""Monitor measurements aggregate into cumulative OTLP metrics."""

from __future__ import annotations

from mfotel._internal.model import Gauge, Histogram, Sum
from mfotel.metrics._aggregate import BOUNDS, Aggregator


def test_timers_become_second_histograms_per_series() -> None:
    """Two timings of one task land in one histogram point with count, sum, min, max, buckets."""
    agg = Aggregator()
    attrs = {"metaflow.task.id": "3"}
    agg.record("timer", "metaflow.task.duration", 0.2, 10, "r", attrs)
    agg.record("timer", "metaflow.task.duration", 3.0, 20, "r", attrs)
    (metric,) = agg.collect(30)["r"]
    assert metric.name == "metaflow.task.duration" and metric.unit == "s"
    assert isinstance(metric.data, Histogram)
    (point,) = metric.data.points
    assert (point.count, point.sum, point.min, point.max) == (2, 3.2, 0.2, 3.0)
    assert point.start_ns == 10 and point.time_ns == 30
    assert sum(point.bucket_counts) == 2 and len(point.bucket_counts) == len(BOUNDS) + 1
    assert point.bucket_counts[BOUNDS.index(0.25)] == 1


def test_counters_are_monotonic_sums_and_gauges_keep_the_last_value() -> None:
    """Counters add up into a monotonic integer sum; a gauge reports its latest value."""
    agg = Aggregator()
    for _ in range(3):
        agg.record("counter", "metaflow.task.start", 1, 5, "r", {})
    agg.record("gauge", "queue", 4.0, 5, "r", {})
    agg.record("gauge", "queue", 2.0, 6, "r", {})
    metrics = {m.name: m for m in agg.collect(9)["r"]}
    counter = metrics["metaflow.task.start"].data
    assert isinstance(counter, Sum) and counter.monotonic
    assert counter.points[0].value == 3 and isinstance(counter.points[0].value, int)
    gauge = metrics["queue"].data
    assert isinstance(gauge, Gauge) and gauge.points[0].value == 2.0


def test_series_are_separated_by_attributes_and_resource() -> None:
    """Different tasks (attributes) and runs (resources) never share a point."""
    agg = Aggregator()
    agg.record("counter", "c", 1, 1, "r1", {"task": "1"})
    agg.record("counter", "c", 1, 1, "r1", {"task": "2"})
    agg.record("counter", "c", 1, 1, "r2", {"task": "1"})
    collected = agg.collect(2)
    assert len(collected["r1"][0].data.points) == 2
    assert len(collected["r2"][0].data.points) == 1
