"""DemoFlow: a small training-shaped flow with nothing about telemetry in it."""

import json
import random
import sys
import time

from metaflow import FlowSpec, step


class DemoFlow(FlowSpec):
    @step
    def start(self):
        print("loading 3 model configurations")
        self.models = ["linear", "forest", "boosted"]
        self.next(self.train, foreach="models")

    @step
    def train(self):
        self.model = self.input
        rng = random.Random(self.model)
        for epoch in range(3):
            time.sleep(0.05)
            loss = round(1.0 / (epoch + 1) + rng.random() / 10, 4)
            print(json.dumps({"level": "info", "model": self.model, "epoch": epoch, "loss": loss}))
        self.score = round(1 - loss, 4)
        print("finished %s with score %.4f" % (self.model, self.score), file=sys.stderr)
        self.next(self.join)

    @step
    def join(self, inputs):
        best = max(inputs, key=lambda i: i.score)
        self.best = best.model
        print("best model: %s" % self.best)
        self.next(self.end)

    @step
    def end(self):
        print("done")


if __name__ == "__main__":
    DemoFlow()
