"""BareEnvFlow: `start` runs as @pypi/@conda run a local task: another interpreter, which has
neither Metaflow, mfotel nor OpenTelemetry, and the run's code package on its path."""

import importlib.util
import sys

from metaflow import FlowSpec, bare_python, step


class BareEnvFlow(FlowSpec):
    @bare_python
    @step
    def start(self):
        print("otel importable: %s" % (importlib.util.find_spec("opentelemetry") is not None))
        print("python: %s" % sys.executable)
        hooks = sys.modules.get("mfotel._internal.hooks")
        print("mfotel from: %s" % (hooks.__file__ if hooks else None))
        print("metaflow from: %s" % sys.modules["metaflow"].__file__)
        self.next(self.end)

    @step
    def end(self):
        print("otel importable: %s" % (importlib.util.find_spec("opentelemetry") is not None))


if __name__ == "__main__":
    BareEnvFlow()
