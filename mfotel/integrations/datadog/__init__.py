"""Forward Metaflow's AWS Batch logs to Datadog with the Datadog Forwarder (see README.md).

:func:`plan_setup` (or :func:`plan_remove`) reads what is there and returns a :class:`Plan`;
:func:`apply` makes its changes and rolls them back if one fails; :func:`datadog_pipeline` is
the Datadog log pipeline that turns each line's Metaflow identity into attributes.
"""

from mfotel.integrations.datadog._forwarder import (
    DEFAULT_FILTER_PATTERN,
    DEFAULT_LOG_GROUP,
    DEFAULT_STACK_NAME,
    FACETS,
    FILTER_NAME,
    README,
    STACK_OUTPUT,
    ApplyError,
    Aws,
    Call,
    Change,
    ForwarderOptions,
    Plan,
    Result,
    SetupError,
    apply,
    connect,
    datadog_pipeline,
    log_group_arn,
    plan_remove,
    plan_setup,
    statement_id,
)

__all__ = [
    "DEFAULT_FILTER_PATTERN",
    "DEFAULT_LOG_GROUP",
    "DEFAULT_STACK_NAME",
    "FACETS",
    "FILTER_NAME",
    "README",
    "STACK_OUTPUT",
    "ApplyError",
    "Aws",
    "Call",
    "Change",
    "ForwarderOptions",
    "Plan",
    "Result",
    "SetupError",
    "apply",
    "connect",
    "datadog_pipeline",
    "log_group_arn",
    "plan_remove",
    "plan_setup",
    "statement_id",
]
