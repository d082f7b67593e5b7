"""`Subscription`: a subject, or a JetStream consumer, bridged into one actor's mailbox.

A subscription is registered with the `BridgeCore`, which makes it live on
every connection it gets (`activate`); it ends when its actor exits (the
bridge monitors the actor), when a message finds the actor gone, or with
`cancel()`.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import pykka
from nats.aio.msg import Msg

from noetl_actors.bridge._connection import Connection
from noetl_actors.bridge._core import BridgeCore
from noetl_actors.bridge._delivery import Delivery
from noetl_actors.bridge._jetstream import JetStream
from noetl_actors.supervision import SupervisedActor, monitor, tell_if_alive

__all__ = ["Mailbox", "Subscription"]

logger = logging.getLogger("noetl_actors.bridge")

_subscription_ids = itertools.count(1)


class Mailbox(Protocol):
    """Where a subscription delivers: an actor's `ActorRef`, or anything that can be
    told a `Delivery` without blocking (it is called on the bridge's loop thread)."""

    def tell(self, message: Any) -> None: ...


class Subscription:
    """A subject, or a JetStream consumer, bridged into one actor's mailbox.

    It ends when the actor exits, or with `cancel()`.
    """

    def __init__(
        self,
        core: BridgeCore,
        jetstream: JetStream,
        subject: str,
        target: Mailbox,
        *,
        queue: str | None = None,
        stream: str | None = None,
        durable: str | None = None,
        max_in_flight: int = 0,
        ack_wait: float = 30.0,
        answer_malformed: Callable[[str], Mapping[str, Any]] | None = None,
        on_loop: Callable[[Delivery], bool] | None = None,
    ) -> None:
        self.id = next(_subscription_ids)
        self.answer_malformed = answer_malformed
        self.on_loop = on_loop
        self.subject = subject
        self.target = target
        self.queue = queue
        self.stream = stream
        self.durable = durable
        self.max_in_flight = max_in_flight
        self.ack_wait = ack_wait
        self._core = core
        self._jetstream = jetstream
        self._connection: Connection | None = None
        self._live: Any = None  # a nats Subscription, or the pull task

    def __repr__(self) -> str:
        source = f"{self.stream}/{self.durable}" if self.stream else self.subject
        return f"<Subscription {source} -> {self.target}>"

    def start(self, timeout: float) -> Subscription:
        """Register it, end it with its actor, and make it live if connected.

        Returns once the server has it, or at once while there is no connection.
        """
        connection = self._core.register(self)
        target = self.target
        if isinstance(target, pykka.ActorRef) and issubclass(target.actor_class, SupervisedActor):
            monitor(target, lambda _down: self.cancel())
        if connection is not None:
            try:
                connection.call(self.activate(connection), timeout=timeout)
            except BaseException:
                self.cancel()
                raise
        return self

    def cancel(self) -> None:
        """Stop delivering to the actor; unsubscribes on the server too."""
        core = self._core
        with core.lock:
            if not core.unregister(self):
                return
            connection, live = self._connection, self._live
            self._connection = self._live = None
        if connection is not None and live is not None:
            _end(connection, live)

    async def activate(self, connection: Connection) -> None:
        """Make it live on `connection` (on its loop; idempotent).

        The core calls it for every new connection; not for users.
        """
        if not self._core.registered(self) or self._connection is connection:
            return
        if self.stream is None:
            handler = functools.partial(self._on_message, connection)
            subscription = await connection.subscribe(self.subject, self.queue or "", handler)
            # Kept before the flush: if the call gives up while it waits for the
            # server (its timeout), the SUB is sent all the same, and `cancel()`
            # must know what to unsubscribe.
            if self._keep(connection, subscription):
                await connection.client.flush()
        else:
            assert self.durable is not None
            self._keep(connection, await self._jetstream.pull_into(
                connection, self._tell, stream=self.stream, durable=self.durable,
                filter_subject=None if self.subject == ">" else self.subject,
                max_in_flight=self.max_in_flight, ack_wait=self.ack_wait,
            ))

    def _keep(self, connection: Connection, live: Any) -> bool:
        """Remember `live` as what to end on `cancel()`; or end it now if cancelled."""
        with self._core.lock:
            cancelled = not self._core.registered(self)
            if not cancelled:
                self._connection, self._live = connection, live
        if cancelled:  # while it was being made: it must not stay on the server
            _end(connection, live)
        return not cancelled

    def _on_message(self, connection: Connection, msg: Msg) -> None:
        data = self._core.decode_or_dead_letter(connection, msg, self.answer_malformed)
        if data is not None:
            self._tell(Delivery(
                msg.subject, data, headers=msg.headers or {}, reply=msg.reply or None))

    def _tell(self, delivery: Delivery) -> bool:
        counters = self._core.counters
        if self.on_loop is not None and self._handled_on_loop(delivery):
            counters.delivered += 1
            return True
        target = self.target
        if isinstance(target, pykka.ActorRef):
            told = tell_if_alive(target, delivery)
        else:
            target.tell(delivery)
            told = True
        if not told:
            counters.dropped += 1
            self.cancel()
            return False
        counters.delivered += 1
        return True

    def _handled_on_loop(self, delivery: Delivery) -> bool:
        assert self.on_loop is not None
        try:
            return self.on_loop(delivery)
        except Exception:
            logger.exception("%r failed on a message on %s; it goes to %s instead",
                             self.on_loop, delivery.subject, self.target)
            return False


def _end(connection: Connection, live: Any) -> None:
    """Unsubscribe `live` (a nats Subscription), or cancel it (a pull task)."""
    if connection.closed:
        return  # the server dropped it with the connection
    try:
        if isinstance(live, asyncio.Task):
            connection.loop.call_soon_threadsafe(live.cancel)
        else:
            connection.submit(connection.unsubscribe(live)).add_done_callback(_log_failure)
    except RuntimeError:
        pass  # the loop closed meanwhile: the server dropped it with the connection


def _log_failure(future: Any) -> None:
    if not future.cancelled() and future.exception() is not None:
        logger.debug("unsubscribe failed", exc_info=future.exception())
