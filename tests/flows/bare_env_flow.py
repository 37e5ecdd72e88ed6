"""BareEnvFlow: `start` runs in an interpreter without OpenTelemetry (like @pypi/@conda)."""

import importlib.util
import sys

from metaflow import FlowSpec, bare_python, step


class BareEnvFlow(FlowSpec):
    @bare_python
    @step
    def start(self):
        print("otel importable: %s" % (importlib.util.find_spec("opentelemetry") is not None))
        print("python: %s" % sys.executable)
        self.next(self.end)

    @step
    def end(self):
        print("otel importable: %s" % (importlib.util.find_spec("opentelemetry") is not None))


if __name__ == "__main__":
    BareEnvFlow()
