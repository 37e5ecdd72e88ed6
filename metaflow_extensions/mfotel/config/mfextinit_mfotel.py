"""With MF_TRACING on: Metaflow's default monitor and event logger become mfotel's, and every
step gets ``@mfotel``, which carries the task runtime in the code package and the telemetry
settings to steps that run elsewhere (Batch, Kubernetes, Argo, Step Functions, Airflow)."""

from metaflow_extensions.mfotel import gate as _gate

if _gate.active():
    DEFAULT_MONITOR = "mfotelMonitor"
    DEFAULT_EVENT_LOGGER = "mfotelEventLogger"
    # Metaflow applies extensions' toggles only when the user sets no DEFAULT_DECOSPECS; when
    # they do, @mfotel joins theirs (never replaces them).
    TOGGLE_DECOSPECS = ["mfotel"]
    if _gate.user_decospecs():
        DEFAULT_DECOSPECS = _gate.user_decospecs() + " mfotel"
