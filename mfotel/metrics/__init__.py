"""Metrics: Metaflow's monitor timers, counters and gauges as OTLP metrics."""
