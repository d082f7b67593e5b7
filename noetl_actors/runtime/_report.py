"""`RunReport`: the state of a workflow, live and at the end.

It listens to two things: the supervision tree's lifecycle events (a task
or step started, exited, restarted) and the workers' events (an attempt's
output or error). From them it keeps, per task and per step, the status,
the starts and attempts, the times, the last output and error, and hands
them out as one document (`to_json`): what `noetl run --json` prints, what
a served node writes as the workflow's record, what the console renders
(`noetl_actors.console.render_document`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from noetl_actors.playbook import Playbook
from noetl_actors.runtime._loop import LOOP_DETAIL
from noetl_actors.runtime._messages import (
    STEP_ID_SEPARATOR,
    Event,
    EventStatus,
    split_iteration,
)
from noetl_actors.runtime._skip import is_skip
from noetl_actors.supervision import (
    EventKind,
    ExitKind,
    ExitReason,
    LifecycleEvent,
)

__all__ = ["RunReport"]


@attrs.define
class _Step:
    status: str = "not_started"
    attempts: int = 0
    queued_at: float | None = None
    """When its (last) attempt's command was sent: the step actor started."""
    started_at: float | None = None
    """When a worker began to run that attempt (its events say): after the wait for a
    worker and in the worker's queue. None until a worker says it runs it."""
    finished_at: float | None = None
    output: Any = None
    error: dict[str, str] | None = None
    waiting: dict[str, Any] | None = None
    """While its attempt waits for a worker: the plugin, what is known of its workers
    (``none`` running, ``busy``, ``unknown``) and since when (`RemoteStepActor`)."""
    skipped: str | None = None
    """Why it was skipped (status ``skipped``): its `when`, or its task's."""


@attrs.define
class _Task:
    status: str = "waiting"
    starts: int = 0
    started_at: float | None = None
    finished_at: float | None = None
    steps: dict[str, _Step] = attrs.field(factory=dict)
    skipped: str | None = None
    looped: bool = False
    items: int | None = None
    """A looped task's number of items, once its loop knows them."""
    iterations: dict[int, _Task] = attrs.field(factory=dict)
    """A looped task's iterations that started (by index): their status and steps."""

    def iteration(self, index: int) -> _Task:
        found = self.iterations.get(index)
        if found is None:
            found = self.iterations[index] = _Task(steps={name: _Step() for name in self.steps})
        return found


