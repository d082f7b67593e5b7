"""The fault suite's verdict: what ran twice, what ran again after it was done, takeovers.

Inputs: the lines file (one line ``<workflow> <task>.<step> <attempt>`` per
attempt a worker began, in the order they began), each workflow's history
(`read_histories`) and the moment the owner was killed.

- **attempts run twice**: a (workflow, step, attempt) whose line is there
  more than once: one attempt began on two workers, or twice on one.
- **done steps rerun**: a step with an attempt that succeeded (a worker's
  ``succeeded`` event in the history) and a line of a *later* attempt number
  (attempt numbers only grow, across owners too), unless a ``reset`` entry
  of its task's journal follows that success in the history: a one_for_all
  task starting over from its first step, which discards what its steps
  produced and runs them again on purpose. A new attempt after a *crashed*
  or failed one is the supervisor's policy, not a rerun. Each step counts
  once, however often it ran again. An attempt whose owner took it for
  crashed while its worker was alive (silence it misjudged) and that then
  succeeded counts too: its work was done, and done again. `rerun_cause`
  tells which of the two happened, from the step's last abnormal exit.
- **takeover**: for each workflow that an owner had at its kill and that
  moved from it, the ``at`` of its ``moved`` event (``from`` = the killed
  node) minus the moment of the kill.
"""

from __future__ import annotations

import statistics
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

StepKey = tuple[str, str]
"""(workflow id, ``task.step``)."""
History = list[dict[str, Any]]


def read_lines(path: Path) -> list[tuple[str, str, int]]:
    """The lines file as (workflow, ``task.step``, attempt), in order."""
    found = []
    if path.exists():
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[2].isdigit():
                found.append((parts[0], parts[1], int(parts[2])))
    return found


def run_twice(lines: Iterable[tuple[str, str, int]]) -> list[tuple[str, str, int]]:
    """Every (workflow, step, attempt) that began more than once."""
    return sorted(key for key, n in Counter(lines).items() if n > 1)


@dataclass
class Rerun:
    """A step that ran again after it had succeeded."""

    workflow: str
    step: str
    succeeded: int
    """The attempt that had succeeded (with no reset of its task after it)."""
    again: list[int]
    """The later attempts that began."""


def reruns(lines: Iterable[tuple[str, str, int]],
           histories: Mapping[str, History]) -> list[Rerun]:
    """The steps that ran again after they were done (see the module's docstring)."""
    began: dict[StepKey, set[int]] = defaultdict(set)
    for workflow, step, attempt in lines:
        began[(workflow, step)].add(attempt)
    found = []
    for workflow, history in histories.items():
        for step, attempt in _final_successes(history).items():
            later = sorted(a for a in began.get((workflow, step), ()) if a > attempt)
            if later:
                found.append(Rerun(workflow, step, attempt, later))
    return found


def _final_successes(history: History) -> dict[str, int]:
    """Per ``task.step``, the lowest attempt that succeeded with no reset of its task
    after it in the history."""
    latest: dict[str, int] = {}
    for entry in history:
        if entry.get("type") == "event" and entry.get("status") == "succeeded":
            task, _, step = str(entry["step_id"]).partition("=")
            key = f"{task}.{step}"
            latest.setdefault(key, int(entry["attempt"]))
        elif entry.get("kind") == "journal" and entry.get("what") == "reset":
            prefix = f"{entry.get('task')}."
            for key in [k for k in latest if k.startswith(prefix)]:
                del latest[key]
    return latest


def clock(at: float) -> str:
    """A wall time as ``HH:MM:SS.mmm`` (local time, as the nodes' logs)."""
    return time.strftime("%H:%M:%S", time.localtime(at)) + f".{int(at % 1 * 1000):03d}"


