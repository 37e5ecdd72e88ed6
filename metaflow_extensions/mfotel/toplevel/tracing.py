"""``metaflow.tracing`` while MF_TRACING is on; the implementation is mfotel's."""

from mfotel._internal.hooks import (  # noqa: F401
    cli,
    get_trace_id,
    init_tracing,
    inject_tracing_vars,
    post_fork,
    traced,
    tracing,
)
