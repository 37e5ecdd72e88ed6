"""With MF_TRACING on, Metaflow's default monitor and event logger become mfotel's."""

import os as _os

if _os.environ.get("MF_TRACING", "").strip().lower() in ("otlp", "console"):
    DEFAULT_MONITOR = "mfotelMonitor"
    DEFAULT_EVENT_LOGGER = "mfotelEventLogger"
