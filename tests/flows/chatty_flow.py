"""ChattyFlow: one task printing CHATTY_LINES lines (default 200,000) of about 100 bytes as fast
as it can, as a training loop with a verbose library does (the chatty-task benchmark's
workload).

With CHATTY_HEADERS=1 (and telemetry off) the task prints each line with an mflog header, as
a log carrier that keeps line ids hands them to Metaflow's runtime: the benchmark's measure of
what the runtime itself spends on such lines (it parses every header)."""

import os
import time

from metaflow import FlowSpec, step


class ChattyFlow(FlowSpec):
    @step
    def start(self):
        lines = int(os.environ.get("CHATTY_LINES", "200000"))
        pad = "x" * 60
        if os.environ.get("CHATTY_HEADERS") == "1":
            prefix = "[![MFLOG|0|%s|task|0123abcd-0123-4123-8123-" % time.strftime(
                "%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime()
            )
            for i in range(lines):
                print(
                    "%s%012x]step %07d loss=%.6f lr=0.000300 %s"
                    % (prefix, i, i, 1.0 / (i + 1), pad)
                )
            self.next(self.end)
            return
        for i in range(lines):
            print("step %07d loss=%.6f lr=0.000300 %s" % (i, 1.0 / (i + 1), pad))
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    ChattyFlow()
