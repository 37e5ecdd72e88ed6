"""mfotel's monitor and event logger: they hand Metaflow's metrics and events to the run's
exporter instead of starting a sidecar process per task. Declared only while MF_TRACING is
on, since Metaflow imports every declared plugin of these kinds."""

import os as _os

if _os.environ.get("MF_TRACING", "").strip().lower() in ("otlp", "console"):
    MONITOR_SIDECARS_DESC = [("mfotelMonitor", "mfotel.metrics._monitor.Monitor")]
    LOGGING_SIDECARS_DESC = [("mfotelEventLogger", "mfotel.events._event_logger.EventLogger")]
