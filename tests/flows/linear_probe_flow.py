"""LinearProbeFlow: start -> middle -> end, printing on both streams; the flow the Step
Functions and Airflow tests compile and run as their containers run it."""

import sys

from metaflow import FlowSpec, step


class LinearProbeFlow(FlowSpec):
    @step
    def start(self):
        print("start out")
        print("start err", file=sys.stderr)
        self.next(self.middle)

    @step
    def middle(self):
        print("middle out")
        self.next(self.end)

    @step
    def end(self):
        print("end out")


if __name__ == "__main__":
    LinearProbeFlow()
