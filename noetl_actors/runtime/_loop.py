"""`LoopSupervisor`: a task with `loop:`, run once per item (docs/playbooks.md, "Loops").

The workflow's child for a looped task `t` is a loop supervisor; its children
are the iterations ``0``, ``1``, ..., each a `TaskSupervisor` of the task
renamed ``t/<index>`` (so its steps' ids are ``t/<index>=<step>``: one token
of a NATS subject and of a JetStream KV key) with the item and its index in
its templates' context. At most `max_in_flight` iterations run at once,
started in item order. An iteration that gives up fails the loop (its own
flags allow no restart): the workflow's supervision then treats the looped
task as any other child. When every iteration finished, the workflow is told
each step's outputs as a list, in item order.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import pykka

from noetl_actors.errors import LoopTooLong, TemplateError
from noetl_actors.playbook import LOOP_INDEX, Loop, Task, condition_source, render_value
from noetl_actors.runtime._messages import iteration_name, split_iteration
from noetl_actors.runtime._resume import Journal, ResumeState
from noetl_actors.runtime._step import StepFactory
from noetl_actors.runtime._task import AttemptCounter, TaskDone, TaskSupervisor
from noetl_actors.supervision import (
    INFINITY,
    Child,
    ChildSpec,
    ChildType,
    EventKind,
    ExitKind,
    ExitReason,
    Restart,
    Strategy,
    SupervisedActor,
    Supervisor,
    SupervisorFlags,
)

__all__ = ["LOOP_DETAIL", "LoopSupervisor", "loop_items", "new_loop"]

LOOP_FLAGS = SupervisorFlags(strategy=Strategy.ONE_FOR_ONE, max_restarts=0, within=60.0)
"""An iteration that gave up fails its loop: no restart of it inside the loop."""
LOOP_DETAIL = "loop items: "
"""The `detail` of the lifecycle event a loop sends when it knows its items (how many
follows), on its own path, kind ``started``: what `RunReport` shows as ``loop.items``."""


def loop_items(loop: Loop, context: Mapping[str, Any]) -> list[Any]:
    """The items of `loop` in `context`.

    Raises:
        TemplateError: `over` did not render, or gave something else than a list.
        LoopTooLong: more items than `max_items`.
    """
    if isinstance(loop.over, tuple):
        items: Any = list(loop.over)
    else:
        items = render_value(condition_source(loop.over), context)
        if not isinstance(items, list | tuple):
            shown = repr(items)
            shown = shown if len(shown) <= 80 else shown[:77] + "..."
            raise TemplateError(f"loop: over {loop.over!r} gave {type(items).__name__} "
                                f"{shown}, not a list")
    if len(items) > loop.max_items:
        raise LoopTooLong(f"loop over {len(items)} items: more than max_items "
                          f"{loop.max_items}")
    return list(items)


def new_loop(task: Task, *, workflow: pykka.ActorRef[Any], context: Mapping[str, Any],
             steps: StepFactory, attempts: AttemptCounter, journal: Journal | None,
             resume: ResumeState | None) -> SupervisedActor:
    """The workflow's child for looped `task`: its loop, or (its items could not be
    had) an actor that fails with why."""
    assert task.loop is not None
    try:
        items = loop_items(task.loop, context)
    except (TemplateError, LoopTooLong) as error:
        return _Failed(error)
    return LoopSupervisor(task, items, workflow=workflow, context=context, steps=steps,
                          attempts=attempts, journal=journal, resume=resume)


@attrs.frozen
class _Go:
    pass


class _Failed(SupervisedActor):
    """In place of a loop whose items could not be had: fails on its first turn."""

    hosted = True

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self._error = error

    def on_start(self) -> None:
        self.actor_ref.tell(_Go())

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, _Go):
            raise self._error
        return super().on_receive(message)


class LoopSupervisor(Supervisor):
    """Supervises the iterations of one looped task (hosted on its workflow's thread)."""

    hosted = True

    def __init__(self, task: Task, items: Sequence[Any], *, workflow: pykka.ActorRef[Any],
                 context: Mapping[str, Any], steps: StepFactory, attempts: AttemptCounter,
                 journal: Journal | None = None, resume: ResumeState | None = None) -> None:
        assert task.loop is not None
        self.task = task
        self._items = items
        self._workflow = workflow
        self._base_context = context
        self._steps = steps
        self._attempts = attempts
        self._journal = journal
        self._resume = resume
        self.outputs: list[Mapping[str, Any] | None] = [None] * len(items)
        self._finished = 0
        self._window = task.loop.max_in_flight or len(items)
        """Iterations with an index below this may start: it moves up by one for each
        iteration that finished (O(1) each, whatever the number of items)."""
        super().__init__(LOOP_FLAGS, [
            ChildSpec(id=str(index), start=functools.partial(self._new_iteration, index),
                      restart=Restart.TRANSIENT, type=ChildType.SUPERVISOR, shutdown=INFINITY)
            for index in range(len(items))
        ])

    def _new_iteration(self, index: int) -> SupervisedActor:
        assert self.task.loop is not None
        name = iteration_name(self.task.name, index)
        context = {**self._base_context, self.task.loop.as_: self._items[index],
                   LOOP_INDEX: index}
        restarts = self._resume.recent_restarts(name) if self._resume is not None else ()
        return TaskSupervisor(attrs.evolve(self.task, name=name, loop=None),
                              workflow=self.actor_ref, context=context, steps=self._steps,
                              attempts=self._attempts, journal=self._journal,
                              recent_restarts=restarts)

    def on_start(self) -> None:
        self.context.emit(EventKind.STARTED, self.path,
                          detail=f"{LOOP_DETAIL}{len(self._items)}")
        super().on_start()
        if not self._items:
            self.actor_ref.tell(_Go())

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, TaskDone):
            _, index = split_iteration(message.task)
            if index is not None and index < len(self.outputs):
                self.outputs[index] = message.outputs
            return None
        if isinstance(message, _Go):
            self._done()
            return None
        return super().on_receive(message)

    def may_start(self, child: Child) -> bool:
        return int(child.id) < self._window

    def after_retire(self, child: Child, reason: ExitReason) -> None:
        if self.outputs[int(child.id)] is None:
            # It ended without finishing (`on_error: stop`): so does the task, as a
            # task that is stopped; the workflow's supervision decides.
            self.exit_with(ExitReason(ExitKind.SHUTDOWN, path=self.path, cause=reason,
                                      message=f"stopped: iteration {child.id} was stopped"))
            return
        self._finished += 1
        nxt = self.children.get(str(self._window))
        self._window += 1
        if nxt is not None:
            self.start_waiting([nxt])
        if self._finished >= len(self._items):
            self._done()

    def _done(self) -> None:
        """Every iteration finished: each step's output is the list of its iterations'."""
        outputs = {step.name: [(out or {}).get(step.name) for out in self.outputs]
                   for step in self.task.steps}
        self._workflow.tell(TaskDone(self.task.name, outputs))
        self.exit_with(ExitReason(ExitKind.NORMAL, path=self.path,
                                  message=f"all {len(self._items)} iterations done"))
