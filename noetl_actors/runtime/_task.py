"""`TaskSupervisor`: the steps of a task, one after another, under a policy.

Only one step runs at a time. When a step finishes, the next starts; when
the last finishes, the task tells its workflow the outputs and exits
normally. Failures go through the kernel (intensity, backoff, escalation)
with two twists that sequential steps need:

- `one_for_all` means "the task again from its first step": every step is
  started again in order, and the outputs so far are discarded;
- `on_error:` of a step can turn an error into `continue` (record it, go on),
  `stop` (the task ends, failed, and is not restarted) or `escalate` (the
  task fails at once and its workflow decides), before any restart.
"""

from __future__ import annotations

import functools
import itertools
import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import pykka

from noetl_actors.playbook import ErrorAction, Step, Task
from noetl_actors.runtime._resume import JOURNAL, Journal
from noetl_actors.runtime._skip import Skip, decide, is_skip
from noetl_actors.runtime._step import StepAttempt, StepDone, StepFactory, error_category
from noetl_actors.supervision import (
    ActorState,
    Child,
    ChildSpec,
    ExitKind,
    ExitReason,
    Restart,
    Strategy,
    SupervisedActor,
    Supervisor,
)

__all__ = ["AttemptCounter", "TaskDone", "TaskSupervisor"]


