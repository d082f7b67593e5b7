"""What the console shows of the nodes' snapshots and events, as Rich text.

Plain functions of the `Client.tree()` results, with no Textual in them:
the app only places what these return.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from rich.console import Group, RenderableType
from rich.text import Text

from noetl_actors.console._report import waiting_text
from noetl_actors.supervision import ExitKind, ExitReason

STATE_STYLE = {
    "running": "green",
    "starting": "cyan",
    "not_started": "dim",
    "restarting": "yellow",
    "backing_off": "yellow",
    "stopped": "dim",
    "skipped": "dim",
    "waiting": "yellow",
    "unresponsive": "bold red",
}

EVENT_STYLE = {
    "started": "green",
    "restarted": "green",
    "exited": "yellow",
    "backing_off": "yellow",
    "gave_up": "bold red",
    "abandoned": "red",
    "dead_letter": "magenta",
    "connected": "cyan",
    "disconnected": "red",
    "reconnected": "cyan",
}

# -- reading snapshots ---------------------------------------------------------------


def shown_state(data: dict[str, Any]) -> str:
    """An actor's state as the console, `noetl tree` and `noetl status` say it.

    A supervisor lists a child that has never run (a task's later steps,
    waiting for their turn) as ``starting``; it is ``not_started``, as the
    workflow's report says, until it first starts. One that a condition
    skipped is ``skipped``.
    """
    state = str(data.get("state", "running"))
    if state == "starting" and data.get("started_at") is None:
        return "not_started"
    if state == "running" and (data.get("detail") or {}).get("waiting"):
        return "waiting"  # for a worker of its plugin: `waiting_text` says which
    exits = data.get("last_exits") or ()
    if state == "stopped" and exits and exits[-1].get("error_type") == "skipped":
        return "skipped"  # its `when:` (or its routes) did not hold: docs/playbooks.md
    return state


def reason_from_dict(data: dict[str, Any]) -> ExitReason:
    """The `ExitReason` of a reason dict (as in snapshots and events), cause and all."""
    cause = data.get("cause")
    try:
        kind = ExitKind(data.get("kind", "crash"))
    except ValueError:
        kind = ExitKind.CRASH
    return ExitReason(kind, path=data.get("path") or "", error_type=data.get("error_type"),
                      message=data.get("message") or "",
                      cause=reason_from_dict(cause) if isinstance(cause, dict) else None,
                      traceback=data.get("traceback"))


def workflow_of(path: str) -> str | None:
    """The workflow id in ``/<node>/workflows/<id>/...``, or None."""
    parts = path.strip("/").split("/")
    if len(parts) >= 3 and parts[1] == "workflows":
        return parts[2]
    return None


def _seconds(value: float) -> str:
    return f"{value:g}s"


def _clock(at: float | None) -> str:
    if not at:
        return "-"
    ago = max(time.time() - at, 0.0)
    return f"{time.strftime('%H:%M:%S', time.localtime(at))} ({ago:.1f}s ago)"


def _shutdown(entry: dict[str, Any]) -> str:
    value = entry.get("shutdown")
    if value is None:
        return "default (infinity)" if entry.get("kind") == "supervisor" else "default (5s)"
    if value == "infinity":
        return "infinity"
    return "brutal_kill" if value == 0 else _seconds(float(value))


def _restarts(used: int, limit: int, within: float) -> str:
    return f"{used}/{limit} in {_seconds(within)}"


def _policy(entry: dict[str, Any]) -> str:
    """A supervisor's own policy: strategy and intensity."""
    intensity = entry.get("intensity") or {}
    used = _restarts(intensity.get("restarts_in_window", 0), intensity.get("max_restarts", 0),
                     intensity.get("within", 0.0))
    return f"{entry.get('strategy', '?')}, intensity {used}"


def _snapshot_ask(data: dict[str, Any]) -> int:
    """A child supervisor's mailbox holds its parent's snapshot request while the
    parent counts it: that one message is not a backlog."""
    return 1 if data.get("kind") == "supervisor" and data.get("children") is not None else 0


