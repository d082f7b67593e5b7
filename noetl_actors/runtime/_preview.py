"""`noetl preview`: what the supervisors would do, with no plugin run.

The preview starts the real runtime (workflow, task and step actors on the
real supervision kernel) with a `ManualClock` and a simulated plugin: each
named step fails its first N attempts, every other attempt succeeds. It
records the lifecycle events as a timeline in simulated time, moving the
clock to the next backoff timer whenever the tree has gone quiet.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from typing import Any

import attrs

from noetl_actors.errors import LoopTooLong, StepFailed, TemplateError
from noetl_actors.playbook import Playbook, Step
from noetl_actors.runtime._loop import loop_items
from noetl_actors.runtime._step import local_steps
from noetl_actors.runtime._workflow import WorkflowSupervisor
from noetl_actors.supervision import (
    EventKind,
    ExitKind,
    ExitReason,
    LifecycleEvent,
    ManualClock,
    start_root,
)

__all__ = ["FAILS_ALWAYS", "PreviewLine", "PreviewResult", "parse_failure", "run_preview"]

FAILS_ALWAYS = -1
"""The failure count of a step that fails every attempt (``--fail TASK.STEP=always``)."""
QUIET = 0.02
"""Seconds without an event after which the tree counts as waiting on the clock."""
STALL = 5.0
MAX_EVENTS = 5_000


@attrs.frozen
class PreviewLine:
    at: float
    """Simulated seconds since the start."""
    who: str
    what: str

    def __str__(self) -> str:
        return f"{_clock(self.at):>10}  {self.who:<28} {self.what}"


@attrs.frozen
class PreviewResult:
    lines: tuple[PreviewLine, ...]
    outcome: ExitReason | None
    """None when the preview had to stop the tree (too many events, or stuck)."""
    executions: Mapping[tuple[str, str], int]
    """How many times each (task, step) would run."""

    @property
    def succeeded(self) -> bool:
        return self.outcome is not None and not self.outcome.is_abnormal

    def report(self) -> str:
        """The timeline, the outcome and the execution counts, as printed."""
        out = [str(line) for line in self.lines]
        if self.outcome is None:
            verdict = "unknown: the preview stopped the workflow (see the last lines)"
        elif self.succeeded:
            verdict = "succeeded: all tasks finished"
        else:
            verdict = f"failed: {self.outcome.describe()}"
        out += ["", f"outcome: {verdict}", "", "executions:"]
        width = max((len(f"{t}.{s}") for t, s in self.executions), default=0)
        out += [f"  {f'{t}.{s}':<{width}}  {n}" for (t, s), n in self.executions.items()]
        return "\n".join(out)


def parse_failure(text: str) -> tuple[str, str, int]:
    """``TASK.STEP=N`` or ``TASK.STEP=always`` -> (task, step, N); N = FAILS_ALWAYS for always.

    Raises:
        ValueError: with what the form is.
    """
    target, sep, count = text.partition("=")
    task, dot, step = target.partition(".")
    if not (sep and dot and task and step):
        raise ValueError(f"{text!r}: use TASK.STEP=N or TASK.STEP=always")
    if count == "always":
        return task, step, FAILS_ALWAYS
    if not count.isdigit():
        raise ValueError(f"{text!r}: N must be a whole number or 'always' (got {count!r})")
    return task, step, int(count)


class _Plugins:
    """The simulated plugin: fails a step's first N attempts, counts every attempt."""

    def __init__(self, playbook: Playbook, failures: Mapping[tuple[str, str], int]) -> None:
        self._step_task = {id(s): t.name for t in playbook.tasks for s in t.steps}
        self._failures = failures
        self._lock = threading.Lock()
        self.executions: Counter[tuple[str, str]] = Counter(
            {(t.name, s.name): 0 for t in playbook.tasks for s in t.steps}
        )

    def __call__(self, step: Step, inputs: Mapping[str, Any], attempt: int) -> Any:
        key = (self._step_task[id(step)], step.name)
        with self._lock:
            self.executions[key] += 1
            n = self.executions[key]
        fails = self._failures.get(key, 0)
        if fails == FAILS_ALWAYS or n <= fails:
            raise StepFailed(f"simulated failure {n}", error_type="SimulatedFailure")
        return _Output(f"{key[0]}.{key[1]}")


