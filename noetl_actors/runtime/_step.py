"""`StepActor`: one attempt at one step: render its input, run its plugin.

The actor renders the step's `with:` in its template context, hands it to
a `StepRunner`, tells its task the output and stops (a normal exit). Any
failure is an exception, so the task's supervisor sees a crash and applies
the playbook's policy.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import attrs
import pykka

from noetl_actors.playbook import Step, render_value
from noetl_actors.supervision import Clock, ExitReason, SupervisedActor

__all__ = [
    "UNFENCED",
    "Fence",
    "StepAttempt",
    "StepFactory",
    "StepRunner",
    "error_category",
    "local_steps",
]


class StepRunner(Protocol):
    """Runs one attempt of a step's plugin and returns its output (JSON-ready).

    Called on the step actor's thread; raise to fail the attempt. The
    exception's class name is the error type `on_error:` matches.
    """

    def __call__(self, step: Step, inputs: Mapping[str, Any], attempt: int) -> Any: ...


@attrs.frozen(kw_only=True)
class StepAttempt:
    """What a task gives a `StepFactory` for the actor of one attempt of a step."""

    step: Step
    task: pykka.ActorRef[Any]
    """The task's supervisor: the step tells it `StepDone` when it finished."""
    task_name: str
    context: Mapping[str, Any]
    """The template context: vars, workflow, outputs of earlier steps and needed tasks."""
    number: int
    """The attempt number, from 1, counted per step across restarts of its task."""
    clock: Clock
    adopted: bool = False
    """Sent by the workflow's previous owner and maybe still running on a worker (a
    workflow taken over): wait for its events, do not send it again."""


class Fence(Protocol):
    """A node's hold on a workflow it owns (its lease), as the workflow's actors see it.

    A step sends commands, and the node writes records, only while `allows()`:
    a node paused past its lease must not act for a workflow another may own by
    now. Once `lost`, it lets the workflow go, and its steps send nothing more
    (not even the cancels of their attempts: those are the new owner's now).
    """

    @property
    def epoch(self) -> int: ...

    @property
    def lost(self) -> bool: ...

    def allows(self) -> bool: ...


@attrs.frozen
class _Unfenced:
    """The fence of a workflow no other node can take over (`noetl run`'s)."""

    epoch: int = 0
    lost: bool = False

    def allows(self) -> bool:
        return True


UNFENCED: Fence = _Unfenced()


class StepFactory(Protocol):
    """Makes the actor of one attempt of a step (called by its task, on the task's thread).

    `local_steps(run)` runs plugins right in the step actor (the preview);
    the NATS runtime sends a command to a worker and waits for its events.
    """

    def __call__(self, attempt: StepAttempt) -> SupervisedActor: ...


def local_steps(run: StepRunner) -> StepFactory:
    """Step actors that call `run` themselves, on their own thread."""
    return lambda attempt: StepActor(attempt, run=run)


def error_category(reason: ExitReason) -> tuple[str, ...]:
    """The `on_error:` keys that can match an exit, most specific first."""
    error_type = reason.error_type or ""
    if error_type in ("timeout", "template"):
        return (error_type,)
    return (error_type, "crash") if error_type else ("crash",)


@attrs.frozen
class StepDone:
    """Told to the task by a step that finished, just before it stops."""

    step: str
    output: Any


@attrs.frozen
class _Run:
    pass


class StepActor(SupervisedActor):
    """Runs one attempt of `step` and reports to `task`."""

    def __init__(self, attempt: StepAttempt, *, run: StepRunner) -> None:
        super().__init__()
        self.step = attempt.step
        self.attempt = attempt.number
        self._task = attempt.task
        self._context = attempt.context
        self._run = run

    def on_start(self) -> None:
        self.actor_ref.tell(_Run())

    def on_receive(self, message: Any) -> Any:
        if not isinstance(message, _Run):
            return super().on_receive(message)
        inputs = render_value(dict(self.step.with_), {**self._context, "attempt": self.attempt},
                              timeout=self.step.timeout)
        output = self._run(self.step, inputs, self.attempt)
        self._task.tell(StepDone(self.step.name, output))
        self.stop()
        return None
