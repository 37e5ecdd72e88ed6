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


def test_delta_preference_reports_what_happened_since_the_last_collection() -> None:
    from mfotel._internal.model import TEMPORALITY_CUMULATIVE, TEMPORALITY_DELTA

    agg = Aggregator("delta")
    agg.record("timer", "metaflow.task.duration", 2.0, 10, "r", {"step": "a"})
    agg.record("counter", "metaflow.task.start", 1, 10, "r", {"step": "a"})
    agg.record("cumulative", "mfotel.exporter.records", 5, 10, "r", {})
    agg.record("gauge", "g", 7, 10, "r", {})
    first = {m.name: m for m in agg.collect(100)["r"]}
    hist = first["metaflow.task.duration"].data
    assert isinstance(hist, Histogram) and hist.temporality == TEMPORALITY_DELTA
    assert hist.points[0].count == 1 and hist.points[0].start_ns == 10
    agg.record("timer", "metaflow.task.duration", 3.0, 150, "r", {"step": "a"})
    agg.record("cumulative", "mfotel.exporter.records", 8, 150, "r", {})
    second = {m.name: m for m in agg.collect(200)["r"]}
    point = second["metaflow.task.duration"].data.points[0]  # type: ignore[union-attr]
    assert (point.count, point.sum, point.start_ns) == (1, 3.0, 100)  # type: ignore[union-attr]
    assert second["mfotel.exporter.records"].data.points[0].value == 3  # type: ignore[union-attr]
    assert "metaflow.task.start" not in second  # nothing new: no point at all
    assert "g" in second  # gauges always report their last value
    lowmem = Aggregator("lowmemory")
    lowmem.record("cumulative", "c", 5, 10, "r", {})
    lowmem.record("counter", "n", 1, 10, "r", {})
    kinds = {m.name: m.data.temporality for m in lowmem.collect(20)["r"]}  # type: ignore[union-attr]
    assert kinds == {"c": TEMPORALITY_CUMULATIVE, "n": TEMPORALITY_DELTA}