class Entry:
    """One actor as the last poll saw it, with its parent's path (None for a node)."""

    __slots__ = ("data", "node", "parent")

    def __init__(self, data: dict[str, Any], parent: str | None, node: dict[str, Any]) -> None:
        self.data = data
        self.parent = parent
        self.node = node

    @property
    def path(self) -> str:
        path: str = self.data["path"]
        return path


def flatten(results: list[dict[str, Any]]) -> dict[str, Entry]:
    """Every actor of every node's `tree()` result, by path, parents before children.

    A node that did not answer has one entry (its path ``/<name>``), with
    state ``unresponsive`` and its error.
    """
    entries: dict[str, Entry] = {}

    def walk(data: dict[str, Any], parent: str | None, node: dict[str, Any]) -> None:
        entries[data["path"]] = Entry(data, parent, node)
        for child in data.get("children") or ():
            walk(child, data["path"], node)

    for result in results:
        node = result.get("node") or {}
        snapshot = result.get("tree")
        if snapshot is None:
            name = node.get("name", "?")
            walk({"id": name, "path": f"/{name}", "kind": "supervisor", "state": "unresponsive",
                  "error": result.get("error") or "did not answer"}, None, node)
        else:
            walk(snapshot, None, node)
    return entries


def label_of(entry: Entry) -> Text:
    """One tree line: id, state, restarts used/limit in the window, backoff, mailbox."""
    data = entry.data
    state = shown_state(data)
    label = Text(data.get("id", "?"), style="bold")
    if entry.parent is None:
        node = entry.node
        where = " ".join(str(part) for part in (node.get("host"), node.get("pid")) if part)
        label.append(f"  node {where}".rstrip(), style="cyan")
    if state == "unresponsive":
        label.append(f"  unresponsive: {data.get('error', '')}", style=STATE_STYLE[state])
        return label
    label.append(f"  {state}", style=STATE_STYLE.get(state, ""))
    if state == "waiting":
        label.append(f" {waiting_text(data['detail']['waiting'])}", style="yellow")
    if data.get("kind") == "supervisor" and "strategy" in data:
        label.append(f"  {data['strategy']}", style="blue")
    if "restarts_in_window" in data:
        used, limit = data["restarts_in_window"], data["max_restarts"]
        style = "bold red" if used >= limit > 0 else ("yellow" if used else "dim")
        label.append(f"  {_restarts(used, limit, data['within'])}", style=style)
        total = data.get("total_restarts", 0)
        if total > used:
            label.append(f" (total {total})", style="dim")
    elif data.get("intensity"):
        intensity = data["intensity"]
        used = _restarts(intensity["restarts_in_window"], intensity["max_restarts"],
                         intensity["within"])
        label.append(f"  {used}", style="dim")
    if state == "backing_off" and data.get("backoff_remaining") is not None:
        label.append(f"  restart in {data['backoff_remaining']:.1f}s", style="yellow")
    if data.get("mailbox", 0) > _snapshot_ask(data):
        label.append(f"  mailbox {data['mailbox']}", style="magenta")
    exits = data.get("last_exits") or []
    if exits and exits[-1].get("error_type"):
        label.append(f"  last: {exits[-1]['error_type']}", style="red")
    return label


