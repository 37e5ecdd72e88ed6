"""``@fake_remote``: the step's task runs the way Metaflow runs it in a Batch or Kubernetes
container. The command is wrapped in Metaflow's own ``bash_capture_logs`` expression (each
stream through ``python -m metaflow.mflog.tee`` into ``$MFLOG_STDOUT`` / ``$MFLOG_STDERR``,
which Metaflow later uploads as the task's logs), with the ``MFLOG_*`` variables
``export_mflog_env_vars`` sets, and without the runtime's agent and relay, which do not exist
in a container. What the container itself prints (what CloudWatch or ``kubectl logs`` would
show) is also kept in ``$MFOTEL_TEST_REMOTE_DIR/<step>.<attempt>.console``. With
``MFOTEL_TEST_SLOW_TEE`` set, Metaflow's tee starts 0.7 s late, as on a loaded container."""

import os
import shlex

from metaflow.decorators import StepDecorator
from metaflow.mflog import bash_capture_logs


class FakeRemoteDecorator(StepDecorator):
    name = "fake_remote"

    def runtime_step_cli(self, cli_args, retry_count, max_user_code_retries, ubf_context):
        folder = os.environ["MFOTEL_TEST_REMOTE_DIR"]
        base = os.path.join(folder, f"{cli_args.command_args[-1]}.{retry_count}")
        console = shlex.quote(base + ".console")
        command = bash_capture_logs('"$@"')
        if os.environ.get("MFOTEL_TEST_SLOW_TEE"):  # a tee still starting when the task ends
            command = command.replace(
                "python -m metaflow.mflog.tee", "sleep 0.7; python -m metaflow.mflog.tee"
            )
        script = (
            "unset MFOTEL_AGENT_SOCKET MFOTEL_RELAY_SOCKET MFOTEL_SPOOL_DIR; "
            f"export PATH={shlex.quote(os.path.dirname(cli_args.entrypoint[0]))}:$PATH "
            f"MFLOG_STDOUT={shlex.quote(base + '.stdout')} "
            f"MFLOG_STDERR={shlex.quote(base + '.stderr')} PYTHONUNBUFFERED=x; "
            f"{{ {command} ; }} > >(tee -a {console}) 2> >(tee -a {console} >&2)"
        )
        cli_args.entrypoint = ["bash", "-c", script, "fake-remote", *cli_args.entrypoint]
