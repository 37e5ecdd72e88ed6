"""``@mfotel``, which the extension's config attaches to every step while MF_TRACING is on.

- ``add_to_package``: the task runtime (standard library only) travels in Metaflow's code
  package, so a step on a stock image, under ``@pypi``/``@conda``, or on a worker where mfotel
  was never installed exports exactly as a local one.
- ``step_init``: a step that runs elsewhere (``@batch``, ``@kubernetes``, or any step of an
  Argo Workflows, Step Functions or Airflow deployment) gets the telemetry settings through
  its ``@environment`` variables, which every one of Metaflow's launchers and compilers reads.

Inert where mfotel cannot load; one warning line at most.
"""

import os

from metaflow.decorators import StepDecorator

from metaflow_extensions.mfotel import gate


class MfotelDecorator(StepDecorator):
    name = "mfotel"
    defaults = {}  # noqa: RUF012 - Metaflow's StepDecorator contract: a class dict

    def add_to_package(self):
        if not gate.active():
            return []
        try:
            from mfotel._internal.package import task_files

            return list(task_files())
        except Exception as exc:
            gate.warn_once("the code package carries no telemetry runtime: %s" % (exc,))
            return []

    def step_init(self, flow, graph, step_name, decorators, environment, flow_datastore, logger):
        if not gate.active():
            return
        try:
            from mfotel._internal.remote import (
                container_env,
                remote_endpoint_problem,
                runs_elsewhere,
            )

            if not runs_elsewhere([d.name for d in decorators]):
                return
            problem = remote_endpoint_problem(os.environ)
            if problem:
                gate.warn_once(problem)  # here, days before a container would say it
            _add_environment(decorators, container_env(os.environ))
        except Exception as exc:
            gate.warn_once("telemetry settings are not passed to step %s: %s" % (step_name, exc))


def _add_environment(decorators, variables):
    """Into the step's first ``@environment`` (the one every compiler reads), the user's own
    values first; or a new one, kept off the task's command line (``inserted_by``)."""
    if not variables:
        return
    present = [d for d in decorators if d.name == "environment"]
    if present:
        own = present[0].attributes.get("vars") or {}
        merged = dict(variables)
        merged.update(own)
        present[0].attributes["vars"] = merged
        return
    from metaflow.plugins.environment_decorator import EnvironmentDecorator

    deco = EnvironmentDecorator(
        attributes={"vars": dict(variables)}, statically_defined=False, inserted_by=["mfotel"]
    )
    deco.external_init()
    decorators.append(deco)
