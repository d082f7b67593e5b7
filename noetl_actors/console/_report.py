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
        branch = tree.add(label)
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
            if step["attempts"] > 1:
                line.append(f"  attempt {step['attempts']}", style="yellow")
            if step["error"] and step["status"] != "succeeded":
                line.append(f"  {step['error']['type']}: {step['error']['message']}",
                            style="red")
            branch.add(line)
    return tree


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
