"""ChattyFlow: one task printing CHATTY_LINES lines (default 200,000) of about 100 bytes as fast
as it can, as a training loop with a verbose library does (the chatty-task benchmark's
workload)."""

import os

from metaflow import FlowSpec, step


class ChattyFlow(FlowSpec):
    @step
    def start(self):
        lines = int(os.environ.get("CHATTY_LINES", "200000"))
        pad = "x" * 60
        for i in range(lines):
            print("step %07d loss=%.6f lr=0.000300 %s" % (i, 1.0 / (i + 1), pad))
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    ChattyFlow()
