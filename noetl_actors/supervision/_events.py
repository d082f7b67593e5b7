"""Lifecycle events: what supervisors tell the outside world, as it happens."""

from __future__ import annotations

import enum
import time
from typing import Any, Protocol

import attrs

from noetl_actors.supervision._reasons import ExitReason

__all__ = ["EventKind", "LifecycleEvent", "Observer"]


class EventKind(enum.Enum):
    STARTED = "started"
    """A child started (its `on_start` returned)."""
    EXITED = "exited"
    """A child exited; `reason` says why."""
    RESTARTED = "restarted"
    """A child was started again after an exit; `restarts` counts them."""
    BACKING_OFF = "backing_off"
    """A restart will wait `delay` seconds first."""
    GAVE_UP = "gave_up"
    """A supervisor went past its intensity; `reason` holds the chain."""
    ABANDONED = "abandoned"
    """A child ignored stop past its grace period and was left to die."""
    DEAD_LETTER = "dead_letter"
    """A message for a child that will not come back was dropped; `detail` names it."""
    CONNECTED = "connected"
    """An actor that owns a connection (the NATS bridge) made it; `detail` says where."""
    DISCONNECTED = "disconnected"
    """That connection was lost; the client is reconnecting."""
    RECONNECTED = "reconnected"
    """That connection is back; `detail` says where."""


@attrs.frozen(kw_only=True)
class LifecycleEvent:
    """One thing that happened to one actor, at wall-clock time `at`."""

    kind: EventKind
    path: str
    at: float = attrs.field(factory=time.time)
    reason: ExitReason | None = None
    delay: float | None = None
    restarts: int | None = None
    detail: str = ""
    strategy: str | None = None
    """Of a RESTARTED event: the strategy of the supervisor that restarted the child
    (``one_for_one``, ``one_for_all``, ``rest_for_one``)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "path": self.path,
            "at": self.at,
            "reason": self.reason.to_dict() if self.reason else None,
            "delay": self.delay,
            "restarts": self.restarts,
            "detail": self.detail,
            **({"strategy": self.strategy} if self.strategy is not None else {}),
        }


class Observer(Protocol):
    """Receives every lifecycle event of a tree.

    Called on the thread of the supervisor that emits the event, so it must
    be thread-safe, quick and must not block; an exception it raises is
    logged and ignored. Later layers publish these events to NATS.
    """

    def __call__(self, event: LifecycleEvent) -> None: ...
