"""OtelUserFlow: a step instrumented with the OpenTelemetry SDK, in process and in a subprocess."""

import subprocess
import sys

from metaflow import FlowSpec, step
from opentelemetry import trace

CHILD = """
import os
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter()))
parent = TraceContextTextMapPropagator().extract({"traceparent": os.environ["TRACEPARENT"]})
with provider.get_tracer("user").start_as_current_span("user-subprocess", context=parent):
    pass
provider.shutdown()
"""


class OtelUserFlow(FlowSpec):
    @step
    def start(self):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor

        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter()))
        with provider.get_tracer("user").start_as_current_span("user-in-process"):
            pass
        provider.shutdown()
        subprocess.run([sys.executable, "-c", CHILD], check=True)
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    trace.get_tracer(__name__)  # the flow imports OpenTelemetry at module level, as users do
    OtelUserFlow()
