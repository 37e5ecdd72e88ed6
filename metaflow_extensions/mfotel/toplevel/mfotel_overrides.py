"""Promotes ``metaflow_extensions.mfotel.toplevel.tracing`` to ``metaflow.tracing``."""

__mf_promote_submodules__ = ["tracing"]
