"""RemoteProbeFlow: the flow the deployment tests compile (Argo Workflows, Step Functions,
Airflow, @batch, @kubernetes) and run as the compiled containers run it: a foreach, both
streams, a step that can be told to fail or to be killed."""

import os
import signal
import sys
import time

from metaflow import FlowSpec, Parameter, step


class RemoteProbeFlow(FlowSpec):
    lines = Parameter("lines", default=3, type=int)

    @step
    def start(self):
        for i in range(self.lines):
            print(f"start out {i}")
            print(f"start err {i}", file=sys.stderr)
        self.items = [1, 2]
        self.next(self.fan, foreach="items")

    @step
    def fan(self):
        print(f"fan {self.input}")
        self.next(self.join)

    @step
    def join(self, inputs):
        print("join")
        if os.environ.get("REMOTE_PROBE_FAIL") == "join":
            raise RuntimeError("join was told to fail")
        if os.environ.get("REMOTE_PROBE_KILL") == "join":
            for i in range(10):
                print(f"before kill {i}", flush=True)
            time.sleep(1.5)  # the live path has sent those by now
            print("last words", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        self.next(self.end)

    @step
    def end(self):
        print("end out")


if __name__ == "__main__":
    RemoteProbeFlow()
