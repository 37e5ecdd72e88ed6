"""Test-only Metaflow extension: ``@bare_python`` runs a step with another interpreter, the way
``@pypi``/``@conda`` do, so tests can run a task whose environment has no OpenTelemetry;
``@fake_batch`` and ``@fake_kubernetes`` record the task metadata those platforms' decorators
record; ``@fake_remote`` runs a task the way Metaflow runs it in a container."""

STEP_DECORATORS_DESC = [
    ("bare_python", ".bare_python.BarePythonDecorator"),
    ("fake_batch", ".remote_metadata.FakeBatchDecorator"),
    ("fake_kubernetes", ".remote_metadata.FakeKubernetesDecorator"),
    ("fake_remote", ".remote_capture.FakeRemoteDecorator"),
]
