"""Makes ``metaflow.tracing`` mfotel's: Metaflow aliases every module attribute of this file
that lives in our extension package to ``metaflow.<attribute name>``."""

from . import tracing  # noqa: F401
