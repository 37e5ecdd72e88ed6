"""Logs: every line a task or the runtime prints, as an OTLP log record."""
