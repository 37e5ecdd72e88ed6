"""mfotel's monitor, event logger and step decorator.

Declared always, and resolved from this extension (which every code package carries), so a
command line that names them works in any process: a deployed step compiled days earlier, a
container whose image has no mfotel. They do nothing unless MF_TRACING is on and mfotel's
runtime loaded in the process.
"""

MONITOR_SIDECARS_DESC = [("mfotelMonitor", ".sidecars.Monitor")]
LOGGING_SIDECARS_DESC = [("mfotelEventLogger", ".sidecars.EventLogger")]
STEP_DECORATORS_DESC = [("mfotel", ".decorator.MfotelDecorator")]
