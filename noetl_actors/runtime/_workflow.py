"""`WorkflowSupervisor`: one run of a playbook, its tasks under a policy.

Tasks run in parallel, each as soon as the tasks it `needs` (and those that
may route to it with `next:`) have finished; `when:` and routes skip tasks.
The workflow ends normally when every task finished, and fails (kind
`gave_up`, with the reasons) when a task cannot finish: it gave up past
the workflow's own limits, or was stopped by `on_error: stop`.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Mapping
from typing import Any

from noetl_actors.errors import TemplateError
from noetl_actors.playbook import Playbook, Task, render_value
from noetl_actors.runtime._loop import new_loop
from noetl_actors.runtime._resume import Journal, ResumeState, resuming_steps
from noetl_actors.runtime._skip import Skip, decide
from noetl_actors.runtime._step import StepFactory
from noetl_actors.runtime._task import AttemptCounter, TaskDone, TaskSupervisor
from noetl_actors.supervision import (
    INFINITY,
    ActorState,
    Child,
    ChildSpec,
    ChildType,
    ExitKind,
    ExitReason,
    Restart,
    SupervisedActor,
    Supervisor,
)

__all__ = ["WorkflowSupervisor", "new_workflow_id"]


def new_workflow_id() -> str:
    """A readable, unique, subject-safe id: ``wf-`` and 12 hex digits."""
    return f"wf-{uuid.uuid4().hex[:12]}"


class WorkflowSupervisor(Supervisor):
    """Supervises the tasks of one workflow (one run of `playbook`)."""

    def __init__(
        self, playbook: Playbook, *, steps: StepFactory, workflow_id: str | None = None,
        journal: Journal | None = None, resume: ResumeState | None = None,
    ) -> None:
        """`resume`: what the history of a workflow taken over says was done (its steps
        replay, adopt or go on from it); `journal` keeps what that history needs."""
        self.playbook = playbook
        self.workflow_id = workflow_id or new_workflow_id()
        self._steps = steps if resume is None else resuming_steps(steps, resume)
        self._journal = journal
        self._resume = resume
        self.outputs: dict[str, Mapping[str, Any]] = {}
        self._tasks_context: dict[str, Any] = {}
        """``tasks`` of the template context, kept with `outputs` (a task's start copies
        it, rather than rebuilding it from every output: 10,000 tasks made that
        quadratic)."""
        self.skipped: set[str] = set()
        self._routers = playbook.routers()
        self._taken: dict[str, dict[str, dict[str, Any]]] = {}
        """Each task some `next:` names: the tasks whose route to it was taken, and the
        inputs each gave it (its route's `with`, rendered)."""
        self._tasks = {task.name: task for task in playbook.tasks}
        self._needed_by: dict[str, list[str]] = {}
        """The tasks that wait for each task (they need it, or it may route to them):
        those that may start when it is done."""
        for task in playbook.tasks:
            for need in task.needs:
                self._needed_by.setdefault(need, []).append(task.name)
        for task_name, routers in self._routers.items():
            for router in routers:
                self._needed_by.setdefault(router, []).append(task_name)
        self.failures: list[ExitReason] = []
        self.attempts = AttemptCounter()
        if resume is not None:
            self.attempts.carry_over(resume.counts())
        specs = [
            ChildSpec(id=task.name, start=functools.partial(self._new_task, task),
                      restart=Restart.TRANSIENT, type=ChildType.SUPERVISOR, shutdown=INFINITY)
            for task in playbook.tasks
        ]
        super().__init__(playbook.supervision, specs, recent_restarts=(
            resume.recent_restarts("") if resume is not None else ()))

    def _template_context(self) -> dict[str, Any]:
        """What a task's templates and conditions read: vars, the workflow, and the
        outputs of the tasks that finished."""
        return {
            "vars": dict(self.playbook.vars),
            "workflow": {"id": self.workflow_id, "name": self.playbook.name},
            "tasks": dict(self._tasks_context),
        }

    def _new_task(self, task: Task) -> SupervisedActor:
        context = self._template_context()
        routers = self._routers.get(task.name, ())
        given = self._taken.get(task.name, {})
        context["inputs"] = {key: value for router in routers
                             for key, value in given.get(router, {}).items()}
        unmet = [need for need in task.needs if need in task.needs_succeeded
                 and need in self.skipped]
        why = (f"it needs task {unmet[0]!r} to have run, and it was skipped" if unmet
               else f"not reached: no route to it was taken (from {', '.join(routers)})"
               if routers and not self._taken.get(task.name)
               else decide(task.when, context))
        if why is not None:
            workflow, done = self.actor_ref, TaskDone(
                task.name, dict.fromkeys((step.name for step in task.steps), None),
                skipped=True)
            return Skip(why, done=lambda: workflow.tell(done))
        if task.loop is not None:
            return new_loop(task, workflow=self.actor_ref, context=context, steps=self._steps,
                            attempts=self.attempts, journal=self._journal, resume=self._resume)
        restarts = self._resume.recent_restarts(task.name) if self._resume is not None else ()
        return TaskSupervisor(task, workflow=self.actor_ref, context=context, steps=self._steps,
                              attempts=self.attempts, journal=self._journal,
                              recent_restarts=restarts)

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, TaskDone):
            self.outputs[message.task] = message.outputs
            self._tasks_context[message.task] = {
                "steps": {step: {"output": out} for step, out in message.outputs.items()}}
            if message.skipped:
                self.skipped.add(message.task)
            else:
                self._follow_routes(self._tasks[message.task])
            return None
        return super().on_receive(message)

    def _follow_routes(self, task: Task) -> None:
        """Decide the routes of `task`'s `next:`, which has just finished."""
        context = self._template_context()
        for route in task.next:
            why = decide(route.when, context)
            if why is None:
                try:
                    given = render_value(dict(route.with_), context)
                except TemplateError as error:
                    why = error
                else:
                    self._taken.setdefault(route.task, {})[task.name] = given
            if isinstance(why, TemplateError):
                self.exit_with(ExitReason(
                    ExitKind.GAVE_UP, path=self.path, error_type=why.error_type,
                    message=f"the route from task {task.name!r} to {route.task!r}: {why}"))

    def may_start(self, child: Child) -> bool:
        """Once the tasks it needs, and those that may route to it, finished."""
        return all(need in self.outputs for need in self._tasks[child.id].needs) and \
            all(router in self.outputs for router in self._routers.get(child.id, ()))

    def after_retire(self, child: Child, reason: ExitReason) -> None:
        # Per task done, only its dependents and the latest tasks are looked at: a look at
        # every task each time was quadratic (10,000 parallel tasks: ~10^8 looks).
        if child.id not in self.outputs:
            self.failures.append(reason)
        children = self.children
        self.start_waiting([children[name] for name in self._needed_by.get(child.id, ())
                            if name in children])
        if any(c.actor is not None or c.state is ActorState.BACKING_OFF
               for c in reversed(children.values())):  # type: ignore[call-overload]
            # (a dict's view: reversed, the last started, which end last, come first)
            return
        if len(self.outputs) == len(self.playbook.tasks):
            self.exit_with(ExitReason(ExitKind.NORMAL, path=self.path, message="all tasks done"))
            return
        never = sorted(t.name for t in self.playbook.tasks if t.name not in self.outputs)
        self.exit_with(ExitReason(
            ExitKind.GAVE_UP, path=self.path,
            message=f"task(s) {', '.join(never)} did not finish",
            cause=self.failures[0] if self.failures else None,
        ))
