"""TrainFlow: a small training run, one task per learning rate, for the Splunk example."""

import json
import logging

from metaflow import FlowSpec, Parameter, step


class TrainFlow(FlowSpec):
    epochs = Parameter("epochs", default=3)

    @step
    def start(self):
        print("loading data: 1000 rows")
        self.rates = [0.1, 0.01]
        self.next(self.train, foreach="rates")

    @step
    def train(self):
        logging.basicConfig(level=logging.INFO)
        log = logging.getLogger("train")
        loss = 1.0
        for epoch in range(self.epochs):
            loss *= 1 - self.input
            print(json.dumps({"level": "info", "epoch": epoch, "lr": self.input, "loss": loss}))
        if loss > 0.9:
            log.warning("lr %s converges slowly (loss %.3f)", self.input, loss)
        self.loss = loss
        self.next(self.join)

    @step
    def join(self, inputs):
        self.best = min(i.loss for i in inputs)
        print("best loss %.4f" % self.best)
        self.next(self.end)

    @step
    def end(self):
        print("done")


if __name__ == "__main__":
    TrainFlow()
