"""Taking a workflow over: what its history says was done, and steps that replay it.

A node that takes over a dead owner's workflow builds its tree again from
the playbook and lets it run from the start, fast-forwarded by what the
history (the ``NOETL_EVENTS`` stream) says:

- a step whose latest attempt succeeded in its task's current round is
  *replayed*: its actor hands the recorded output to its task and exits at
  once; nothing is sent, its plugin does not run again;
- a step whose latest attempt has no end the owner acted on is *adopted*:
  its actor waits for that attempt's events (its worker may still run it;
  an end that came while no one owned the workflow is handed to it from the
  history), and takes silence for a lost worker, as for any attempt;
- every other step runs as usual, its attempt numbers going on from the
  highest one known (history and claims), and each supervisor's restart
  intensity counts the restarts of its predecessor (`recent_restarts`).

What cannot be read from workers' events is in the workflow's *journal*,
lifecycle entries of kind ``journal`` its tasks write: a one_for_all task
starting over (its outputs discarded), an error kept as a step's output
(``on_error: continue``). Entries written by an owner that had lost the
workflow (an epoch older than the latest ``moved``) are ignored.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

import attrs

from noetl_actors.errors import MalformedMessage
from noetl_actors.playbook import Playbook
from noetl_actors.runtime._messages import (
    STEP_ID_SEPARATOR,
    Event,
    EventStatus,
    split_iteration,
)
from noetl_actors.runtime._step import StepAttempt, StepDone, StepFactory
from noetl_actors.supervision import ExitKind, ExitReason, SupervisedActor

__all__ = ["JOURNAL", "MOVED", "Journal", "ResumeState", "read_history", "resuming_steps"]

JOURNAL = "journal"
"""The lifecycle kind of a workflow's journal entries."""
MOVED = "moved"
"""The lifecycle kind that says a workflow changed owner (`from`, `to`, `epoch`)."""

StepKey = tuple[str, str]
"""(task, step); the task of a looped task's step is its iteration's, ``t/3``."""


class _Steps:
    """The steps of a playbook, as history keys: ``(t, s)``, or ``(t/3, s)`` for the
    steps of iteration 3 of a looped task `t` (`in` is all `read_history` asks)."""

    def __init__(self, playbook: Playbook) -> None:
        self._plain = {(task.name, step.name) for task in playbook.tasks if task.loop is None
                       for step in task.steps}
        self._looped = {(task.name, step.name) for task in playbook.tasks
                        if task.loop is not None for step in task.steps}
        self.looped_tasks = {task for task, _ in self._looped}

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, tuple) or len(key) != 2:
            return False
        if key in self._plain:
            return True
        base, index = split_iteration(key[0])
        return index is not None and (base, key[1]) in self._looped


class Journal(Protocol):
    """Keeps one entry of a workflow's journal (a served node publishes it on NATS)."""

    def __call__(self, entry: Mapping[str, Any]) -> None: ...


@attrs.define
class ResumeState:
    """A workflow's progress as its history tells it (see `read_history`)."""

    done: dict[StepKey, tuple[int, Any]] = attrs.field(factory=dict)
    """Steps finished in their task's current round: attempt number and output."""
    attempts: dict[StepKey, int] = attrs.field(factory=dict)
    """The highest attempt number known per step."""
    adopted: dict[StepKey, int] = attrs.field(factory=dict)
    """Attempts whose end no owner acted on: the new owner waits for (or takes) it."""
    ends: dict[StepKey, Event] = attrs.field(factory=dict)
    """The end, from the history, of an adopted attempt that has one."""
    restarts: dict[str, list[float]] = attrs.field(factory=dict)
    """Wall times of restarts per supervisor: a task's name (its steps' restarts since
    its last start), or "" (the workflow's, of its tasks)."""
    epoch: int = 0
    """The highest owner epoch the history names."""

    def counts(self) -> dict[StepKey, int]:
        """Attempt counts to go on from: a replayed or adopted step's next attempt is the
        recorded one (so its number is kept), any other's the one after the highest."""
        counts = dict(self.attempts)
        for key, (attempt, _) in self.done.items():
            counts[key] = attempt - 1
        for key, attempt in self.adopted.items():
            counts[key] = attempt - 1
        return counts

    def recent_restarts(self, supervisor: str) -> list[float]:
        """How many seconds ago each restart of `supervisor` was (taken once)."""
        now = time.time()
        return [max(now - at, 0.0) for at in self.restarts.pop(supervisor, [])]


def read_history(playbook: Playbook, history: Iterable[Mapping[str, Any]], *,
                 claimed: Iterable[tuple[StepKey, int]] = ()) -> ResumeState:
    """What a workflow's history (`Node.history` entries, in order) says was done.

    `claimed` adds the attempts workers claimed (``((task, step), attempt)``): one may
    have been claimed by a worker that never said anything of it before the owner died.
    """
    steps = _Steps(playbook)
    state = ResumeState()
    finals: dict[StepKey, Event] = {}
    acted: set[StepKey] = set()
    decided: set[tuple[str, ...]] = set()
    for entry in history:
        if str(entry.get("subject", "")).startswith("event."):
            _on_worker_event(state, steps, finals, acted, entry)
        else:
            _on_lifecycle(state, steps, acted, decided, entry)
    for key, attempt in claimed:
        if key in steps:
            state.attempts[key] = max(state.attempts.get(key, 0), attempt)
    for key, attempt in state.attempts.items():
        done = state.done.get(key)
        if done is not None and done[0] != attempt:
            del state.done[key]  # a later attempt was sent: that one counts
        if key in state.done:
            continue
        end = finals.get(key)
        if end is None or end.attempt != attempt:
            state.adopted[key] = attempt  # sent, and no end known
        elif end.status is EventStatus.FAILED and key not in acted:
            state.adopted[key] = attempt  # it failed, and no owner decided what next
            state.ends[key] = end
    return state


