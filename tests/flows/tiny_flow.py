"""TinyFlow: two steps, a few lines; the smallest real run."""

import os
import subprocess
import sys

from metaflow import FlowSpec, step


class TinyFlow(FlowSpec):
    @step
    def start(self):
        print("tiny start")
        print("tiny to stderr", file=sys.stderr)
        if os.environ.get("TINY_SHOW_ENV"):
            names = os.environ["TINY_SHOW_ENV"].split(",")
            code = "import os; print(' '.join('%s=%s' % (n, os.environ.get(n)) for n in {!r}))"
            subprocess.run([sys.executable, "-c", code.format(names)], check=True)
        self.next(self.end)

    @step
    def end(self):
        print("tiny end")


if __name__ == "__main__":
    TinyFlow()
