"""Test-only Metaflow extension: ``@bare_python`` runs a step with another interpreter, the way
``@pypi``/``@conda`` do, so tests can run a task whose environment has no OpenTelemetry;
``@fake_batch`` and ``@fake_kubernetes`` record the task metadata those platforms' decorators
record."""

STEP_DECORATORS_DESC = [
    ("bare_python", ".bare_python.BarePythonDecorator"),
    ("fake_batch", ".remote_metadata.FakeBatchDecorator"),
    ("fake_kubernetes", ".remote_metadata.FakeKubernetesDecorator"),
]