def details_of(entry: Entry, entries: dict[str, Entry]) -> RenderableType:
    """The details pane: spec and policy, the escalation chain, the last exits."""
    data = entry.data
    out = Text()

    def row(name: str, value: str, style: str = "") -> None:
        out.append(f"{name:<16}", style="bold")
        out.append(f"{value}\n", style=style)

    out.append(f"{entry.path}\n\n", style="bold underline")
    if entry.parent is None:
        node = entry.node
        row("node", str(node.get("name", data.get("id"))))
        for key in ("url", "host", "pid"):
            if node.get(key) is not None:
                row(key, str(node[key]))
        if node.get("heartbeat"):
            row("heartbeat", _clock(node["heartbeat"]))
        if node.get("workflows") is not None:
            workflows = node["workflows"]
            row("workflows", str(len(workflows) if isinstance(workflows, list | dict)
                                 else workflows))
    state = shown_state(data)
    row("state", state, STATE_STYLE.get(state, ""))
    if state == "unresponsive":
        row("error", str(data.get("error", "")), "red")
        return out
    row("kind", str(data.get("kind", "?")))
    if "restart" in data:
        row("restart", str(data["restart"]))
        row("shutdown", _shutdown(data))
    if "strategy" in data:
        row("policy", _policy(data), "blue")
    parent = entries.get(entry.parent) if entry.parent else None
    if parent is not None:
        row("parent", f"{parent.path}")
        row("parent policy", _policy(parent.data), "blue")
    row("started", _clock(data.get("started_at")))
    if "total_restarts" in data:
        used = _restarts(data["restarts_in_window"], data["max_restarts"], data["within"])
        row("restarts", f"{used} (window), {data['total_restarts']} total")
    if data.get("backoff_remaining") is not None:
        row("backoff", f"restart in {data['backoff_remaining']:.1f}s", "yellow")
    if "mailbox" in data:
        note = "  (1 is this snapshot's own request)" if _snapshot_ask(data) else ""
        row("mailbox", f"{data['mailbox']}{note}",
            "magenta" if data["mailbox"] > _snapshot_ask(data) else "")
    if "workflow" not in data and (workflow := workflow_of(entry.path)):
        row("workflow", workflow)
    out.append("\nescalation chain", style="bold")
    out.append("  (who restarts this actor, and who restarts them when they give up)\n",
               style="dim")
    for link in _ancestors(entry, entries):
        out.append(f"  ↑ {link.data.get('id')}", style="bold")
        out.append(f"  {_policy(link.data)}\n", style="blue")
    exits = data.get("last_exits") or []
    out.rstrip()
    parts: list[RenderableType] = [out]
    if exits:
        parts.append(Text(f"\nlast exits ({len(exits)}, newest first)", style="bold"))
    for exit_data in reversed(exits):
        parts.append(_exit_text(exit_data))
    return Group(*parts)


def _ancestors(entry: Entry, entries: dict[str, Entry]) -> Iterator[Entry]:
    path = entry.parent
    while path is not None and path in entries:
        yield entries[path]
        path = entries[path].parent


def _exit_text(data: dict[str, Any]) -> Text:
    reason = reason_from_dict(data)
    text = Text()
    text.append(f"\n{_clock(data.get('at'))}  ", style="dim")
    text.append(f"{reason.why()}\n", style="red" if reason.is_abnormal else "")
    for depth, link in enumerate(reason.chain()):
        if depth:
            text.append(f"  {'  ' * depth}caused by {link.summary()}\n", style="yellow")
        if link.traceback:
            text.append("".join(f"  {'  ' * depth}{line}\n"
                                for line in link.traceback.rstrip().splitlines()),
                        style="dim")
    return text


def event_text(event: dict[str, Any], *, clock: bool = True) -> Text:
    """One lifecycle event (as `Client.follow` hands it, or `LifecycleEvent.to_dict()`)
    as a log line: [time], kind, path, and why or how long."""
    kind = str(event.get("kind", "?"))
    at = event.get("at")
    line = Text(time.strftime("%H:%M:%S ", time.localtime(at)) if at and clock else "",
                style="dim")
    line.append(f"{kind:<12}", style=EVENT_STYLE.get(kind, ""))
    line.append(f" {event.get('path', '')}")
    if isinstance(event.get("reason"), dict):
        reason = reason_from_dict(event["reason"])
        why = reason.describe() if kind == "gave_up" else reason.why()
        line.append(f"  {why}", style="red" if reason.is_abnormal else "dim")
    if event.get("delay") is not None:
        line.append(f"  in {event['delay'] * 1000:.0f} ms", style="dim")
    if event.get("restarts") is not None:
        line.append(f"  (restart #{event['restarts']})", style="dim")
    if event.get("detail"):
        line.append(f"  {event['detail']}", style="dim")
    return line


def visible(entries: dict[str, Entry], needle: str) -> dict[str, Entry]:
    """The entries whose path contains `needle`, with their ancestors (all when empty)."""
    if not needle:
        return entries
    needle = needle.lower()
    keep: dict[str, Entry] = {}
    for path, entry in entries.items():
        if needle in path.lower():
            keep[path] = entry
            for ancestor in _ancestors(entry, entries):
                keep.setdefault(ancestor.path, ancestor)
    return {path: entry for path, entry in entries.items() if path in keep}


# -- screens ----------------------------------------------------------------------------
