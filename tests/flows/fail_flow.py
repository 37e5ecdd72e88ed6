"""FailFlow: fails in `middle` unless FAILFLOW_FIX is set (for exit codes and resume)."""

import os

from metaflow import FlowSpec, step


class FailFlow(FlowSpec):
    @step
    def start(self):
        print("start ran")
        self.next(self.middle)

    @step
    def middle(self):
        print("middle ran")
        if not os.environ.get("FAILFLOW_FIX"):
            raise ValueError("middle is broken")
        self.next(self.end)

    @step
    def end(self):
        print("end ran")


if __name__ == "__main__":
    FailFlow()