class RunReport:
    """Thread-safe: observers call in from supervisor threads and the bridge."""

    def __init__(self, playbook: Playbook, workflow_id: str, *, node_path: str = "/node") -> None:
        self.playbook = playbook
        self.workflow_id = workflow_id
        self._prefix = f"{node_path}/workflows/{workflow_id}"
        self._lock = threading.Lock()
        self.started_at = time.time()
        self.finished_at: float | None = None
        self.status = "running"
        self.reason: ExitReason | None = None
        self._tasks = {
            task.name: _Task(steps={step.name: _Step() for step in task.steps},
                             looped=task.loop is not None)
            for task in playbook.tasks
        }
        self._carried: set[tuple[str, ...]] = set()
        """Tasks (1-tuples) and replayed steps whose next start is their start again on
        the node that took their workflow over: not a new start (`carry_over`)."""

    def carry_over(self, document: Mapping[str, Any],
                   replayed: Iterable[tuple[str, str]]) -> None:
        """Go on from `document`, the record of the run this one continues (a workflow
        taken over); the steps `replayed` keep their times and outputs."""
        with self._lock:
            if isinstance(document.get("started_at"), (int, float)):
                self.started_at = document["started_at"]
            tasks = document.get("tasks")
            for name, task in self._tasks.items():
                self._carried.add((name,))
                was = tasks.get(name) if isinstance(tasks, dict) else None
                if not isinstance(was, dict):
                    continue
                starts = was.get("starts")
                task.starts = starts if isinstance(starts, int) else 0
                task.started_at = was.get("started_at")
                steps = was.get("steps")
                if not isinstance(steps, dict):
                    steps = {}
                for step_name, step in task.steps.items():
                    old = steps.get(step_name)
                    if isinstance(old, dict):
                        for field in attrs.fields(_Step):
                            if field.name in old and field.name != "waiting":
                                setattr(step, field.name, old[field.name])
                        if step.status == "waiting":  # shown so; its attempt is running
                            step.status = "running"
                if task.looped:
                    _carry_iterations(task, was)
            for key in replayed:
                replayed_step = self._step(*key)
                if replayed_step is not None:
                    self._carried.add(key)
                    replayed_step.status = "succeeded"

    def _step(self, task_name: str, step_name: str) -> _Step | None:
        """The record of a step of a task, or of an iteration (``t/3``) of a looped task."""
        base, index = split_iteration(task_name)
        task = self._tasks.get(base)
        if task is None or (index is None) == task.looped:
            return None
        return (task if index is None else task.iteration(index)).steps.get(step_name)

    def attempts(self, task_name: str, step_name: str) -> int:
        """The latest attempt of a step that its workers told of (0: none yet); `task_name`
        as in a step's id (``t/3``: an iteration of a looped task)."""
        with self._lock:
            step = self._step(task_name, step_name)
            return step.attempts if step is not None else 0

    # -- listening -----------------------------------------------------------------

    def on_lifecycle(self, event: LifecycleEvent) -> None:
        if not event.path.startswith(self._prefix + "/"):
            return
        parts = event.path[len(self._prefix) + 1:].split("/")
        with self._lock:
            task = self._tasks.get(parts[0])
            if task is None:
                return
            if task.looped and len(parts) == 1 and event.detail.startswith(LOOP_DETAIL):
                task.items = int(event.detail[len(LOOP_DETAIL):])
                return
            if task.looped and len(parts) > 1:
                if not parts[1].isdigit():
                    return
                if len(parts) == 2:
                    self._on_task(task.iteration(int(parts[1])), event)
                    return
                parts = [f"{parts[0]}/{parts[1]}", *parts[2:]]
                if event.kind is EventKind.STARTED and task.started_at is None:
                    task.started_at = event.at
                task = task.iteration(int(parts[0].rpartition("/")[2]))
            if len(parts) == 1:
                if (parts[0],) in self._carried and event.kind is EventKind.STARTED:
                    self._carried.discard((parts[0],))
                    task.status = "running"
                    return
                self._on_task(task, event)
            elif parts[1] in task.steps:
                if (parts[0], parts[1]) in self._carried and _routine(event):
                    if event.kind is EventKind.EXITED:
                        self._carried.discard((parts[0], parts[1]))
                    return
                if event.kind is EventKind.STARTED and task.started_at is None:
                    task.started_at = event.at  # a task reports itself after its first step
                self._on_step(task.steps[parts[1]], event)

    def _on_task(self, task: _Task, event: LifecycleEvent) -> None:
        if event.kind in (EventKind.STARTED, EventKind.RESTARTED):
            task.starts += 1
            task.status = "running"
            task.started_at = task.started_at or event.at
        elif event.kind is EventKind.EXITED and event.reason is not None:
            task.finished_at = event.at
            task.status = _status(event.reason)
            if task.status == "skipped":
                task.skipped = _why(event.reason)
                task.started_at, task.starts = None, 0
                for step in task.steps.values():
                    step.status, step.skipped = "skipped", "its task was skipped"
        elif event.kind is EventKind.BACKING_OFF:
            task.status = "restarting"

    def _on_step(self, step: _Step, event: LifecycleEvent) -> None:
        step.waiting = None  # a new attempt, or none any more
        if event.kind in (EventKind.STARTED, EventKind.RESTARTED):
            step.status, step.skipped = "running", None  # decided again at each start
            step.queued_at, step.started_at, step.finished_at = event.at, None, None
        elif event.kind is EventKind.EXITED and event.reason is not None:
            step.finished_at = event.at
            step.status = _status(event.reason)
            if step.status == "skipped":
                step.skipped, step.queued_at, step.started_at = _why(event.reason), None, None
                step.output, step.error = None, None  # not an earlier run's
            if event.reason.is_abnormal:
                step.error = {"type": event.reason.error_type or "crash",
                              "message": event.reason.message}

    def on_event(self, event: Event) -> None:
        """A worker's event for one attempt of this workflow."""
        task_name, _, step_name = event.step_id.partition(STEP_ID_SEPARATOR)
        with self._lock:
            step = self._step(task_name, step_name)
            if step is None:
                return
            if event.attempt < step.attempts:
                return  # a late answer of an earlier attempt
            # Any event counts: a short attempt sends its final event only.
            step.attempts = event.attempt
            step.waiting = None  # a worker has it
            if isinstance(event.started_at, (int, float)):
                step.started_at = event.started_at
            if event.status is EventStatus.SUCCEEDED:
                step.output, step.error = event.output, None
            elif event.status is EventStatus.FAILED:
                if event.error_type == "cancelled" and step.error is not None:
                    return  # the worker's answer to the step's own cancel (a timeout, say)
                step.output = None
                step.error = {"type": event.error_type or "crash", "message": event.error_message}

    def waiting(self, step_id: str, attempt: int, state: dict[str, Any] | None) -> None:
        """Attempt `attempt` of `step_id` waits for a worker (`state`: its plugin...), or
        no longer (None). Shown as the step's status ``waiting`` until a worker's event
        for it comes, or the step exits."""
        task_name, _, step_name = step_id.partition(STEP_ID_SEPARATOR)
        with self._lock:
            step = self._step(task_name, step_name)
            if step is None or attempt < step.attempts or step.status != "running":
                return
            step.waiting = dict(state) if state is not None else None

    def finish(self, reason: ExitReason | None, *, cancelled: bool = False) -> None:
        with self._lock:
            self.finished_at = time.time()
            self.reason = reason
            normal = reason is not None and reason.kind is ExitKind.NORMAL
            if normal and any(t.status not in ("succeeded", "skipped")
                              for t in self._tasks.values()):
                cancelled = True  # stopped from outside (its node's stop), not done
            if cancelled:
                self.status = "cancelled"
            elif normal:
                self.status = "succeeded"
            else:
                self.status = "failed"
            for task in self._tasks.values():
                for record in [task, *task.iterations.values()]:
                    for step in record.steps.values():
                        step.waiting = None
                        if step.status == "running":
                            step.status = "cancelled"
                    if record.status in ("running", "restarting"):
                        record.status = "cancelled" if cancelled else "failed"

    # -- showing ---------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """The `noetl run --json` document (see docs/architecture.md)."""
        with self._lock:
            error = None
            if self.status != "succeeded" and self.reason is not None:
                error = {"reason": self.reason.describe(),
                         "chain": [link.summary() for link in self.reason.chain()]}
            elif self.status == "cancelled":
                error = {"reason": "cancelled", "chain": ["cancelled"]}
            return {
                "workflow_id": self.workflow_id,
                "playbook": self.playbook.name,
                "status": self.status,
                "started_at": self.started_at,
                "finished_at": self.finished_at,
                "error": error,
                "tasks": {
                    name: _task_json(task) for name, task in self._tasks.items()
                },
            }


