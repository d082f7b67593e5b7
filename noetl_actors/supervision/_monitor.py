"""Monitors: OTP's `monitor`/'DOWN' for supervised actors."""

from __future__ import annotations

import itertools
import weakref
from collections.abc import Callable
from typing import Any

import attrs
import pykka

from noetl_actors.supervision._actor import SupervisedActor, _live_actors, tell_if_alive
from noetl_actors.supervision._reasons import ExitKind, ExitReason

__all__ = ["Down", "Monitor", "monitor"]

_monitor_ids = itertools.count(1)


@attrs.frozen
class Down:
    """Told to a watcher when the actor it monitors exits (OTP's 'DOWN')."""

    monitor_id: int
    actor_urn: str
    path: str
    reason: ExitReason


class Monitor:
    """A watch on one actor, returned by `monitor()`; `cancel()` ends it."""

    def __init__(self, monitor_id: int, target: SupervisedActor | None) -> None:
        self.id = monitor_id
        self._target = weakref.ref(target) if target is not None else None

    def cancel(self) -> None:
        """Stop watching (OTP's demonitor); a Down already sent stays sent."""
        target = self._target() if self._target is not None else None
        if target is not None:
            target._remove_watcher(self.id)


def monitor(
    target: pykka.ActorRef[Any], notify: pykka.ActorRef[Any] | Callable[[Down], None]
) -> Monitor:
    """Watch `target`; when it exits, `notify` gets a `Down` with the reason.

    `notify` is an actor (told the `Down`) or a callable (called on the
    exiting actor's thread: be quick). Watching an actor that has already
    exited sends the `Down` at once, as OTP does for a dead pid.

    Raises:
        TypeError: `target` is not a `SupervisedActor`.
    """
    if not issubclass(target.actor_class, SupervisedActor):
        raise TypeError(
            f"monitor() needs a SupervisedActor, got an actor of class "
            f"{target.actor_class.__name__}"
        )
    monitor_id = next(_monitor_ids)
    actor = _live_actors.get(target.actor_urn)

    def deliver(reason: ExitReason) -> None:
        down = Down(monitor_id, target.actor_urn, reason.path, reason)
        if callable(notify) and not isinstance(notify, pykka.ActorRef):
            notify(down)
        else:
            tell_if_alive(notify, down)

    if actor is not None and actor._add_watcher(monitor_id, deliver):
        return Monitor(monitor_id, actor)
    if actor is not None and actor.exit_reason is not None:
        reason = actor.exit_reason
    else:
        reason = ExitReason(ExitKind.NORMAL, message="noproc: the actor had already exited")
    deliver(reason)
    return Monitor(monitor_id, None)
