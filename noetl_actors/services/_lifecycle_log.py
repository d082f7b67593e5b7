"""`LifecycleLog`: what a node's log says of its supervision events, with fields.

`noetl node start` logs the starts, exits and restarts of the node's own
parts and of its workflows, and the abnormal exits of tasks and steps; a
step's every move is left to `noetl events`. Each line about a workflow
carries its fields (`LOG_FIELDS`): workflow_id, task and step from the
actor's path, the attempt (a step's latest, as its workers told) and the
epoch of the node's lease on it, where known. `--log-format json` writes
them as fields of their own.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from noetl_actors.runtime import path_fields

if TYPE_CHECKING:
    from noetl_actors.services._node import Node
    from noetl_actors.supervision import LifecycleEvent

__all__ = ["LifecycleLog"]


class LifecycleLog:
    """An observer of a node's tree (quick, thread-safe) that writes to `logger`.

    `node` is set once the node is made (it takes its observers when made):
    until then, and for a node's own parts, a line has the fields its path
    tells only.
    """

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger
        self.node: Node | None = None

    def __call__(self, event: LifecycleEvent) -> None:
        if event.path.count("/") > 3 and (event.reason is None or not event.reason.is_abnormal):
            return  # a task's or step's start or normal end: too many to log
        fields = self.fields(event.path)
        if event.reason is not None:
            level = logging.WARNING if event.reason.is_abnormal else logging.INFO
            self._logger.log(level, "%s %s: %s", event.kind.value, event.path,
                             event.reason.describe(), extra=fields)
        else:
            self._logger.info("%s %s", event.kind.value, event.path, extra=fields)

    def fields(self, path: str) -> dict[str, Any]:
        """The fields of a line about the actor at `path` (`LOG_FIELDS`, where known)."""
        fields = path_fields(path)
        node = self.node
        workflow_id = fields.get("workflow_id")
        if node is None or workflow_id is None:
            return fields
        if "step" in fields:
            run = node.running().get(workflow_id)
            attempt = run.report.attempts(fields["task"], fields["step"]) if run else 0
            if attempt:
                fields["attempt"] = attempt
        lease = node.leases.lease_of(workflow_id) if node.leases is not None else None
        if lease is not None:
            fields["epoch"] = lease.epoch
        return fields
