"""SlowFlow: prints a line, then keeps the task running (for live-delivery checks)."""

import os
import time

from metaflow import FlowSpec, step


class SlowFlow(FlowSpec):
    @step
    def start(self):
        print("early line")
        deadline = time.time() + float(os.environ.get("SLOWFLOW_SECONDS", "6"))
        while time.time() < deadline and not os.path.exists(os.environ.get("SLOWFLOW_STOP", "")):
            time.sleep(0.05)
        print("late line")
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    SlowFlow()