class _Output:
    """A stand-in output: any attribute or item of it is another stand-in, and so is
    arithmetic on it; it is empty (`| length` is 0) and compares equal, less or
    greater than nothing, so templates over outputs render and conditions on them
    are false (docs/playbooks.md, "Conditions", Preview)."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, name: str) -> _Output:
        if name.startswith("_"):
            raise AttributeError(name)
        return _Output(f"{self._name}.{name}")

    def __getitem__(self, key: object) -> _Output:
        return _Output(f"{self._name}[{key!r}]")

    def __str__(self) -> str:
        return f"<output of {self._name}>"

    def __len__(self) -> int:
        return 0

    def __iter__(self) -> Iterator[Any]:
        return iter(())

    def __lt__(self, other: object) -> bool:
        return False

    __le__ = __gt__ = __ge__ = __lt__

    def _arithmetic(self, other: object) -> _Output:
        return self

    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = _arithmetic
    __truediv__ = __rtruediv__ = __floordiv__ = __rfloordiv__ = _arithmetic
    __mod__ = __rmod__ = __pow__ = __rpow__ = _arithmetic

    def __neg__(self) -> _Output:
        return self


def run_preview(
    playbook: Playbook,
    failures: Mapping[tuple[str, str], int] | None = None,
    *,
    max_events: int = MAX_EVENTS,
) -> PreviewResult:
    """Simulate a run of `playbook`; see the module docstring.

    Raises:
        ValueError: `failures` names a task or step the playbook does not have.
    """
    failures = dict(failures or {})
    for task_name, step_name in failures:
        try:
            playbook.task(task_name).step(step_name)
        except KeyError as error:
            raise ValueError(f"--fail {task_name}.{step_name}: {error.args[0]}") from None
    clock = ManualClock()
    plugins = _Plugins(playbook, failures)
    timeline = _Timeline(playbook, clock)
    playbook = _knowable_loops(playbook, timeline)
    workflow = WorkflowSupervisor(playbook, steps=local_steps(plugins), workflow_id="preview")
    root = start_root(workflow, id=playbook.name, clock=clock, observers=[timeline])
    outcome = None
    try:
        outcome = _drive(root, clock, timeline, max_events)
    finally:
        if outcome is None:
            root.stop(timeout=10)
    return PreviewResult(tuple(timeline.lines), outcome, dict(plugins.executions))


def _knowable_loops(playbook: Playbook, timeline: _Timeline) -> Playbook:
    """`playbook` with each loop over an expression the preview cannot know (it reads
    outputs, which are stand-ins here) over one stand-in item instead, and a note."""
    context = {"vars": dict(playbook.vars), "workflow": {"id": "preview", "name": playbook.name},
               "tasks": {}}
    tasks = []
    for task in playbook.tasks:
        loop = task.loop
        if loop is not None and isinstance(loop.over, str):
            try:
                loop = attrs.evolve(loop, over=tuple(loop_items(loop, context)))
            except (TemplateError, LoopTooLong):
                timeline.note(f"task {task.name} loops over {loop.over!r}, unknown before a "
                              f"run: the preview runs one iteration of it")
                loop = attrs.evolve(loop, over=(_Output(f"{task.name} item"),))
            task = attrs.evolve(task, loop=loop)
        tasks.append(task)
    return attrs.evolve(playbook, tasks=tuple(tasks))


def _drive(root: Any, clock: ManualClock, timeline: _Timeline, max_events: int
           ) -> ExitReason | None:
    """Let the tree run; when it is quiet, move the clock to its next timer."""
    quiet_since = time.monotonic()
    seen = 0
    while True:
        reason: ExitReason | None = root.wait(QUIET)
        if reason is not None:
            return reason
        count = timeline.count()
        if count > max_events:
            timeline.note(f"stopped the preview after {max_events} events")
            return None
        if count != seen:
            seen, quiet_since = count, time.monotonic()
            continue
        pending = clock.pending()
        if pending:
            clock.advance(max(pending[0] - clock.now(), 0))
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since > STALL:
            timeline.note("stopped the preview: nothing happened and no timer is pending")
            return None


class _Timeline:
    """Turns lifecycle events into timeline lines (called on supervisor threads)."""

    def __init__(self, playbook: Playbook, clock: ManualClock) -> None:
        self._playbook = playbook
        self._clock = clock
        self._lock = threading.Lock()
        self._root = f"/{playbook.name}"
        self._running: set[str] = set()
        self._runs: Counter[str] = Counter()
        flags = playbook.supervision
        restarts = "restart" if flags.max_restarts == 1 else "restarts"
        self.lines: list[PreviewLine] = [PreviewLine(0.0, "workflow", (
            f"started ({flags.strategy.value}, at most {flags.max_restarts} task {restarts} "
            f"in {flags.within:g}s)"))]

    def count(self) -> int:
        with self._lock:
            return len(self.lines)

    def note(self, what: str) -> None:
        with self._lock:
            self.lines.append(PreviewLine(self._clock.now(), "preview", what))

    def __call__(self, event: LifecycleEvent) -> None:
        """Record an event; a task is shown starting before its first step does.

        The kernel reports a supervisor started once its `on_start` (which
        starts its first child) returned; read in that order, a timeline would
        show a step running in a task that has not started yet.
        """
        relative = event.path[len(self._root):].strip("/").split("/")
        with self._lock:
            now = self._clock.now()
            if len(relative) == 2 and relative[0] not in self._running:
                self._announce(now, relative[0])
            if len(relative) == 1 and relative[0]:
                task = relative[0]
                if event.kind in (EventKind.STARTED, EventKind.RESTARTED):
                    if task not in self._running:
                        self._announce(now, task)
                    return
                if event.kind is EventKind.EXITED:
                    self._running.discard(task)
            what = self._describe(event)
            if what is not None:
                self.lines.append(PreviewLine(now, self._who(event.path), what))

    def _announce(self, now: float, task: str) -> None:
        self._running.add(task)
        self._runs[task] += 1
        if self._runs[task] == 1:
            what = "started"
        else:
            who, policy = self._parent(f"{self._root}/{task}")
            what = f"restarted by {who} ({policy}); restart #{self._runs[task] - 1}"
        self.lines.append(PreviewLine(now, task, what))

    def _who(self, path: str) -> str:
        relative = path[len(self._root):].strip("/")
        return relative.replace("/", ".") if relative else "workflow"

    def _parent(self, path: str) -> tuple[str, str]:
        """(who, policy) of the supervisor above `path`."""
        parts = path[len(self._root):].strip("/").split("/")
        if len(parts) == 1:
            flags = self._playbook.supervision
            who = "workflow"
        else:
            flags = self._playbook.task(parts[0]).supervision
            who = f"task {parts[0]}"
        restarts = "restart" if flags.max_restarts == 1 else "restarts"
        policy = (f"{flags.strategy.value}, at most {flags.max_restarts} {restarts} "
                  f"in {flags.within:g}s")
        return who, policy

    def _describe(self, event: LifecycleEvent) -> str | None:
        kind = event.kind
        if kind is EventKind.STARTED:
            return "started"
        if kind is EventKind.EXITED and event.reason is not None:
            reason = event.reason
            if reason.kind is ExitKind.GAVE_UP:
                return None  # its GAVE_UP event said it already
            if not reason.is_abnormal:
                return f"finished ({reason.message})" if reason.message else "finished"
            return reason.why()
        if kind is EventKind.RESTARTED:
            who, policy = self._parent(event.path)
            return f"restarted by {who} ({policy}); restart #{event.restarts}"
        if kind is EventKind.BACKING_OFF:
            who, _ = self._parent(event.path)
            return f"{who} waits {event.delay or 0:g}s before restarting it (backoff)"
        if kind is EventKind.GAVE_UP and event.reason is not None:
            above = "its parent decides" if event.path != self._root else "the workflow fails"
            return f"gives up: {event.reason.message}; {above}"
        return None


def _clock(seconds: float) -> str:
    return f"t+{seconds:.3f}s"