def _task_json(task: _Task) -> dict[str, Any]:
    data: dict[str, Any] = {
        "status": task.status,
        "starts": task.starts,
        "started_at": task.started_at,
        "finished_at": task.finished_at,
        "steps": {name: _step_json(step) for name, step in task.steps.items()},
    }
    if task.skipped is not None:
        data["skipped"] = task.skipped
    if task.looped:
        _loop_json(task, data)
    return data


def _loop_json(task: _Task, data: dict[str, Any]) -> None:
    """A looped task's `loop` counts, its `iterations` (in item order) and, as its
    `steps`, each step over its iterations: the status, times and error of its first
    failed iteration, else of its first running one, else of the latest started; the
    attempts summed; the outputs as a list in item order."""
    items = task.items if task.items is not None else len(task.iterations)
    iterations = [task.iterations.get(index) or _Task(
        status="not_started", steps={name: _Step() for name in task.steps})
        for index in range(items)]
    counts = {"items": items, "succeeded": 0, "failed": 0, "running": 0, "skipped": 0,
              "cancelled": 0}
    for iteration in iterations:
        status = "running" if iteration.status == "restarting" else iteration.status
        if status in counts:
            counts[status] += 1
    data["loop"] = counts
    data["iterations"] = [
        {"status": it.status, "steps": {name: _step_json(step) for name, step in it.steps.items()}}
        for it in iterations
    ]
    if items == 0 and task.status == "succeeded":  # an empty list: finished at once
        for step_json in data["steps"].values():
            step_json["output"] = []
    if not task.iterations or task.status == "skipped":
        return
    for name, step_json in data["steps"].items():
        steps = [it.steps[name] for it in iterations]
        shown = (next((s for s in steps if s.status == "failed"), None)
                 or next((s for s in steps if s.status == "running"), None)
                 or max(steps, key=lambda s: s.queued_at or 0.0))
        step_json.update(_step_json(shown))
        step_json["attempts"] = sum(s.attempts for s in steps)
        step_json["output"] = [s.output for s in steps]