class AttemptCounter:
    """Attempt numbers per step of one workflow run, from 1, across task restarts.

    Owned by the workflow, used by its tasks (on its thread, or their own): an
    attempt's id must never repeat, or a worker would take a new attempt for
    one it already ran.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str, str]] = Counter()

    def carry_over(self, counts: Mapping[tuple[str, str], int]) -> None:
        """Go on from the counts of the run this one continues (a workflow taken over)."""
        with self._lock:
            self._counts.update(counts)

    def next(self, task: str, step: str) -> int:
        with self._lock:
            self._counts[(task, step)] += 1
            return self._counts[(task, step)]

    def count(self, task: str, step: str) -> int:
        with self._lock:
            return self._counts[(task, step)]


@attrs.frozen
class TaskDone:
    """Told to the workflow by a task whose steps all finished, or that was skipped."""

    task: str
    outputs: Mapping[str, Any]
    skipped: bool = False


class TaskSupervisor(Supervisor):
    """Supervises the steps of one task of one workflow.

    Hosted: every task of a workflow runs on the workflow's thread, with its
    (hosted) steps. A thread per task cost a context switch per message, and
    with fifty tasks most of the CPU went to switching between them.
    """

    hosted = True

    def __init__(
        self,
        task: Task,
        *,
        workflow: pykka.ActorRef[Any],
        context: Mapping[str, Any],
        steps: StepFactory,
        attempts: AttemptCounter | None = None,
        journal: Journal | None = None,
        recent_restarts: Sequence[float] = (),
    ) -> None:
        """`journal` keeps what a takeover cannot read from the workers' events (see
        `read_history`); `recent_restarts` are its predecessor's, on another node."""
        self.task = task
        self._journal = journal
        self._workflow = workflow
        self._base_context = context
        self._make_step = steps
        self.outputs: dict[str, Any] = {}
        self._steps_context: dict[str, Any] = {}
        """``steps`` of the template context: ``{name: {"output": output}}``, kept with
        `outputs` (copied per step, not rebuilt from every output)."""
        self.attempts = attempts or AttemptCounter()
        self._step_named = {step.name: step for step in task.steps}
        self._order = [step.name for step in task.steps]
        """Child ids in start order (steps, then any started by `start_child`)."""
        self._done = 0
        """How many children at the front of `_order` have finished (stopped, or gone):
        the turn-taking scans start after them (O(1) per step, not O(steps))."""
        super().__init__(task.supervision, [
            ChildSpec(id=step.name, start=functools.partial(self._new_step, step),
                      restart=step.restart)
            for step in task.steps
        ], recent_restarts=recent_restarts)

    def _new_step(self, step: Step) -> SupervisedActor:
        context = {**self._base_context, "steps": dict(self._steps_context)}
        why = decide(step.when, {
            **context, "attempt": self.attempts.count(self.task.name, step.name) + 1})
        if why is not None:
            task = self.actor_ref
            return Skip(why, done=lambda: task.tell(StepDone(step.name, None)))
        return self._make_step(StepAttempt(
            step=step, task=self.actor_ref, task_name=self.task.name, context=context,
            number=self.attempts.next(self.task.name, step.name), clock=self.context.clock,
        ))

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, StepDone):
            self._set_output(message.step, message.output)
            return None
        return super().on_receive(message)

    def _set_output(self, step: str, output: Any) -> None:
        self.outputs[step] = output
        self._steps_context[step] = {"output": output}

    # -- one step at a time (the kernel's hooks, docs/supervision.md) ------------

    def may_start(self, child: Child) -> bool:
        return child is self._next_step()

    def _start_next_step(self) -> None:
        # Only the next step can start: no need to ask every waiting step (O(n) per step).
        step = self._next_step()
        if step is not None:
            self.start_waiting([step])

    def _next_step(self) -> Child | None:
        """The first step that has not finished, if none is running."""
        waiting = (ActorState.STARTING, ActorState.RESTARTING, ActorState.BACKING_OFF)
        self._skip_finished()
        children = self.children
        for child_id in itertools.islice(self._order, self._done, None):
            child = children.get(child_id)
            if child is None:
                continue
            if child.actor is not None:
                return None
            if child.state in waiting:
                return child
        return None

    def _skip_finished(self) -> None:
        """Move `_done` past the children at the front that have finished."""
        order, children = self._order, self.children
        while self._done < len(order):
            child = children.get(order[self._done])
            if child is not None and (child.actor is not None
                                      or child.state is not ActorState.STOPPED):
                return
            self._done += 1

    def after_retire(self, child: Child, reason: ExitReason) -> None:
        self._start_next_step()
        self._skip_finished()
        if self._done < len(self._order):
            return  # a step runs, or waits for a backoff to end
        self._workflow.tell(TaskDone(self.task.name, dict(self.outputs)))
        self.exit_with(ExitReason(ExitKind.NORMAL, path=self.path, message="all steps done"))

    def restart_group(self, child: Child) -> list[Child]:
        if self.flags.strategy is not Strategy.ONE_FOR_ALL:
            return [child]
        # The task again from its first step: what the steps produced is discarded.
        self._write_journal("reset", child.id)
        self.outputs.clear()
        self._steps_context.clear()
        self._done = 0
        return self.reset_children()

    def _write_journal(self, what: str, step: str, **fields: Any) -> None:
        if self._journal is not None:
            self._journal({"kind": JOURNAL, "what": what, "task": self.task.name, "step": step,
                           **fields})

    # -- dynamic verbs: a finished child can run again, a new one can come ----------

    def start_child(self, spec: ChildSpec) -> pykka.ActorRef[Any]:
        if spec.id not in self._order:
            self._order.append(spec.id)
        self._done = 0  # its id may be one of a finished (deleted) step's
        return super().start_child(spec)

    def restart_child(self, child_id: str) -> pykka.ActorRef[Any]:
        self._done = 0
        return super().restart_child(child_id)

    # -- on_error ----------------------------------------------------------------

    def should_retire(self, child: Child, reason: ExitReason) -> bool:
        if is_skip(reason):
            return True  # done, even for a `permanent` step
        step = self._step_named[child.id]
        action = next(
            (step.on_error[key] for key in error_category(reason) if key in step.on_error),
            ErrorAction.RESTART,
        )
        if not reason.is_abnormal or (
            action is ErrorAction.RESTART and step.restart is not Restart.TEMPORARY
        ):
            return False  # the kernel decides: restart, or (a normal exit) retire
        if action in (ErrorAction.RESTART, ErrorAction.CONTINUE):
            # A temporary step, or `continue`: the failure is its output; go on.
            output = {"error": {"type": reason.error_type, "message": reason.message}}
            self._set_output(step.name, output)
            self._write_journal("output", step.name, output=output,
                                attempt=self.attempts.count(self.task.name, step.name))
            return True
        kind = ExitKind.SHUTDOWN if action is ErrorAction.STOP else ExitKind.GAVE_UP
        verb = "stopped" if action is ErrorAction.STOP else "escalated"
        self.exit_with(ExitReason(kind, path=self.path, cause=reason,
                                  message=f"{verb}: step {step.name!r} failed ({action.value})"))
        return True
