"""Traces: the run's span tree and its context across processes."""
