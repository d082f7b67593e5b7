"""`EventRouter`: one subscription per workflow hands its events to its step actors.

It also keeps the steps' time (a `_Tick` every half heartbeat), watches the
node's link to NATS for them (`_outage`), and passes on what they say of
waiting for a worker (`_waiting`) to the workflow's report.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
from collections.abc import Callable
from typing import Any

import attrs
import pykka

from noetl_actors._refusals import RefusalLog, short
from noetl_actors.bridge import Bridge, Delivery, Subscription
from noetl_actors.errors import MalformedMessage, NoetlError, RouterClosed
from noetl_actors.runtime._messages import Event
from noetl_actors.runtime._outage import Outages, latest_events, reconnect_margin
from noetl_actors.supervision import Clock, TimerHandle, tell_if_alive

__all__ = ["HELD_EVENTS", "EventRouter", "subscribe_router"]

logger = logging.getLogger("noetl_actors.runtime")
_REFUSALS = RefusalLog(logger)

HELD_EVENTS = 1024
"""Final events an `EventRouter` keeps for steps not registered (yet)."""


@attrs.frozen
class _Tick:
    pass



class EventRouter:
    """Hands a workflow's events to its step actors: one subscription per workflow.

    A subscription per step would cost each step a SUB, a flush round trip
    and an UNSUB; the router is subscribed once, on ``event.*.<wf>.*``, and
    decodes each event once and passes the `Event` on (on the bridge's loop
    thread: a queue put) to the step actor registered for its step id.

    A final event for a step no actor is registered for yet is held (the last
    `HELD_EVENTS` of them) and handed to the step when it registers: a workflow
    taken over subscribes, reads its history, then starts its steps, and an
    adopted attempt's end may come in between.

    It also keeps its steps' time: every half `heartbeat`, while steps are
    registered, it tells each a `_Tick` (one timer per workflow; a timer
    armed and cancelled per step woke the clock's thread for each, ~15% of
    a step's CPU in a sequence). Thread-safe.

    With `outages`, its ticks also watch the node's link to NATS: steps count
    their workers' silence only while it is up, and from a margin after it
    came back (`silence_start`). Once it is back, `read_missed(step_ids)` reads
    the events of the registered steps that the outage kept from this node
    (in the stream that keeps them) and hands them over like the others (see
    `_outage`).
    """

    def __init__(
        self,
        *,
        clock: Clock,
        heartbeat: float,
        listener: Callable[[Event], object] | None = None,
        outages: Outages | None = None,
        read_missed: Callable[[list[str]], concurrent.futures.Future[list[Delivery]]]
        | None = None,
        on_waiting: Callable[[str, int, dict[str, Any] | None], object] | None = None,
    ) -> None:
        self.heartbeat = heartbeat
        self._on_waiting = on_waiting
        self._clock = clock
        self._lock = threading.Lock()
        self._steps: dict[str, pykka.ActorRef[Any]] = {}
        self._held: dict[str, Event] = {}
        self._listener = listener
        self._timer: TimerHandle | None = None
        self._closed = False
        self._outages = outages
        self._read_missed = read_missed
        self._missed_unread = False
        """The link came back and the read of what was missed failed: again next tick."""
        self.subscription: Subscription | None = None

    def register(self, step_id: str, ref: pykka.ActorRef[Any]) -> None:
        """Send `ref` the events of `step_id`, and ticks.

        Raises:
            RouterClosed: the workflow's run was given up (its step would hear
                nothing, not even ticks, and wait for ever).
        """
        with self._lock:
            if self._closed:
                raise RouterClosed(f"the event router of step {step_id!r} is closed: "
                                   f"its workflow's run was given up")
            self._steps[step_id] = ref
            held = self._held.pop(step_id, None)
            if self._timer is None:
                self._timer = self._clock.call_later(self.heartbeat / 2, self._tick)
        if held is not None:
            tell_if_alive(ref, held)

    def silence_start(self, heard_at: float) -> float | None:
        """Whence a step last heard from its worker at `heard_at` counts it silent; None
        while the node's link to NATS is down."""
        return heard_at if self._outages is None else self._outages.silence_start(heard_at)

    def _tick(self) -> None:
        """On the clock's thread: a `_Tick` to every registered step; again later if any."""
        outages = self._outages
        if outages is not None and (outages.watch(self._clock.now()) or self._missed_unread) \
                and outages.up:
            self._read_what_was_missed()
        with self._lock:
            refs = list(self._steps.values())
            self._timer = None
            if refs and not self._closed:
                self._timer = self._clock.call_later(self.heartbeat / 2, self._tick)
        for ref in refs:
            tell_if_alive(ref, _Tick())

    def hold(self, event: Event) -> None:
        """Keep `event` for its step, handed to it when it registers (an end read from
        the history of a workflow taken over)."""
        with self._lock:
            self._held[event.step_id] = event

    def waiting(self, step_id: str, attempt: int, state: dict[str, Any] | None) -> None:
        """Say that an attempt of `step_id` waits for a worker (`state`), or no longer (None)."""
        if self._on_waiting is not None:
            self._on_waiting(step_id, attempt, state)

    def unregister(self, step_id: str, ref: pykka.ActorRef[Any]) -> None:
        with self._lock:
            if self._steps.get(step_id) is ref:
                del self._steps[step_id]

    def _read_what_was_missed(self) -> None:
        """On the clock's thread: start reading the registered steps' events (no wait)."""
        with self._lock:
            step_ids = list(self._steps)
        self._missed_unread = False
        if not step_ids or self._read_missed is None:
            return
        try:
            future = self._read_missed(step_ids)
        except NoetlError as error:
            logger.debug("could not read what an outage kept from %s: %s", step_ids, error)
            self._missed_unread = True
            return
        future.add_done_callback(self._missed_read)

    def _missed_read(self, future: concurrent.futures.Future[list[Delivery]]) -> None:
        """On the bridge's loop: hand over what was read (steps ignore what they heard)."""
        try:
            deliveries = future.result()
        except Exception as error:
            logger.debug("could not read what an outage kept: %r; again at the next tick", error)
            self._missed_unread = True
            return
        for event in latest_events(deliveries):
            self._hand(event)

    def tell(self, delivery: Delivery) -> None:
        # Decoded once, here: the listener and the step actor get the same Event.
        try:
            event = Event.from_data(delivery.data)
        except MalformedMessage as error:
            with self._lock:
                ours = delivery.subject.rsplit(".", 1)[-1] in self._steps
            if ours:
                _REFUSALS.refused("malformed-event", "ignored a malformed event on %s: %s",
                                  short(delivery.subject, 120), short(str(error)))
            return
        self._hand(event)

    def _hand(self, event: Event) -> None:
        """To the listener, then to its step's actor (held for it if it has none yet)."""
        with self._lock:
            ref = self._steps.get(event.step_id)
        if self._listener is not None:
            self._listener(event)
        if ref is not None:
            tell_if_alive(ref, event)
        elif event.status.final:
            with self._lock:
                self._held[event.step_id] = event
                if len(self._held) > HELD_EVENTS:
                    del self._held[next(iter(self._held))]

    def close(self) -> None:
        with self._lock:
            self._closed = True
            timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        subscription, self.subscription = self.subscription, None
        if subscription is not None:
            subscription.cancel()  # it holds this router: no cycle left once closed


