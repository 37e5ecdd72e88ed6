"""With MF_TRACING on: Metaflow's default monitor and event logger become mfotel's, and every
step gets ``@mfotel``, which carries the task runtime in the code package and the telemetry
settings to steps that run elsewhere (Batch, Kubernetes, Argo, Step Functions, Airflow)."""

from metaflow_extensions.mfotel import gate as _gate

if _gate.active():
    DEFAULT_MONITOR = "mfotelMonitor"
    DEFAULT_EVENT_LOGGER = "mfotelEventLogger"

    def _with_ours():
        # Added to the user's own default decorators, never in place of them.
        from metaflow.metaflow_config_funcs import from_conf

        specs = (from_conf("DEFAULT_DECOSPECS", "") or "").split()
        return " ".join(specs + ([] if "mfotel" in specs else ["mfotel"]))

    DEFAULT_DECOSPECS = _with_ours()
