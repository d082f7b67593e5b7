"""`noetl lint`: worst cases and suspicious policies, read off the model alone."""

from __future__ import annotations

import attrs

from noetl_actors.playbook._catalog import Catalog
from noetl_actors.playbook._model import Playbook, Step, Task
from noetl_actors.playbook._source import Problem
from noetl_actors.supervision import Restart, Strategy

__all__ = ["Worst", "lint"]

NETWORK_TIMEOUT_HINT = "add a timeout (e.g. timeout: 30s)"


@attrs.frozen
class Worst:
    """How often one step can run before its workflow gives up."""

    task: str
    step: str
    executions: int
    why: str


def lint(playbook: Playbook, catalog: Catalog | None = None) -> tuple[list[Worst], list[Problem]]:
    """Worst-case executions per step, and warnings (as `Problem`s with warning=True).

    Limits multiply down the tree: a step runs at most ``max_restarts + 1``
    times in one run of its task (every restart of the task's supervisor may
    be spent on it, or rerun it under one_for_all), and the task runs at most
    ``max_restarts + 1`` times under its workflow.
    """
    catalog = catalog or Catalog.default()
    runs = playbook.supervision.max_restarts + 1
    worst = [
        Worst(
            task.name, step.name,
            (task.supervision.max_restarts + 1) * runs,
            f"{task.supervision.max_restarts + 1} per run of task {task.name} "
            f"x {runs} run(s) of the task under the workflow",
        )
        for task in playbook.tasks for step in task.steps
    ]
    warnings = [
        Problem(playbook.file, step.line, step.col, message, warning=True)
        for task in playbook.tasks for step in task.steps
        for message in _step_warnings(task, step, catalog)
    ]
    return worst, warnings


def _step_warnings(task: Task, step: Step, catalog: Catalog) -> list[str]:
    plugin = catalog.plugins.get(step.plugin)
    found = []
    where = f"step {task.name}.{step.name}"
    if step.restart is Restart.PERMANENT:
        found.append(
            f"{where} is permanent: it is started again even after it succeeds, so task "
            f"{task.name} uses up its restarts and gives up; one-shot steps are transient"
        )
    if task.supervision.strategy is Strategy.ONE_FOR_ALL and plugin and not plugin.idempotent:
        found.append(
            f"task {task.name} is one_for_all (a failure reruns it from its first step), "
            f"but {where} uses {step.plugin}, which is not idempotent: a rerun may repeat "
            "its side effects"
        )
    if plugin and plugin.network and step.timeout is None:
        found.append(
            f"{where} uses {step.plugin}, a network plugin, with no timeout: a call that "
            f"hangs holds the task forever; {NETWORK_TIMEOUT_HINT}"
        )
    return found
