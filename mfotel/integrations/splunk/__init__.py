"""A Splunk Universal Forwarder app that reads Metaflow's persisted logs (see README.md).

:func:`render` turns :class:`ForwarderOptions` into the app's ``.conf`` files as text, and
:func:`write_app` writes them; events get the same index, sourcetypes and indexed identity
fields as the OTLP → HEC route. The regular expressions in the files are the constants here.
"""

from mfotel.integrations.splunk._forwarder import (
    DEFAULT_APP,
    INDEXED_FIELDS,
    LINE_BREAKER_REGEX,
    LOG_PATH_REGEX,
    MAX_TIMESTAMP_LOOKAHEAD,
    MFLOG_HEADER_REGEX,
    OTEL_ALIASES,
    RUNTIME_LINE_REGEX,
    TIME_FORMAT,
    TIME_PREFIX_REGEX,
    WORKER_LOG_DIR,
    WORKER_LOG_PATH_REGEX,
    ForwarderConfigError,
    ForwarderOptions,
    default_log_dir,
    hec_route_defaults,
    render,
    write_app,
)

__all__ = [
    "DEFAULT_APP",
    "INDEXED_FIELDS",
    "LINE_BREAKER_REGEX",
    "LOG_PATH_REGEX",
    "MAX_TIMESTAMP_LOOKAHEAD",
    "MFLOG_HEADER_REGEX",
    "OTEL_ALIASES",
    "RUNTIME_LINE_REGEX",
    "TIME_FORMAT",
    "TIME_PREFIX_REGEX",
    "WORKER_LOG_DIR",
    "WORKER_LOG_PATH_REGEX",
    "ForwarderConfigError",
    "ForwarderOptions",
    "default_log_dir",
    "hec_route_defaults",
    "render",
    "write_app",
]
