"""What a log line about a workflow carries as fields, for `noetl node start --log-format json`.

A line about a workflow is logged with ``extra=log_fields(...)``: its
record then has the attributes `LOG_FIELDS` (those known), and the JSON
formatter writes them as fields of their own, so a log collector filters on
``workflow_id`` rather than parsing the message. The text format shows the
message only; every such message names the workflow too.
"""

from __future__ import annotations

from typing import Any

from noetl_actors.runtime._messages import Command

__all__ = ["LOG_FIELDS", "command_fields", "log_fields", "path_fields"]

LOG_FIELDS = ("workflow_id", "task", "step", "attempt", "epoch")
"""The fields a log line about a workflow may carry, in the order they are written."""


def log_fields(workflow_id: str | None, *, task: str | None = None, step: str | None = None,
               attempt: int | None = None, epoch: int | None = None) -> dict[str, Any]:
    """The `extra=` of a log call about a workflow: the fields given, None left out."""
    given = {"workflow_id": workflow_id, "task": task, "step": step, "attempt": attempt,
             "epoch": epoch}
    return {key: value for key, value in given.items() if value is not None}


def command_fields(command: Command) -> dict[str, Any]:
    """The fields of a line about one attempt (its command); epoch 0 (no lease) left out."""
    return log_fields(command.workflow_id, task=command.task, step=command.step,
                      attempt=command.attempt, epoch=command.epoch or None)


def path_fields(path: str) -> dict[str, Any]:
    """The fields an actor's path tells: ``/<node>/workflows/<id>/<task>[/<i>]/<step>``.

    An iteration of a looped task (a number under its task) is named as in a step's
    id: ``<task>/<i>``. Empty for a path outside any workflow (the node's own parts).
    """
    parts = path.strip("/").split("/")
    if len(parts) < 3 or parts[1] != "workflows":
        return {}
    rest = parts[3:]
    if len(rest) >= 2 and rest[1].isdigit():
        rest = [f"{rest[0]}/{rest[1]}", *rest[2:]]  # an iteration of a looped task
    return log_fields(parts[2], task=rest[0] if rest else None,
                      step=rest[1] if len(rest) > 1 else None)
