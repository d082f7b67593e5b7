"""`EventRouter`: one workflow's events to its steps, and one clock for all of them.

The router ticks every step registered with it, every half heartbeat, on one
timer per workflow; a step gone (unregistered) is not ticked, and a router
with no steps, or closed, keeps no timer.
"""

from __future__ import annotations

from typing import Any

import pytest

from noetl_actors.errors import RouterClosed
from noetl_actors.runtime._router import EventRouter, _Tick
from noetl_actors.supervision import ManualClock

HEARTBEAT = 1.0


class Mailbox:
    """Stands for a step actor's ref: keeps what it is told."""

    def __init__(self) -> None:
        self.told: list[Any] = []

    def tell(self, message: Any) -> None:
        self.told.append(message)


def ticks(mailbox: Mailbox) -> int:
    return sum(isinstance(message, _Tick) for message in mailbox.told)


def test_every_registered_step_is_ticked_every_half_heartbeat_on_one_timer() -> None:
    clock = ManualClock()
    router = EventRouter(clock=clock, heartbeat=HEARTBEAT)
    first, second = Mailbox(), Mailbox()
    router.register("t=a", first)  # type: ignore[arg-type]
    router.register("t=b", second)  # type: ignore[arg-type]
    assert clock.pending() == [HEARTBEAT / 2], "one timer for the workflow, not one per step"

    clock.advance(HEARTBEAT / 2)
    assert (ticks(first), ticks(second)) == (1, 1)

    router.unregister("t=a", first)  # type: ignore[arg-type]
    clock.advance(HEARTBEAT / 2)
    assert (ticks(first), ticks(second)) == (1, 2)


def test_a_router_without_steps_or_closed_keeps_no_timer() -> None:
    clock = ManualClock()
    router = EventRouter(clock=clock, heartbeat=HEARTBEAT)
    assert clock.pending() == []
    step = Mailbox()
    router.register("t=a", step)  # type: ignore[arg-type]
    router.unregister("t=a", step)  # type: ignore[arg-type]
    clock.advance(HEARTBEAT / 2)  # the last tick finds nobody and stops
    assert clock.pending() == []

    router.register("t=b", step)  # type: ignore[arg-type]
    router.close()
    assert clock.pending() == []
    clock.advance(HEARTBEAT)
    assert ticks(step) == 0


def test_a_step_cannot_register_with_a_closed_router() -> None:
    # Its workflow's run was given up: it would hear nothing, not even ticks.
    router = EventRouter(clock=ManualClock(), heartbeat=HEARTBEAT)
    router.close()
    with pytest.raises(RouterClosed, match="closed"):
        router.register("t=a", Mailbox())  # type: ignore[arg-type]
