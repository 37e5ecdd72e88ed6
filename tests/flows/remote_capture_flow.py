"""RemoteCaptureFlow: a step run the way a Batch or Kubernetes container runs it
(tests/extensions, ``@fake_remote``), printing to both streams."""

import sys

from metaflow import FlowSpec, fake_remote, step


class RemoteCaptureFlow(FlowSpec):
    @fake_remote
    @step
    def start(self):
        for i in range(5):
            print(f"remote out {i}")
            print(f"remote err {i}", file=sys.stderr)
        self.next(self.end)

    @step
    def end(self):
        print("local end")


if __name__ == "__main__":
    RemoteCaptureFlow()
