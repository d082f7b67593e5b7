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

from noetl_actors.errors import StepFailed, StepTimeout
from noetl_actors.playbook import Step, render_value
from noetl_actors.supervision import Clock, ExitReason, SupervisedActor

__all__ = [
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


class StepFactory(Protocol):
    """Makes the actor of one attempt of a step (called by its task, on the task's thread).

    `local_steps(run)` runs plugins right in the step actor (the preview);
    the NATS runtime sends a command to a worker and waits for its events.
    """

    def __call__(
        self,
        step: Step,
        *,
        task: pykka.ActorRef[Any],
        task_name: str,
        context: Mapping[str, Any],
        attempt: int,
        clock: Clock,
    ) -> SupervisedActor: ...


def local_steps(run: StepRunner) -> StepFactory:
    """Step actors that call `run` themselves, on their own thread."""

    def make(
        step: Step,
        *,
        task: pykka.ActorRef[Any],
        task_name: str,
        context: Mapping[str, Any],
        attempt: int,
        clock: Clock,
    ) -> SupervisedActor:
        return StepActor(step, task=task, context=context, run=run, attempt=attempt)

    return make


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

    def __init__(
        self,
        step: Step,
        *,
        task: pykka.ActorRef[Any],
        context: Mapping[str, Any],
        run: StepRunner,
        attempt: int,
    ) -> None:
        super().__init__()
        self.step = step
        self.attempt = attempt
        self._task = task
        self._context = context
        self._run = run

    def on_start(self) -> None:
        self.actor_ref.tell(_Run())

    def on_receive(self, message: Any) -> Any:
        if not isinstance(message, _Run):
            return super().on_receive(message)
        inputs = render_value(dict(self.step.with_), {**self._context, "attempt": self.attempt})
        output = self._run(self.step, inputs, self.attempt)
        self._task.tell(StepDone(self.step.name, output))
        self.stop()
        return None
