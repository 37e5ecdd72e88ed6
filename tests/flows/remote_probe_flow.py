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
        if os.environ.get("REMOTE_PROBE_KILL") == "container":
            # The whole container dies at once (its node fails, the cgroup is OOM-killed):
            # every process in it, mfotel's agent too. Only inside an emulated container,
            # whose PID 1 is the container's bash (tests/containers.py).
            with open("/proc/1/comm") as comm:
                assert comm.read().strip() == "bash", "not in an emulated container"
            for i in range(30):
                print(f"tick {i}", flush=True)
                time.sleep(0.1)
            os.kill(-1, signal.SIGKILL)  # everyone in the container but its init...
            os.kill(os.getpid(), signal.SIGKILL)  # ... and this task
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
