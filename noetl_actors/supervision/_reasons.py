"""Why an actor exited: the record supervisors decide on and escalate."""

from __future__ import annotations

import enum
import traceback
from typing import Any

import attrs

__all__ = ["ExitKind", "ExitReason"]

TRACEBACK_FRAMES = 12
"""Frames kept of a crash's traceback: the innermost, where it went wrong."""


class ExitKind(enum.Enum):
    """How an actor's life ended."""

    NORMAL = "normal"
    """It stopped itself, or was asked to stop and did."""
    SHUTDOWN = "shutdown"
    """Its supervisor stopped it (a restart of its siblings, a terminate, a tree stop)."""
    CRASH = "crash"
    """An exception escaped while it handled a message (told, asked or by proxy)."""
    START_FAILURE = "start_failure"
    """Its factory or `on_start` raised, so it never took a message."""
    GAVE_UP = "gave_up"
    """A supervisor went past its restart intensity and stopped its subtree."""
    KILLED = "killed"
    """It did not stop within its grace period (or had `brutal_kill`) and was killed."""

    @property
    def is_abnormal(self) -> bool:
        """True when a `transient` child that exits like this is restarted."""
        return self not in (ExitKind.NORMAL, ExitKind.SHUTDOWN)


@attrs.frozen
class ExitReason:
    """Why one actor exited, with the reason below it when it escalated.

    A supervisor that gives up exits with kind `GAVE_UP` and `cause` set to
    the reason of the child that used up its intensity, which may itself be a
    supervisor that gave up, and so on down to the original crash.
    """

    kind: ExitKind
    path: str = ""
    """The path of the actor that exited, e.g. ``/node/workflows/wf-1``."""
    error_type: str | None = None
    """The exception's class name, for CRASH and START_FAILURE."""
    message: str = ""
    cause: ExitReason | None = None
    traceback: str | None = attrs.field(default=None, eq=False, repr=False)
    """The formatted traceback of a crash (for consoles; not part of equality)."""

    @classmethod
    def from_exception(
        cls, kind: ExitKind, error: BaseException, *, path: str = ""
    ) -> ExitReason:
        """The reason for an exception: its `error_type` attribute if it has one
        (a plugin's own name for the error), else its class name."""
        error_type = getattr(error, "error_type", None)
        if not isinstance(error_type, str) or not error_type:
            error_type = type(error).__name__
        trace = "".join(traceback.format_exception(error, limit=-TRACEBACK_FRAMES))
        return cls(kind, path=path, error_type=error_type, message=str(error), traceback=trace)

    @property
    def is_abnormal(self) -> bool:
        return self.kind.is_abnormal

    def chain(self) -> tuple[ExitReason, ...]:
        """This reason, then its cause, then the cause's cause, down to the root."""
        links: list[ExitReason] = []
        reason: ExitReason | None = self
        while reason is not None:
            links.append(reason)
            reason = reason.cause
        return tuple(links)

    def root(self) -> ExitReason:
        """The reason at the bottom of the chain: what went wrong first."""
        return self.chain()[-1]

    def why(self) -> str:
        """This link without its path: ``crashed: ValueError: boom``."""
        verb = {
            ExitKind.NORMAL: "stopped",
            ExitKind.SHUTDOWN: "was shut down",
            ExitKind.CRASH: "crashed",
            ExitKind.START_FAILURE: "failed to start",
            ExitKind.GAVE_UP: "gave up",
            ExitKind.KILLED: "was killed",
        }[self.kind]
        detail = f"{self.error_type}: {self.message}" if self.error_type else self.message
        return f"{verb}: {detail}" if detail else verb

    def summary(self) -> str:
        """One link as text: ``/a/b crashed: ValueError: boom``."""
        return f"{self.path or '<actor>'} {self.why()}"

    def describe(self) -> str:
        """The whole chain, top first: ``/a gave up: ... <- /a/w crashed: ValueError: boom``."""
        return " <- ".join(link.summary() for link in self.chain())

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready picture of the chain."""
        return {
            "kind": self.kind.value,
            "path": self.path,
            "error_type": self.error_type,
            "message": self.message,
            "cause": self.cause.to_dict() if self.cause else None,
            "traceback": self.traceback,
        }