def _on_worker_event(state: ResumeState, steps: _Steps, finals: dict[StepKey, Event],
                     acted: set[StepKey], entry: Mapping[str, Any]) -> None:
    try:
        event = Event.from_data({k: v for k, v in entry.items() if k != "subject"})
    except MalformedMessage:
        return
    task, _, step = event.step_id.partition(STEP_ID_SEPARATOR)
    key = (task, step)
    if key not in steps or event.attempt < state.attempts.get(key, 0):
        return  # not this playbook's, or a late word of an older attempt
    state.attempts[key] = event.attempt
    if event.status.final:
        finals[key] = event
        acted.discard(key)
        if event.status is EventStatus.SUCCEEDED:
            state.done[key] = (event.attempt, event.output)


def _on_lifecycle(state: ResumeState, steps: _Steps, acted: set[StepKey],
                  decided: set[tuple[str, ...]], entry: Mapping[str, Any]) -> None:
    """`decided`: the children (path parts) whose restart was decided with a backoff
    (``backing_off``) and has not happened yet (``restarted``).

    A supervisor counts a restart when it decides it, before its backoff: the
    ``backing_off`` is the restart, for the intensity, and the ``restarted``
    that follows it is not a second one. An owner that died during the backoff
    left only the ``backing_off``; the restart it had counted still counts.
    """
    kind = entry.get("kind")
    epoch = entry.get("epoch")
    epoch = epoch if isinstance(epoch, int) else 0
    if kind == MOVED:
        state.epoch = max(state.epoch, epoch)
        return
    if epoch < state.epoch:
        return  # written by an owner that had lost the workflow
    if kind == JOURNAL:
        key = (str(entry.get("task")), str(entry.get("step")))
        if entry.get("what") == "reset":
            for done in [k for k in state.done if k[0] == key[0]]:
                del state.done[done]
        elif entry.get("what") == "output" and key in steps:
            attempt = entry.get("attempt")
            attempt = attempt if isinstance(attempt, int) else state.attempts.get(key, 0)
            state.done[key] = (attempt, entry.get("output"))
            acted.add(key)
        return
    parts = str(entry.get("path", "")).strip("/").split("/")[3:]  # past /<node>/workflows/<id>
    if len(parts) > 1 and parts[0] in steps.looped_tasks:
        if len(parts) == 2:
            return  # an iteration: its loop allows it no restart; its steps say the rest
        parts = [f"{parts[0]}/{parts[1]}", *parts[2:]]  # a step of iteration t/3: as a task's
    at = entry.get("at")
    at = float(at) if isinstance(at, (int, float)) else time.time()
    restart = kind in ("restarted", "backing_off")
    counted = restart and (kind == "backing_off" or tuple(parts) not in decided)
    if kind == "backing_off":
        decided.add(tuple(parts))
    elif kind == "restarted":
        decided.discard(tuple(parts))
    if restart and len(parts) == 1:
        if counted:
            state.restarts.setdefault("", []).append(at)
        for name in [n for n in state.restarts if split_iteration(n)[0] == parts[0]]:
            del state.restarts[name]  # a new task supervisor (or loop): its own window
        for done in [k for k in state.done if split_iteration(k[0])[0] == parts[0]]:
            del state.done[done]  # a task (a loop: all its iterations) starting again
    elif len(parts) == 2 and (parts[0], parts[1]) in steps:
        key = (parts[0], parts[1])
        if restart:
            if counted:
                state.restarts.setdefault(parts[0], []).append(at)
            state.done.pop(key, None)
        if kind in ("restarted", "exited"):
            acted.add(key)


def resuming_steps(steps: StepFactory, state: ResumeState) -> StepFactory:
    """`steps`, except that a step `state` says is done replays its output (once), and
    one with an attempt in flight adopts it (once)."""

    def make(attempt: StepAttempt) -> SupervisedActor:
        key = (attempt.task_name, attempt.step.name)
        done = state.done.pop(key, None)
        if done is not None:
            return ReplayedStep(attempt, done[1])
        if state.adopted.pop(key, None) is not None:
            return steps(attrs.evolve(attempt, adopted=True))
        return steps(attempt)

    return make


class ReplayedStep(SupervisedActor):
    """A step that had succeeded before its workflow was taken over: its output again."""

    hosted = True

    def __init__(self, attempt: StepAttempt, output: Any) -> None:
        super().__init__()
        self._attempt = attempt
        self._output = output

    def on_start(self) -> None:
        self._attempt.task.tell(StepDone(self._attempt.step.name, self._output))
        self.exit_with(ExitReason(ExitKind.NORMAL, path=self.path, message="replayed"))
