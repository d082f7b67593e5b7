"""The node's command API on NATS: its subjects, buckets and reply shapes.

Shared by the services that answer (`ApiService`, `ControlService`) and the
client that asks (`noetl_actors.client`). Every request is JSON with a
schema version (the bridge's wire format) and every reply is either
``{"ok": true, ...}`` or ``{"ok": false, "error": {"kind", "message", ...}}``.

    noetl.api.<verb>               any node answers (queue group ``noetl-api``):
                                   submit, run, register, playbooks, list,
                                   status, cancel, nodes
    noetl.node.<node>.<verb>       one node answers: tree, cancel
    noetl.actor.<node>.<path...>   one actor's control mailbox: {"op": kill |
                                   restart | terminate | snapshot}; the path's
                                   ``/`` become ``.``
    noetl.lifecycle.<workflow>     a workflow's supervision events (kept in NOETL_EVENTS)
    noetl.lifecycle.node.<node>    the events of a node's own actors
"""

from __future__ import annotations

from typing import Any

from noetl_actors.errors import ErrorKind

__all__ = [
    "API_QUEUE",
    "NODES_BUCKET",
    "PLAYBOOKS_BUCKET",
    "WORKFLOWS_BUCKET",
    "actor_subject",
    "api_subject",
    "error_reply",
    "node_subject",
    "ok_reply",
]

API_QUEUE = "noetl-api"
WORKFLOWS_BUCKET = "noetl-workflows"
"""Workflow id -> its record: owner node, status and the `noetl run --json` report."""
NODES_BUCKET = "noetl-nodes"
"""Node name -> its presence record, rewritten every heartbeat."""
PLAYBOOKS_BUCKET = "noetl-playbooks"
"""Registered name -> the playbook's text."""

ACTOR_OPS = ("kill", "restart", "terminate", "snapshot")





def ok_reply(**fields: Any) -> dict[str, Any]:
    return {"ok": True, **fields}


def error_reply(kind: ErrorKind, message: str, **fields: Any) -> dict[str, Any]:
    return {"ok": False, "error": {"kind": kind.value, "message": message, **fields}}


def api_subject(verb: str) -> str:
    return f"noetl.api.{verb}"


def node_subject(node: str, verb: str) -> str:
    return f"noetl.node.{node}.{verb}"


def actor_subject(path: str) -> str:
    """``/alpha/workflows/wf-1/load`` -> ``noetl.actor.alpha.workflows.wf-1.load``."""
    parts = [part for part in path.strip().split("/") if part]
    if not parts or any(not _is_token(part) for part in parts):
        raise ValueError(f"{path!r} is not an actor path like /NODE/workflows/WORKFLOW/TASK")
    return "noetl.actor." + ".".join(parts)


def _is_token(part: str) -> bool:
    return not any(c in part for c in ".*> \t\r\n")
