"""WideFlow: WIDE_TASKS (default 16) foreach tasks printing 20 lines each (the overhead
benchmark's workload)."""

import os

from metaflow import FlowSpec, step


class WideFlow(FlowSpec):
    @step
    def start(self):
        self.items = list(range(int(os.environ.get("WIDE_TASKS", "16"))))
        self.next(self.work, foreach="items")

    @step
    def work(self):
        for line in range(20):
            print("task %d line %d" % (self.input, line))
        self.next(self.join)

    @step
    def join(self, inputs):
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    WideFlow()
