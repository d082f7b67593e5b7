"""`Attempt` (what to run) and `Outcome` (what came of it): the records every runner shares.

Both are frozen and JSON-ready through `to_json()`/`from_json()`, which the
process runner uses on its child's stdin and stdout and a Kubernetes Job
runner can use for its pod's input and result.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Mapping
from typing import Any

import attrs

__all__ = [
    "CANCELLED",
    "CRASH",
    "INPUT_ERROR",
    "OUTPUT_ERROR",
    "SCHEMA_VERSION",
    "TIMEOUT",
    "Attempt",
    "Outcome",
    "Status",
]

SCHEMA_VERSION = 1
"""The version of the JSON shapes below (the process runner's child protocol)."""

TIMEOUT = "timeout"
"""Error type: the attempt ran past its timeout and was stopped."""
CRASH = "crash"
"""Error type: the process running the attempt died (a signal, a non-zero exit, no answer)."""
CANCELLED = "cancelled"
"""Error type: the attempt was cancelled (`RunningAttempt.cancel()`)."""
INPUT_ERROR = "InputError"
"""Error type: the input does not fit the plugin's `inputs` (missing, wrong type, refused)."""
OUTPUT_ERROR = "OutputError"
"""Error type: the plugin returned something that is not JSON-ready."""


def _positive_or_none(_instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and not value > 0:
        raise ValueError(f"{attribute.name} must be > 0 or None (got {value!r})")


def _at_least_one(_instance: object, attribute: attrs.Attribute[Any], value: int) -> None:
    if value < 1:
        raise ValueError(f"{attribute.name} must be >= 1 (got {value!r})")


@attrs.frozen(kw_only=True)
class Attempt:
    """One attempt at one step: everything a runner needs to execute it once.

    `timeout` is in seconds and counts from `Runner.start()`; a caller that
    holds an absolute deadline passes ``deadline - time.time()``.
    """

    workflow_id: str
    task: str
    step: str
    number: int = attrs.field(validator=_at_least_one)
    """Attempt number of this step in its workflow run, from 1."""
    plugin: str
    input: Mapping[str, Any] = attrs.field(factory=dict)
    """The rendered `with:` mapping."""
    timeout: float | None = attrs.field(default=None, validator=_positive_or_none)
    command_id: str = attrs.field()
    """Unique per attempt; by default ``<workflow_id>.<task>.<step>.<number>``."""

    @command_id.default
    def _command_id(self) -> str:
        return f"{self.workflow_id}.{self.task}.{self.step}.{self.number}"

    def to_json(self) -> dict[str, Any]:
        return {
            "command_id": self.command_id, "workflow_id": self.workflow_id,
            "task": self.task, "step": self.step, "number": self.number,
            "plugin": self.plugin, "input": dict(self.input), "timeout": self.timeout,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Attempt:
        """The inverse of `to_json()`; raises KeyError/TypeError/ValueError on a bad shape."""
        return cls(
            command_id=data["command_id"], workflow_id=data["workflow_id"],
            task=data["task"], step=data["step"], number=int(data["number"]),
            plugin=data["plugin"], input=dict(data["input"]), timeout=data.get("timeout"),
        )


class Status(enum.Enum):
    """How an attempt ended."""

    SUCCEEDED = "succeeded"
    """The plugin returned; `Outcome.output` holds what it returned."""
    FAILED = "failed"
    """The plugin raised, timed out or crashed; `Outcome.error_type` says which."""
    CANCELLED = "cancelled"
    """`cancel()` stopped it (error type ``cancelled``)."""


@attrs.frozen(kw_only=True)
class Outcome:
    """The end of an attempt. Exactly one per attempt, whatever happened."""

    status: Status
    output: Any = None
    """JSON-ready output of a successful attempt, else None."""
    error_type: str | None = None
    """None on success; else the plugin's name for the error (`PluginError.error_type`,
    or the exception's class name), or ``timeout``, ``crash``, ``cancelled``."""
    message: str = ""
    detail: str = ""
    """For people: a traceback, the tail of a child's stderr. Empty when there is none."""
    started_at: float = attrs.field(factory=time.time)
    """Unix seconds when the attempt began to run (`RunningAttempt.started_at`)."""
    finished_at: float = attrs.field(factory=time.time)
    """Unix seconds when the outcome was settled."""

    @property
    def ok(self) -> bool:
        return self.status is Status.SUCCEEDED

    @classmethod
    def succeeded(cls, output: Any, *, started_at: float) -> Outcome:
        return cls(status=Status.SUCCEEDED, output=output, started_at=started_at)

    @classmethod
    def failed(cls, error_type: str, message: str, *, started_at: float, detail: str = ""
               ) -> Outcome:
        status = Status.CANCELLED if error_type == CANCELLED else Status.FAILED
        return cls(status=status, error_type=error_type, message=message, detail=detail,
                   started_at=started_at)

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status.value, "output": self.output,
            "error_type": self.error_type, "message": self.message, "detail": self.detail,
            "started_at": self.started_at, "finished_at": self.finished_at,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Outcome:
        """The inverse of `to_json()`; raises KeyError/TypeError/ValueError on a bad shape."""
        status = Status(data["status"])
        error_type = data.get("error_type")
        if status is not Status.SUCCEEDED and not isinstance(error_type, str):
            raise ValueError(f"a {status.value} outcome needs an error_type string")
        return cls(
            status=status, output=data.get("output"), error_type=error_type,
            message=str(data.get("message", "")), detail=str(data.get("detail", "")),
            started_at=float(data["started_at"]), finished_at=float(data["finished_at"]),
        )
