"""KilledFlow: a task that prints, then dies by SIGKILL (no chance to clean up)."""

import os
import signal
import sys

from metaflow import FlowSpec, step


class KilledFlow(FlowSpec):
    @step
    def start(self):
        print("about to be killed")
        sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGKILL)
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    KilledFlow()
