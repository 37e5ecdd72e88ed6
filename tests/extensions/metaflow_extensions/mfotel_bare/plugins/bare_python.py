"""``@bare_python``: the step's task runs with $MFOTEL_TEST_BARE_PYTHON."""

import os

from metaflow.decorators import StepDecorator


class BarePythonDecorator(StepDecorator):
    name = "bare_python"

    def runtime_step_cli(self, cli_args, retry_count, max_user_code_retries, ubf_context):
        cli_args.entrypoint[0] = os.environ["MFOTEL_TEST_BARE_PYTHON"]
        cli_args.env["PYTHONPATH"] = os.environ["MFOTEL_TEST_BARE_PYTHONPATH"]