def subscribe_router(
    bridge: Bridge,
    workflow_id: str,
    *,
    clock: Clock,
    heartbeat: float = 1.0,
    listener: Callable[[Event], object] | None = None,
    stream: str | None = None,
    on_waiting: Callable[[str, int, dict[str, Any] | None], object] | None = None,
) -> EventRouter:
    """A router subscribed to every event of `workflow_id` (close() it when the workflow ends).

    `clock` is the tree's (the steps' timeouts and heartbeats are measured on it);
    `listener` sees every event first (a `RunReport`), on the bridge's loop thread.
    `stream` keeps the workflow's events: after an outage of NATS the router
    reads there what its steps missed. `on_waiting(step_id, attempt, state)`
    hears of steps that wait for a worker (`RunReport.waiting`), on the loop too.
    """

    def read_missed(step_ids: list[str]) -> concurrent.futures.Future[list[Delivery]]:
        assert stream is not None
        return bridge.history_future(stream, [f"event.*.{workflow_id}.{step_id}"
                                              for step_id in step_ids])

    options = bridge.options
    outages = Outages(bridge.link, margin=reconnect_margin(
        connect_timeout=options.connect_timeout, reconnect_wait=options.reconnect_wait))
    router = EventRouter(clock=clock, heartbeat=heartbeat, listener=listener, outages=outages,
                         read_missed=read_missed if stream is not None else None,
                         on_waiting=on_waiting)
    router.subscription = bridge.subscribe(f"event.*.{workflow_id}.*", router)
    return router
