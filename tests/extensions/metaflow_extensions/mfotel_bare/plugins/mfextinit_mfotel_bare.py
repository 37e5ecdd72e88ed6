"""Test-only Metaflow extension: ``@bare_python`` runs a step with another interpreter, the way
``@pypi``/``@conda`` do, so tests can run a task whose environment has no OpenTelemetry."""

STEP_DECORATORS_DESC = [("bare_python", ".bare_python.BarePythonDecorator")]
