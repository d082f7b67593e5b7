"""Render a supervision-tree snapshot and lifecycle events for a terminal."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from rich.tree import Tree

from noetl_actors.console._render import STATE_STYLE, event_text, shown_state
from noetl_actors.console._report import waiting_text
from noetl_actors.supervision import LifecycleEvent

__all__ = ["event_line", "snapshot_tree"]

def _label(node: dict[str, Any]) -> Text:
    state = shown_state(node)
    label = Text(node["id"], style="bold")
    if node.get("kind") == "supervisor":
        label.append(f"  {node.get('strategy', '')}", style="blue")
    label.append(f"  {state}", style=STATE_STYLE.get(state, ""))
    if state == "waiting":
        label.append(f" {waiting_text(node['detail']['waiting'])}", style="yellow")
    if "total_restarts" in node:
        label.append(
            f"  restarts {node['restarts_in_window']}/{node['max_restarts']}"
            f" in {node['within']:g}s (total {node['total_restarts']})",
            style="dim",
        )
    if node.get("last_exits"):
        last = node["last_exits"][-1]
        if state == "skipped":
            label.append(f"  {last['message']}", style="dim")
        else:
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
    return event_text(event.to_dict(), clock=False)
