"""`ControlService`: a node's tree and every actor in it, reachable on NATS.

    noetl.node.<node>.tree         the node's tree snapshot
    noetl.node.<node>.cancel       {"workflow_id"}: stop every task, step and subprocess
    noetl.actor.<node>.<path...>   {"op": "kill" | "restart" | "terminate" | "snapshot"}

One wildcard subscription serves every actor's control mailbox: the path in
the subject is resolved through the supervisors, so a step started a moment
ago is reachable with no subscription of its own.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from noetl_actors.bridge import Delivery
from noetl_actors.errors import ApiError, ChildError, ChildNotFound, ErrorKind
from noetl_actors.services._keepalive import is_own_actor
from noetl_actors.services._protocol import ACTOR_OPS, node_subject
from noetl_actors.services._responder import Responder, field, workflow_id_field
from noetl_actors.supervision import Restart, SupervisorRef

if TYPE_CHECKING:
    from noetl_actors.services._node import Node

__all__ = ["ControlService", "node_info"]


class ControlService(Responder):
    def __init__(self, node: Node) -> None:
        assert node.bridge is not None
        super().__init__(node.bridge)
        self.node = node

    def subscriptions(self) -> list[tuple[str, str | None]]:
        actors = f"noetl.actor.{self.node.name}"
        return [(node_subject(self.node.name, "*"), None), (actors, None), (f"{actors}.>", None)]

    def handle(self, request: Delivery) -> dict[str, Any]:
        if request.subject.startswith("noetl.actor."):
            path = "/" + request.subject.removeprefix("noetl.actor.").replace(".", "/")
            return self.actor_op(path, field(request.data, "op", str), request.data)
        verb = request.subject.rsplit(".", 1)[-1]
        if verb == "tree":
            return {"node": node_info(self.node), "tree": self.node.root.snapshot()}
        if verb == "cancel":
            return self.cancel(workflow_id_field(request.data))
        raise ApiError(ErrorKind.BAD_REQUEST, f"unknown verb {verb!r}; known: tree, cancel")

    def cancel(self, workflow_id: str) -> dict[str, Any]:
        run = self.node.running().get(workflow_id)
        if run is None:
            raise ApiError(ErrorKind.NOT_FOUND,
                           f"workflow {workflow_id} is not running on node {self.node.name}")
        run.cancel()
        run.wait(10)
        return {"workflow_id": workflow_id, "status": run.report.status}

    def actor_op(self, path: str, op: str, data: Mapping[str, Any]) -> dict[str, Any]:
        if op not in ACTOR_OPS:
            raise ApiError(ErrorKind.BAD_REQUEST,
                           f"unknown op {op!r}; known: {', '.join(ACTOR_OPS)}")
        root = self.node.root
        parts = path.strip("/").split("/")
        if parts[0] != self.node.name:
            raise ApiError(ErrorKind.NOT_FOUND, f"{path} is not on node {self.node.name}")
        if len(parts) == 1:
            if op == "snapshot":
                return {"path": path, "snapshot": root.snapshot()}
            raise ApiError(ErrorKind.BAD_REQUEST,
                           f"{path} is the node itself: stop the node to {op} it")
        if op == "terminate" and is_own_actor(parts):
            raise ApiError(ErrorKind.CONFLICT,
                           f"{path} is one of the node's own actors: it cannot be terminated "
                           f"from outside (kill it: its supervisor starts it again)")
        parent, child_id = _parent_of(root, parts, path)
        try:
            children = {info.id: info for info in parent.which_children()}
            if child_id not in children:
                raise ChildNotFound(f"{path} does not exist (any more)")
            if op == "snapshot":
                return {"path": path, "snapshot": _snapshot(parent, child_id)}
            if op == "kill":
                why = field(data, "reason", str, required=False,
                            default=f"killed by request ({path})")
                parent.crash_child(child_id, why)
            elif op == "terminate":
                parent.terminate_child(child_id)
            elif op == "restart":
                if children[child_id].restart is Restart.TEMPORARY:
                    raise ApiError(ErrorKind.CONFLICT, f"{path} is temporary: once stopped it "
                                                       f"is gone, so it cannot be restarted")
                if children[child_id].ref is not None:
                    parent.terminate_child(child_id)
                parent.restart_child(child_id)
        except ChildNotFound as error:
            raise ApiError(ErrorKind.NOT_FOUND, str(error)) from None
        except ChildError as error:  # running when it must not be, and the like
            raise ApiError(ErrorKind.CONFLICT, str(error)) from None
        return {"path": path, "op": op}


def _parent_of(root: SupervisorRef, parts: list[str], path: str) -> tuple[SupervisorRef, str]:
    parent = root
    for part in parts[1:-1]:
        try:
            parent = parent.child_supervisor(part)
        except (ChildNotFound, TypeError):
            raise ApiError(ErrorKind.NOT_FOUND, f"{path} does not exist (any more)") from None
    return parent, parts[-1]


def _snapshot(parent: SupervisorRef, child_id: str) -> dict[str, Any]:
    """The child's row in its parent's snapshot (a supervisor's holds its subtree)."""
    for child in parent.snapshot()["children"]:
        if child["id"] == child_id:
            picture: dict[str, Any] = child
            return picture
    raise ChildNotFound(f"{parent.path}/{child_id} does not exist (any more)")


def node_info(node: Node) -> dict[str, Any]:
    """Who and where a node is: in its tree snapshot and its presence record."""
    return {"name": node.name, "url": node.url, "host": socket.gethostname(),
            "pid": os.getpid(), "heartbeat": node.heartbeat,
            "workflows": sorted(node.running())}
