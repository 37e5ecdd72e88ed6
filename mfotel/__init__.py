"""mfotel: OpenTelemetry for Metaflow.

Turn it on with ``MF_TRACING=otlp``; every setting is documented in :mod:`mfotel.settings`.
"""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
