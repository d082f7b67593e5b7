"""A workflow's report as a terminal tree: `noetl run`'s live tree, `noetl status`.

The report itself (`noetl_actors.runtime.RunReport`) is the runtime's: this
module only renders its document (`RunReport.to_json()`, or a workflow's
record, which holds the same fields).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from rich.text import Text
from rich.tree import Tree

__all__ = ["STATUS_STYLE", "render_document", "waiting_text"]

STATUS_STYLE = {"succeeded": "green", "running": "cyan", "failed": "red", "cancelled": "yellow",
                "orphaned": "red", "not_started": "dim", "restarting": "yellow",
                "waiting": "dim", "skipped": "dim"}
"""Colours of the statuses of workflows, tasks and steps."""


QUEUED_SHOWN = 0.1
"""Seconds of queueing (command sent, not yet run by a worker) worth showing."""


def render_document(document: Mapping[str, Any], *, detail: str = "") -> Tree:
    """A run's report (the `noetl run --json` document, or a workflow's record) as a
    tree of tasks and steps with their states, attempts, restarts and errors."""
    title = Text(f"{document['playbook']} ", style="bold")
    title.append(document["workflow_id"], style="dim")
    title.append(f"  {document['status']}", style=STATUS_STYLE.get(document["status"], ""))
    if detail:
        title.append(f"  {detail}", style="dim")
    tree = Tree(title)
    for name, task in document["tasks"].items():
        label = Text(name, style="bold")
        label.append(f"  {task['status']}", style=STATUS_STYLE.get(task["status"], ""))
        if task["starts"] > 1:
            label.append(f"  restarted {task['starts'] - 1}x", style="yellow")
        if task.get("skipped"):
            label.append(f"  {task['skipped']}", style="dim")
        loop = task.get("loop")
        if loop:
            label.append(f"  loop: {loop['succeeded']}/{loop['items']} succeeded", style="dim")
            for what in ("failed", "running", "cancelled"):
                if loop.get(what):
                    label.append(f", {loop[what]} {what}", style=STATUS_STYLE.get(what, ""))
        branch = tree.add(label)
        _add_steps(branch, task)
        if loop:
            _add_iterations(branch, task)
    return tree


ITERATIONS_SHOWN = 10
"""At most this many iterations of a looped task are listed (the failed ones first)."""


def _add_iterations(branch: Tree, task: Mapping[str, Any]) -> None:
    """The iterations worth a look (failed, then running), a few; the count of the rest."""
    iterations = list(enumerate(task.get("iterations") or []))
    shown = [(i, it) for status in ("failed", "running", "restarting")
             for i, it in iterations if it["status"] == status][:ITERATIONS_SHOWN]
    for index, iteration in shown:
        label = Text(f"[{index}]")
        label.append(f"  {iteration['status']}",
                     style=STATUS_STYLE.get(iteration["status"], ""))
        _add_steps(branch.add(label), {"steps": iteration["steps"]})
    rest = len(iterations) - len(shown)
    if rest:
        branch.add(Text(f"{'other ' if shown else ''}{rest} iteration(s) not shown "
                        f"(--json has them all)", style="dim"))


def _add_steps(branch: Tree, task: Mapping[str, Any]) -> None:
    """A task's (or an iteration's) steps; a looped task's attempts are summed over its
    iterations, so they are not shown as a step's attempt number."""
    for step_name, step in task["steps"].items():
        line = Text(step_name)
        line.append(f"  {step['status']}", style=STATUS_STYLE.get(step["status"], ""))
        if step.get("skipped") and not task.get("skipped"):
            line.append(f"  {step['skipped']}", style="dim")
        if step.get("waiting"):
            line.append(f" {waiting_text(step['waiting'])}", style="yellow")
        queued = step.get("queued")
        if isinstance(queued, (int, float)) and queued >= QUEUED_SHOWN:
            so_far = " so far" if step.get("started_at") is None else ""
            line.append(f"  queued {queued:.1f}s{so_far}", style="yellow")
        if step["attempts"] > 1 and not task.get("loop"):
            line.append(f"  attempt {step['attempts']}", style="yellow")
        if step["error"] and step["status"] != "succeeded":
            line.append(f"  {step['error']['type']}: {step['error']['message']}",
                        style="red")
        branch.add(line)


_WORKERS = {"none": " (none is running)", "busy": " (its workers are busy)"}


def waiting_text(waiting: Mapping[str, Any]) -> str:
    """``for a worker of plugin 'shell' (none is running), 12s``: what a waiting step
    waits for (its report's ``waiting``)."""
    text = f"for a worker of plugin {waiting.get('plugin')!r}"
    text += _WORKERS.get(str(waiting.get("workers")), "")
    since = waiting.get("since")
    if isinstance(since, (int, float)):
        text += f", {max(time.time() - since, 0):.0f}s"
    return text
