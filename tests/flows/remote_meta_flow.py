"""RemoteMetaFlow: steps whose tasks record AWS Batch and Kubernetes metadata as those
platforms' decorators do (tests/extensions), one of them retried."""

from metaflow import FlowSpec, current, fake_batch, fake_kubernetes, retry, step


class RemoteMetaFlow(FlowSpec):
    @fake_batch
    @retry(times=1, minutes_between_retries=0)
    @step
    def start(self):
        print("on batch, attempt %d" % current.retry_count)
        if current.retry_count == 0:
            raise RuntimeError("retry me")
        self.next(self.train)

    @fake_kubernetes
    @step
    def train(self):
        print("on kubernetes")
        self.next(self.end)

    @step
    def end(self):
        print("locally")


if __name__ == "__main__":
    RemoteMetaFlow()
