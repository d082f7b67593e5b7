"""`Child`: a supervisor's record of one child, and the messages it sends itself."""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs
import pykka

from noetl_actors.clock import TimerHandle
from noetl_actors.errors import ChildError, SupervisionError
from noetl_actors.supervision._address import Address
from noetl_actors.supervision._reasons import ExitReason
from noetl_actors.supervision._specs import INFINITY, Backoff, ChildSpec, SupervisorFlags
from noetl_actors.supervision._state import ActorState

if TYPE_CHECKING:
    from noetl_actors.supervision._actor import SupervisedActor

__all__ = ["Child"]

LAST_EXITS_KEPT = 5


@attrs.define(eq=False)
class Child:
    """One child of a supervisor, across its incarnations: what the hooks are given.

    The supervisor's own record, kept and changed on its thread only. A
    subclass reads it in its hooks (`Supervisor.children`, `may_start`,
    `restart_group`, ...) and never writes it. For other threads there is
    `SupervisorRef.which_children()`, a copy (`ChildInfo`).
    """

    spec: ChildSpec
    address: Address
    state: ActorState = ActorState.STARTING
    actor: SupervisedActor | None = None
    """The running incarnation; None while the child does not run."""
    token: int = 0
    """The restart order it waits for (kernel bookkeeping)."""
    total_restarts: int = 0
    restart_times: deque[float] = attrs.field(factory=deque)
    consecutive: int = 0
    last_exits: deque[tuple[ExitReason, float]] = attrs.field(
        factory=lambda: deque(maxlen=LAST_EXITS_KEPT)
    )
    started_at: float | None = None
    running_since: float | None = None
    """Clock time of the last successful start; None after a failure."""
    timer: TimerHandle | None = None
    restart_due: float = 0.0
    """Clock time its backoff ends, while it is `BACKING_OFF`."""

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def waiting(self) -> bool:
        """Whether it waits to be started (not running, not backing off, not stopped)."""
        return self.actor is None and self.state in (ActorState.STARTING, ActorState.RESTARTING)

    def count_restart(self, now: float, within: float) -> None:
        self.total_restarts += 1
        self.restart_times.append(now)
        while self.restart_times[0] < now - within:
            self.restart_times.popleft()

    def backoff_delay(self, backoff: Backoff, now: float, rng: random.Random) -> float:
        """The wait before this restart; the count resets once the child ran quietly."""
        since = self.running_since
        if since is not None and now - since >= backoff.reset_after:
            self.consecutive = 0
        self.running_since = None
        delay = backoff.delay(self.consecutive, rng)
        self.consecutive += 1
        return delay

    def cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def picture(self, flags: SupervisorFlags, now: float) -> dict[str, Any]:
        """Its entry in a supervisor's snapshot (docs/supervision.md, "Snapshots")."""
        within = flags.within
        return {
            "id": self.id,
            "path": self.address.path,
            "kind": self.spec.type.value,
            "state": self.state.value,
            "restart": self.spec.restart.value,
            "restarts_in_window": sum(t >= now - within for t in self.restart_times),
            "max_restarts": flags.max_restarts,
            "within": within,
            "total_restarts": self.total_restarts,
            "last_exits": [{**reason.to_dict(), "at": at} for reason, at in self.last_exits],
            "started_at": self.started_at,
            "shutdown": "infinity" if self.spec.shutdown == INFINITY else self.spec.shutdown,
            "mailbox": self.actor.mailbox_depth() if self.actor is not None else 0,
            "detail": self.actor.detail() if self.actor is not None else None,
            "backoff_remaining": max(self.restart_due - now, 0.0)
            if self.state is ActorState.BACKING_OFF else None,
        }


# -- what a supervisor tells itself ---------------------------------------------


@attrs.frozen
class ChildExit:
    child_id: str
    actor: SupervisedActor
    reason: ExitReason


@attrs.frozen
class RestartDue:
    child_ids: tuple[str, ...]
    token: int


@attrs.frozen
class Call:
    """A verb of `SupervisorRef`, run on the supervisor's thread."""

    method: Callable[..., Any]
    args: tuple[Any, ...] = ()


@attrs.frozen
class Refused:
    """A verb the supervisor refused: the caller's mistake, not the supervisor's crash."""

    error: ChildError | SupervisionError


def subtree(answer: pykka.Future[Any] | dict[str, Any], deadline: float) -> dict[str, Any]:
    """A child supervisor's strategy, intensity and children, or `unresponsive`."""
    try:
        picture = answer if isinstance(answer, dict) else answer.get(
            timeout=max(deadline - time.monotonic(), 0))
    except (pykka.Timeout, pykka.ActorDeadError):
        return {"unresponsive": True, "children": []}
    if isinstance(picture, Refused):
        return {"unresponsive": True, "children": []}
    return {key: picture[key] for key in ("strategy", "intensity", "children")}


