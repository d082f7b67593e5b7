"""Render a supervision-tree snapshot and lifecycle events for a terminal."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from rich.tree import Tree

from noetl_actors.supervision import EventKind, LifecycleEvent

__all__ = ["event_line", "snapshot_tree"]

_STATE_STYLE = {
    "running": "green",
    "starting": "cyan",
    "restarting": "yellow",
    "backing_off": "yellow",
    "stopped": "dim",
}

_EVENT_STYLE = {
    EventKind.STARTED: "green",
    EventKind.RESTARTED: "green",
    EventKind.EXITED: "yellow",
    EventKind.BACKING_OFF: "yellow",
    EventKind.GAVE_UP: "bold red",
    EventKind.ABANDONED: "red",
    EventKind.DEAD_LETTER: "magenta",
}


def _label(node: dict[str, Any]) -> Text:
    state = node.get("state", "running")
    label = Text(node["id"], style="bold")
    if node.get("kind") == "supervisor":
        label.append(f"  {node.get('strategy', '')}", style="blue")
    label.append(f"  {state}", style=_STATE_STYLE.get(state, ""))
    if "total_restarts" in node:
        label.append(
            f"  restarts {node['restarts_in_window']}/{node['max_restarts']}"
            f" in {node['within']:g}s (total {node['total_restarts']})",
            style="dim",
        )
    if node.get("last_exits"):
        last = node["last_exits"][-1]
        why = f"{last['error_type'] or last['kind']}: {last['message']}".rstrip(": ")
        label.append(f"  last exit: {why}", style="red" if last["error_type"] else "dim")
    return label


def snapshot_tree(snapshot: dict[str, Any]) -> Tree:
    """A rich `Tree` of a `SupervisorRef.snapshot()`, one line per actor."""
    tree = Tree(_label(snapshot))

    def add(parent: Tree, node: dict[str, Any]) -> None:
        for child in node.get("children", []):
            add(parent.add(_label(child)), child)

    add(tree, snapshot)
    return tree


def event_line(event: LifecycleEvent) -> Text:
    """One lifecycle event as a line: kind, path, and why or how long."""
    line = Text(f"{event.kind.value:<12}", style=_EVENT_STYLE.get(event.kind, ""))
    line.append(f" {event.path}")
    if event.kind is EventKind.GAVE_UP and event.reason is not None:
        line.append(f"  {event.reason.describe()}", style="red")
    elif event.reason is not None:
        style = "red" if event.reason.is_abnormal else "dim"
        line.append(f"  {event.reason.why()}", style=style)
    if event.delay is not None:
        line.append(f"  in {event.delay * 1000:.0f} ms", style="dim")
    if event.restarts is not None:
        line.append(f"  (restart #{event.restarts})", style="dim")
    if event.detail:
        line.append(f"  {event.detail}", style="dim")
    return line