def rerun_cause(history: History, rerun: Rerun) -> tuple[str, float | None]:
    """Why the step ran again, as its history tells (the last abnormal exit of the step
    before the later attempt, and when its success came), and that exit's wall time."""
    task, _, name = rerun.step.partition(".")
    step_id, path_end = f"{task}={name}", f"/{task}/{name}"
    success: float | None = None
    exit_: dict[str, Any] | None = None
    later = False  # the later attempt's first event is behind: later exits do not count
    for entry in history:
        if entry.get("type") == "event" and entry.get("step_id") == step_id:
            later = later or entry["attempt"] == rerun.again[0]
            if entry["attempt"] == rerun.succeeded and entry["status"] == "succeeded":
                success = float(entry["at"])  # it may come late, after a reconnect
        elif not later and str(entry.get("path", "")).endswith(path_end) \
                and entry.get("reason") and entry["reason"].get("kind") != "normal":
            exit_ = entry
    if exit_ is None:
        return "no exit of the step is recorded before the later attempt", None
    said, at = f"{exit_['reason'].get('kind')}: {exit_['reason'].get('message')}", \
        float(exit_["at"])
    if success is None:
        return f"the step exited at {clock(at)} ({said})", at
    if at < success:
        return (f"its owner took attempt {rerun.succeeded} for crashed at {clock(at)} "
                f"({said}), {success - at:.1f}s before its worker said it succeeded", at)
    return (f"attempt {rerun.succeeded} succeeded on its worker at {clock(success)}, "
            f"{at - success:.1f}s before its owner took it for crashed ({said}): the "
            f"success had not reached the owner", at)


def moves(history: History) -> list[dict[str, Any]]:
    """The `moved` events of a history."""
    return [entry for entry in history if entry.get("kind") == "moved"]


@dataclass
class Takeovers:
    """How the killed owner's workflows moved."""

    seconds: list[float] = field(default_factory=list)
    """Per workflow that moved from the killed node: its move's `at` minus the kill."""
    stayed: list[str] = field(default_factory=list)
    """Its workflows that never moved (they may have ended before the kill)."""
    other: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    """Moves not from the killed owner (none is expected: a NATS outage moves nothing)."""

    def p50(self) -> float:
        return statistics.median(self.seconds) if self.seconds else float("nan")

    def max(self) -> float:
        return max(self.seconds) if self.seconds else float("nan")


def takeovers(histories: Mapping[str, History], killed: str | None, at: float,
              owned: Iterable[str]) -> Takeovers:
    """The takeovers of the workflows `owned` by node `killed` when it was killed at `at`
    (wall time), and every other move."""
    result = Takeovers()
    owned = set(owned)
    for workflow, history in sorted(histories.items()):
        mine = [m for m in moves(history) if m.get("from") == killed and workflow in owned]
        if mine:
            result.seconds.append(float(mine[0]["at"]) - at)
        elif workflow in owned:
            result.stayed.append(workflow)
        result.other += [(workflow, m) for m in moves(history) if m not in mine]
    return result


def describe_step(history: History, step: str) -> list[str]:
    """The history entries of one ``task.step`` but its heartbeats (and its task's
    journal, and every move), one line each, for a diagnosis."""
    task, _, name = step.partition(".")
    found = []
    for entry in history:
        if entry.get("type") == "event" and entry.get("step_id") == f"{task}={name}":
            if entry.get("status") == "heartbeat":
                continue
            error = f" {entry.get('error_type')}: {entry.get('error_message')}" \
                if entry.get("error_type") else ""
            found.append(f"{clock(entry.get('at', 0))} attempt {entry['attempt']} {entry['status']}"
                         f" on {entry.get('worker')}{error}")
        elif entry.get("kind") in ("journal", "moved") and (
                entry.get("kind") == "moved" or entry.get("task") == task):
            detail = entry.get("detail") or f"{entry.get('what')} {entry.get('step')}"
            found.append(f"{clock(entry.get('at', 0))} {entry['kind']} (epoch "
                         f"{entry.get('epoch')}): {detail}")
        elif str(entry.get("path", "")).endswith(f"/{task}/{name}") and entry.get("reason"):
            reason = entry["reason"]
            found.append(f"{clock(entry.get('at', 0))} {entry.get('kind')} (epoch "
                         f"{entry.get('epoch')}): {reason.get('kind')} {reason.get('message')}")
    return found
