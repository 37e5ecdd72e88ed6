"""ProbeFlow: every kind of signal the contract names, in one small run."""

import json
import logging
import subprocess
import sys

from metaflow import FlowSpec, current, parallel_map, retry, step


def _work(x):
    # One write per line: two forked workers printing at once may otherwise interleave
    # "worker 1", "worker 2", "\n", "\n" on the shared stdout, in Metaflow's own log too.
    sys.stdout.write("worker %d\n" % x)
    sys.stdout.flush()
    return x * 2


class ProbeFlow(FlowSpec):
    @step
    def start(self):
        print("start says hello")
        self.items = [1, 2, 3]
        self.next(self.fan, foreach="items")

    @step
    def fan(self):
        print("fan %d stdout" % self.input)
        print("fan %d stderr" % self.input, file=sys.stderr)
        print(json.dumps({"level": "warning", "msg": "structured", "item": self.input}))
        subprocess.run([sys.executable, "-c", "print('subprocess %d')" % self.input], check=True)
        logging.basicConfig(level=logging.INFO)
        logging.getLogger("probe").info("logging %d", self.input)
        self.next(self.join)

    @step
    def join(self, inputs):
        self.total = sum(parallel_map(_work, [1, 2]))
        print("join total %d" % self.total)
        self.next(self.flaky)

    @retry(times=1, minutes_between_retries=0)
    @step
    def flaky(self):
        if current.retry_count == 0:
            raise RuntimeError("flaky fails once")
        print("flaky recovered")
        self.next(self.end)

    @step
    def end(self):
        print("end of probe")


if __name__ == "__main__":
    ProbeFlow()
