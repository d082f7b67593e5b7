"""The node's own actors stay up: a node that lost one starts it again.

The bridge, the workers and the services are what keeps a node reachable; a
crash of one is restarted by its supervisor, but a child stopped for good
(`terminate`, a supervisor's restart strategy leaving it down) would leave
the node alive and deaf (`no responders` to every request). The control
mailboxes refuse to terminate them (`ControlService`); and should one be
down anyway, the node notices it from the child's exit and, a moment
later, if it is still down and the node is not stopping, starts it again.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from noetl_actors.errors import NoetlError
from noetl_actors.supervision import EventKind, ExitKind, LifecycleEvent

if TYPE_CHECKING:
    from noetl_actors.services._node import Node

__all__ = ["OWN_ACTORS", "is_own_actor", "keep_alive"]

logger = logging.getLogger("noetl_actors.node")

OWN_ACTORS = ("bridge", "workers", "services", "workflows")
"""The node's root children: the node itself, not the work it runs."""

CHECK_AFTER = 1.0
"""Seconds after an exit before looking whether the child is still down (its
supervisor restarts a crashed one meanwhile)."""


def is_own_actor(parts: list[str]) -> bool:
    """Whether the actor at path parts [node, ...] is one of the node's own: a root
    child, or a worker or service (a child of `workers` or `services`)."""
    if len(parts) < 2 or parts[1] not in OWN_ACTORS:
        return False
    return len(parts) == 2 or (len(parts) == 3 and parts[1] in ("workers", "services"))


def keep_alive(node: Node, event: LifecycleEvent) -> None:
    """On the exit of one of the node's root children: check it again soon."""
    parts = event.path.strip("/").split("/")
    if (event.kind is not EventKind.EXITED or len(parts) != 2 or parts[1] not in OWN_ACTORS
            or (event.reason is not None and event.reason.kind is ExitKind.START_FAILURE)):
        return
    timer = threading.Timer(CHECK_AFTER, _restart_if_down, (node, parts[1]))
    timer.daemon = True
    timer.start()


def _restart_if_down(node: Node, child_id: str) -> None:
    if node.stopping:
        return
    try:
        root = node.root
        children = {info.id: info for info in root.which_children()}
        if child_id not in children or children[child_id].ref is not None:
            return
        logger.warning("node %s lost its %s (stopped, not restarted); starting it again",
                       node.name, child_id)
        root.restart_child(child_id)
    except (NoetlError, AssertionError) as error:
        if not node.stopping:
            logger.warning("node %s could not start its %s again: %s", node.name, child_id,
                           error)
