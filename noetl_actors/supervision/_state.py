"""States and read-only records that supervisors hand out."""

from __future__ import annotations

import enum
from typing import Any

import attrs
import pykka

from noetl_actors.supervision._specs import ChildType, Restart

__all__ = ["ActorState", "ChildCounts", "ChildInfo"]


class ActorState(enum.Enum):
    """Where a supervised child is in its life, as its supervisor sees it."""

    STARTING = "starting"
    """Not started yet (the supervisor is still starting earlier children)."""
    RUNNING = "running"
    """Its `on_start` returned and it takes messages."""
    RESTARTING = "restarting"
    """It exited and will be started again at once."""
    BACKING_OFF = "backing_off"
    """It exited and will be started again when its backoff delay is over."""
    STOPPED = "stopped"
    """It exited and will not be restarted (terminated, or not restartable)."""


@attrs.frozen
class ChildInfo:
    """One row of `which_children()`; `ref` is None unless the child runs."""

    id: str
    ref: pykka.ActorRef[Any] | None
    type: ChildType
    state: ActorState
    restart: Restart


@attrs.frozen
class ChildCounts:
    """`count_children()`: OTP's specs, active, supervisors, workers."""

    specs: int
    active: int
    supervisors: int
    workers: int
