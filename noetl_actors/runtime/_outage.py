"""What a workflow's steps make of an outage of NATS.

A step takes a worker that sends nothing for `HEARTBEAT_MISSES` heartbeats
for lost (it died, say), and its attempt for crashed. Silence while this
node's link to NATS is down says nothing of the worker: the worker's events
cannot reach this node, however alive it is. Nor does silence just after the
link is back: the worker reconnects on its own, up to a reconnect wait (or a
connect attempt that has to time out first) after this node, and its events
of the outage come when it does. So `Outages` counts silence only while the
link is up, and from `margin` seconds after it came back: a worker is taken
for lost only when it stays silent while both ends could have talked.

The events a worker sent while this node was cut off (a final `succeeded`,
say) did reach the stream that keeps them (``NOETL_EVENTS``), if not this
node: after each outage a workflow reads its steps' events there
(`latest_events`), so that nothing sent during an outage, or between the
worker's reconnect and this node's, is missed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from noetl_actors.bridge import Delivery, LinkState
from noetl_actors.errors import MalformedMessage
from noetl_actors.runtime._messages import Event

__all__ = ["Outages", "latest_events", "reconnect_margin"]


def reconnect_margin(*, connect_timeout: float, reconnect_wait: float) -> float:
    """Seconds a worker's reconnect may lag this node's: nats-py tries again every
    `reconnect_wait`, and an attempt under way when the server came back may first
    have to time out (`connect_timeout`). Workers are taken to use this node's
    options (both default to ``ConnectOptions``'s)."""
    return connect_timeout + reconnect_wait


class Outages:
    """One workflow's view of its node's link to NATS, on the workflow's clock.

    `watch()` is called at every tick of the workflow's router (one thread);
    `silence_start()` by its steps, on theirs: it reads two fields, written in
    an order that keeps every reading sound.
    """

    def __init__(self, link: Callable[[], LinkState], *, margin: float) -> None:
        self.margin = margin
        self._link = link
        first = link()
        self._changes = first.changes
        self._back_at: float | None = None
        self._down = not first.up

    @property
    def up(self) -> bool:
        return not self._down

    def watch(self, now: float) -> bool:
        """Look at the link at `now`; True if it came back since the last look (or went
        down and came back in between)."""
        state = self._link()
        if state.changes == self._changes:
            return False
        self._changes = state.changes
        if not state.up:
            self._down = True
            return False
        self._back_at = now  # before `_down`: a step never sees "up" with the old time
        self._down = False
        return True

    def silence_start(self, heard_at: float) -> float | None:
        """Whence a worker last heard at `heard_at` counts as silent; None while the link
        is down (nothing counts)."""
        if self._down:
            return None
        back_at = self._back_at
        return heard_at if back_at is None else max(heard_at, back_at + self.margin)


def latest_events(deliveries: Iterable[Delivery]) -> list[Event]:
    """Of a stream's events (oldest first), each attempt's end, or its latest word if it
    has none yet, in the order they were kept: what a step that missed them needs."""
    latest: dict[str, Event] = {}
    for delivery in deliveries:
        try:
            event = Event.from_data(delivery.data)
        except MalformedMessage:
            continue
        known = latest.get(event.command_id)
        if known is None or not known.status.final:
            latest.pop(event.command_id, None)  # moved to the end: the order kept
            latest[event.command_id] = event
    return list(latest.values())
