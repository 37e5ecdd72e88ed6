"""RouteFlow: numbered lines on both streams and one line carrying a secret, for routing tests."""

import sys

from metaflow import FlowSpec, step


class RouteFlow(FlowSpec):
    @step
    def start(self):
        for i in range(12):
            print("route start line %d" % i)
        print("route start err", file=sys.stderr)
        print("route secret aws_key=AKIAIOSFODNN7EXAMPLE end")
        self.next(self.end)

    @step
    def end(self):
        for i in range(5):
            print("route end line %d" % i)


if __name__ == "__main__":
    RouteFlow()