def _carry_iterations(task: _Task, was: Mapping[str, Any]) -> None:
    """A looped task's items and iterations from the record of the run taken over."""
    items = was.get("loop", {}).get("items") if isinstance(was.get("loop"), dict) else None
    task.items = items if isinstance(items, int) else None
    for index, old in enumerate(was.get("iterations") or []):
        if not isinstance(old, dict) or old.get("status") == "not_started":
            continue
        iteration = task.iteration(index)
        iteration.status = str(old.get("status", "waiting"))
        for step_name, step in iteration.steps.items():
            old_step = (old.get("steps") or {}).get(step_name)
            if isinstance(old_step, dict):
                for field in attrs.fields(_Step):
                    if field.name in old_step and field.name != "waiting":
                        setattr(step, field.name, old_step[field.name])


def _step_json(step: _Step) -> dict[str, Any]:
    data = attrs.asdict(step)
    if step.waiting is not None and step.status == "running":
        data["status"] = "waiting"
    data["queued"] = _queued(step)
    if step.skipped is None:
        del data["skipped"]  # only a skipped step says why
    return data


def _queued(step: _Step) -> float | None:
    """Seconds its attempt waited between its command sent and a worker running it
    (so far, while it still waits); None if unknown (a record of an older node)."""
    if step.queued_at is None:
        return None
    if step.started_at is not None:
        return round(max(0.0, step.started_at - step.queued_at), 3)
    if step.status == "running":
        return round(max(0.0, time.time() - step.queued_at), 3)
    return None


def _why(reason: ExitReason) -> str:
    return reason.message.removeprefix("skipped: ")


def _routine(event: LifecycleEvent) -> bool:
    """A start, or a normal exit: all a replayed step does."""
    return event.kind is EventKind.STARTED or (
        event.kind is EventKind.EXITED and event.reason is not None
        and event.reason.kind is ExitKind.NORMAL)


def _status(reason: ExitReason) -> str:
    if is_skip(reason):
        return "skipped"
    if reason.kind is ExitKind.NORMAL:
        return "succeeded"
    if reason.kind in (ExitKind.SHUTDOWN, ExitKind.KILLED) and reason.cause is None:
        return "cancelled"
    return "failed"  # a crash, a give-up, or a task stopped by on_error: stop
