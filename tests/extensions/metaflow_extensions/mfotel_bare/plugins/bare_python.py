"""``@bare_python``: the step's task runs the way ``@pypi``/``@conda`` run a local task: the
run's code package extracted into a folder of its own, on the task's PYTHONPATH as Metaflow's
package says, and the task started by another interpreter ($MFOTEL_TEST_BARE_PYTHON, which
has neither Metaflow, mfotel nor OpenTelemetry). Written after Metaflow's own
``conda_decorator`` (``runtime_init``, ``runtime_step_cli``)."""

import os
import tempfile

from metaflow.decorators import StepDecorator
from metaflow.packaging_sys import ContentType


class BarePythonDecorator(StepDecorator):
    name = "bare_python"
    _home = None
    _env = None

    def runtime_init(self, flow, graph, package, run_id):
        if BarePythonDecorator._home is None:
            BarePythonDecorator._home = tempfile.TemporaryDirectory(prefix="mfotel-bare-")
            package.extract_into(BarePythonDecorator._home.name, ContentType.ALL_CONTENT)
            BarePythonDecorator._env = package.get_post_extract_env_vars(
                package.package_metadata, BarePythonDecorator._home.name
            )

    def runtime_step_cli(self, cli_args, retry_count, max_user_code_retries, ubf_context):
        home = BarePythonDecorator._home.name
        for key, value in (BarePythonDecorator._env or {}).items():
            if key.endswith(":"):
                cli_args.env[key[:-1]] = value
            elif key == "PYTHONPATH":
                cli_args.env[key] = os.pathsep.join([value, home])
            else:
                cli_args.env[key] = value
        cli_args.env["PYTHONNOUSERSITE"] = "1"
        cli_args.entrypoint[0] = os.environ["MFOTEL_TEST_BARE_PYTHON"]

    def runtime_finished(self, exception):
        if BarePythonDecorator._home is not None:
            BarePythonDecorator._home.cleanup()
            BarePythonDecorator._home = None
