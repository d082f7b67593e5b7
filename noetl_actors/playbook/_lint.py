"""`noetl lint`: worst cases and suspicious policies, read off the model alone."""

from __future__ import annotations

import attrs

from noetl_actors.errors import TemplateError
from noetl_actors.playbook._catalog import Catalog
from noetl_actors.playbook._model import Playbook, Step, Task
from noetl_actors.playbook._source import Problem
from noetl_actors.playbook._templates import condition_source, render_value
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
    times in one run of its task (see `_per_run`), and the task runs at most
    ``max_restarts + 1`` times under its workflow.
    """
    catalog = catalog or Catalog.default()
    runs = playbook.supervision.max_restarts + 1
    worst = []
    for task in playbook.tasks:
        items, of_items = _items(task)
        for step in task.steps:
            per_run = _per_run(task, step)
            worst.append(Worst(
                task.name, step.name, per_run * items * runs,
                f"{per_run} per run of task {task.name}{of_items} x {runs} run(s) of the "
                "task under the workflow",
            ))
    warnings = [
        Problem(playbook.file, step.line, step.col, message, warning=True)
        for task in playbook.tasks for step in task.steps
        for message in _step_warnings(task, step, catalog)
    ]
    warnings += [
        Problem(playbook.file, task.line, task.col, message, warning=True)
        for task in playbook.tasks if task.loop is not None
        for message in [_loop_warning(task, playbook)] if message is not None
    ]
    return worst, warnings


def _items(task: Task) -> tuple[int, str]:
    """At most how many iterations a run of `task` has (1 if it has no loop), and how that
    reads in a `Worst`'s why. An expression counts `max_items`, even one of `vars`
    alone: a run may `--set` them otherwise."""
    if task.loop is None:
        return 1, ""
    if isinstance(task.loop.over, tuple):
        return len(task.loop.over), f" x {len(task.loop.over)} item(s)"
    return task.loop.max_items, f" x {task.loop.max_items} item(s) (max_items)"


def _loop_warning(task: Task, playbook: Playbook) -> str | None:
    """A looped task's warning: its list known only at run time, or, for an expression
    of `vars` alone (read as `noetl preview` reads it), a list that would fail it."""
    if task.loop is None or not isinstance(task.loop.over, str):
        return None
    where = f"task {task.name} loops over {task.loop.over!r}"
    items = _over_from_vars(task, playbook)
    if items is not None and not isinstance(items, list | tuple):
        return (f"{where}, which gives {type(items).__name__} from vars, not a list: the "
                "task fails (error type template)")
    if items is not None and len(items) > task.loop.max_items:
        return (f"{where}, which gives {len(items)} items from vars: more than max_items "
                f"{task.loop.max_items}, the task fails (error type loop)")
    return (f"{where}, known only at run time: its list is bounded by max_items alone "
            f"({task.loop.max_items}); set loop.max_items to what you expect")


def _over_from_vars(task: Task, playbook: Playbook) -> object | None:
    """What a loop's `over` expression gives from `vars` and `workflow` alone; None if it
    does not render so (it reads outputs or inputs)."""
    assert task.loop is not None and isinstance(task.loop.over, str)
    context = {"vars": dict(playbook.vars),
               "workflow": {"id": "lint", "name": playbook.name}, "tasks": {}}
    try:
        items: object = render_value(condition_source(task.loop.over), context)
    except TemplateError:
        return None
    return items


def _per_run(task: Task, step: Step) -> int:
    """At most how often a step runs in one run of its task.

    Every restart the task's supervisor allows may be spent on this step, or
    rerun it from the first step (one_for_all); a temporary step is never
    restarted itself, so only one_for_all reruns it.
    """
    restarts = task.supervision.max_restarts
    if step.restart is Restart.TEMPORARY and task.supervision.strategy is not Strategy.ONE_FOR_ALL:
        return 1
    return restarts + 1


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
