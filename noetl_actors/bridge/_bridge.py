"""`Bridge`: actor mailboxes on NATS subjects, for every actor of a process.

The `Bridge` object is the handle actors use (publish, request, subscribe,
JetStream); it lives as long as the process and is thread-safe. The
connection under it belongs to a `BridgeActor`, a supervised child: when
its loop thread dies or its client closes, the actor crashes, its
supervisor restarts it, and the new connection makes every live
subscription again. While there is no connection, publishes wait in the
bridge (up to `max_buffered`) and go out first once it is back.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

import attrs
import nats.errors
import nats.js.api as js_api
import nats.js.errors as js_errors
import pykka
from nats.aio.msg import Msg

from noetl_actors.bridge._codec import decode, encode
from noetl_actors.bridge._connection import Connection, Outgoing
from noetl_actors.bridge._delivery import Delivery, JsMetadata, PubAck
from noetl_actors.bridge._errors import translate
from noetl_actors.bridge._kv import KeyValue
from noetl_actors.bridge._loop import LoopThread
from noetl_actors.bridge._options import ConnectOptions
from noetl_actors.bridge._settle import InFlight, Settler
from noetl_actors.bridge._subjects import DEAD_LETTER_SUBJECT, check_token
from noetl_actors.errors import BridgeError, ConnectError, MalformedMessage
from noetl_actors.supervision import (
    ChildSpec,
    EventKind,
    LifecycleEvent,
    LoopHost,
    Observer,
    SupervisedActor,
    monitor,
    tell_if_alive,
)

__all__ = ["Bridge", "BridgeStatistics", "Mailbox", "Subscription"]

logger = logging.getLogger("noetl_actors.bridge")

FETCH_BATCH = 256
FETCH_WAIT = 1.0
MSG_ID_HEADER = "Nats-Msg-Id"
_RETRYABLE = (
    nats.errors.TimeoutError,
    nats.errors.NoRespondersError,
    nats.errors.ConnectionClosedError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.OutboundBufferLimitError,
    js_errors.NoStreamResponseError,
    js_errors.ServiceUnavailableError,
    asyncio.TimeoutError,
)


@attrs.frozen
class BridgeStatistics:
    connected: bool
    published: int
    """Core-NATS publishes handed to the connection (buffered ones once sent)."""
    delivered: int
    """Messages told to actors."""
    malformed: int
    """Payloads that were not ours (not JSON, no schema); each went to the dead-letter subject."""
    dropped: int
    """Messages for actors that had already exited."""
    buffered: int
    """Publishes waiting for a connection."""
    connections: int
    """Connections made; more than one means the bridge was restarted."""
    reconnects: int
    """Times the client reconnected on its own after losing the server."""
    subscriptions: int


@attrs.define
class _Counters:
    published: int = 0
    delivered: int = 0
    malformed: int = 0
    dropped: int = 0
    connections: int = 0
    reconnects: int = 0


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
        bridge: Bridge,
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
        self._bridge = bridge
        self._connection: Connection | None = None
        self._live: Any = None  # a nats Subscription, or the pull task

    def __repr__(self) -> str:
        source = f"{self.stream}/{self.durable}" if self.stream else self.subject
        return f"<Subscription {source} -> {self.target}>"

    def cancel(self) -> None:
        """Stop delivering to the actor; unsubscribes on the server too."""
        self._bridge._forget(self)


_subscription_ids = itertools.count(1)


class Bridge:
    """Publish, request, subscribe and consume, from any actor's thread.

    Create one per process, put `child_spec()` under a supervisor, and hand
    the bridge to the actors that need it.
    """

    def __init__(
        self,
        options: ConnectOptions,
        *,
        observers: Sequence[Observer] = (),
        max_buffered: int = 10_000,
    ) -> None:
        self.options = options
        self._observers = tuple(observers)
        self._max_buffered = max_buffered
        self._lock = threading.Condition()
        self._connection: Connection | None = None
        self._path = "/bridge"
        self._subscriptions: dict[int, Subscription] = {}
        self._buffer: deque[Outgoing] = deque()
        self._counters = _Counters()
        self._loop: LoopThread | None = None

    def __repr__(self) -> str:
        return f"<Bridge {self.options.describe()}>"

    def child_spec(self, id: str = "bridge") -> ChildSpec:
        """The `ChildSpec` of the actor that owns this bridge's connection."""
        from noetl_actors.bridge._bridge_actor import BridgeActor  # it imports this module

        return ChildSpec(id=id, start=functools.partial(BridgeActor, self), shutdown=10.0)

    @property
    def host(self) -> LoopHost | None:
        """Where actors can run on the bridge's loop (`SupervisedActor.run_on`); None
        while the bridge is not started.

        What runs there shares its thread with the bridge's I/O: no handler may
        block, or wait on NATS (`request`, `history`, a KV call): that raises.
        """
        loop = self._loop
        return loop.host if loop is not None and loop.alive() else None

    # -- the loop and the connection (BridgeActor) ---------------------------

    def _running_loop(self) -> LoopThread:
        """The bridge's loop thread, started if there is none (or it died)."""
        with self._lock:
            if self._loop is None or not self._loop.alive():
                dead, self._loop = self._loop, LoopThread().start()
            else:
                dead = None
            loop = self._loop
        if dead is not None:
            dead.stop()
        return loop

    def _stop_loop(self, *, unless_hosting: bool = False) -> None:
        """Stop the loop thread (and what it hosts), or keep it while it hosts actors."""
        with self._lock:
            loop = self._loop
            if loop is None or (unless_hosting and loop.host.hosting()):
                return
            self._loop = None
        loop.stop()

    def _attach(self, connection: Connection, path: str) -> None:
        # Subscriptions first, so that what waited in the buffer reaches this
        # process's own subscribers too; then open the connection to callers.
        self._activate_all(connection)
        with self._lock:
            self._path = path
            self._connection = connection
            self._counters.connections += 1
            while self._buffer:
                connection.publish_nowait(*self._buffer.popleft())
                self._counters.published += 1
            self._lock.notify_all()
        self._activate_all(connection)  # any registered meanwhile (skips the others)
        self._emit(EventKind.CONNECTED, connection.options.describe())

    def _activate_all(self, connection: Connection) -> None:
        with self._lock:
            subscriptions = list(self._subscriptions.values())
        for subscription in subscriptions:
            try:
                connection.call(self._activate(connection, subscription), timeout=10.0)
            except Exception:
                logger.exception("could not bridge %r again after a restart", subscription)

    def _detach(self, connection: Connection) -> None:
        with self._lock:
            if self._connection is connection:
                self._connection = None

    def _connection_state(self, kind: str, detail: str) -> None:
        if kind == "disconnected":
            self._emit(EventKind.DISCONNECTED, detail)
        elif kind == "reconnected":
            self._counters.reconnects += 1
            self._emit(EventKind.RECONNECTED, detail)
        else:
            # Every failed reconnect says so; the disconnected event already told.
            logger.debug("NATS: %s", detail)

    def wait_connected(self, timeout: float | None = None) -> bool:
        """Block until a connection is up; False if none within `timeout`."""
        with self._lock:
            return self._lock.wait_for(lambda: self._connection is not None, timeout)

    def _current(self, timeout: float) -> Connection:
        with self._lock:
            if not self._lock.wait_for(lambda: self._connection is not None, timeout):
                raise ConnectError(
                    f"the bridge to {self.options.describe()} has no connection "
                    f"(waited {timeout:g}s)"
                )
            assert self._connection is not None
            return self._connection

    # -- core NATS -------------------------------------------------------------

    def publish(
        self, subject: str, data: Mapping[str, Any], *, headers: Mapping[str, str] | None = None
    ) -> None:
        """Publish a JSON payload; never waits on the network. Thread-safe.

        Raises:
            TypeError: `data` cannot be JSON.
            BridgeError: no connection and `max_buffered` publishes wait already.
        """
        item = (subject, encode(data), dict(headers) if headers else None)
        with self._lock:
            connection = self._connection
            if connection is None:
                if len(self._buffer) >= self._max_buffered:
                    raise BridgeError(
                        f"the bridge has no connection and already holds "
                        f"{self._max_buffered} publishes"
                    )
                self._buffer.append(item)
                return
            connection.publish_nowait(*item)
            self._counters.published += 1

    def respond(self, request: Delivery, data: Mapping[str, Any]) -> None:
        """Answer a request that arrived as `request`."""
        if not request.reply:
            raise ValueError(f"the message on {request.subject} has no reply subject")
        self.publish(request.reply, data)

    def request(
        self, subject: str, data: Mapping[str, Any], *, timeout: float = 5.0
    ) -> pykka.Future[Delivery]:
        """Send a request; the future gets the reply as a `Delivery`.

        The future raises BridgeTimeout (no reply in time), BridgeError (no
        one listens on the subject) or MalformedMessage (a reply not ours).
        """
        connection = self._current(timeout)
        payload = encode(data)

        async def ask() -> Delivery:
            msg = await connection.client.request(subject, payload, timeout=timeout)
            return Delivery(msg.subject, decode(msg.data), headers=msg.headers or {})

        return _pykka_future(connection.submit(ask()))

    def subscribe(
        self,
        subject: str,
        target: Mailbox,
        *,
        queue: str | None = None,
        timeout: float = 5.0,
        answer_malformed: Callable[[str], Mapping[str, Any]] | None = None,
        on_loop: Callable[[Delivery], bool] | None = None,
    ) -> Subscription:
        """Tell `target` a `Delivery` for every message on `subject`.

        Wildcards are allowed; with `queue`, each message goes to one member
        of the queue group. Returns once the server has the subscription, or at
        once while the bridge has no connection (it is made when one comes).
        It ends when the actor exits (or with `Subscription.cancel()`).

        A malformed message goes to the dead letters, never to `target`; if it
        is a request and `answer_malformed` is given, the requester gets
        `answer_malformed(why)` as its reply instead of silence.

        `on_loop(delivery)`, if given, sees each delivery first, on the bridge's
        loop thread, and returns True when it handled it (`target` is not told).
        It is for work that takes microseconds and never blocks (no request,
        no wait): everything else this bridge delivers waits while it runs.
        """
        if not subject or any(c.isspace() for c in subject):
            raise ValueError(f"subject must be non-empty with no white space (got {subject!r})")
        if queue is not None:
            check_token(queue, "queue group")
        return self._register(Subscription(self, subject, target, queue=queue,
                                           answer_malformed=answer_malformed,
                                           on_loop=on_loop), timeout)

    def _register(self, subscription: Subscription, timeout: float) -> Subscription:
        with self._lock:
            self._subscriptions[subscription.id] = subscription
            connection = self._connection
        target = subscription.target
        if isinstance(target, pykka.ActorRef) and issubclass(target.actor_class, SupervisedActor):
            monitor(target, lambda _down: self._forget(subscription))
        if connection is not None:
            try:
                connection.call(self._activate(connection, subscription), timeout=timeout)
            except BaseException:
                self._forget(subscription)
                raise
        return subscription

    async def _activate(self, connection: Connection, subscription: Subscription) -> None:
        """Make `subscription` live on `connection` (on its loop; idempotent)."""
        if subscription.id not in self._subscriptions or subscription._connection is connection:
            return
        if subscription.stream is None:
            handler = functools.partial(self._on_message, connection, subscription)
            live: Any = await connection.subscribe(
                subscription.subject, subscription.queue or "", handler)
            await connection.client.flush()
        else:
            pull = await self._bind_consumer(connection, subscription)
            live = connection.spawn(
                self._pull(connection, subscription, pull),
                name=f"consume {subscription.stream}/{subscription.durable}",
            )
        subscription._connection, subscription._live = connection, live

    def _forget(self, subscription: Subscription) -> None:
        with self._lock:
            if self._subscriptions.pop(subscription.id, None) is None:
                return
            connection, live = subscription._connection, subscription._live
            subscription._connection = subscription._live = None
        if connection is None or connection.closed or live is None:
            return
        try:
            if isinstance(live, asyncio.Task):
                connection.loop.call_soon_threadsafe(live.cancel)
            else:
                connection.submit(connection.unsubscribe(live)).add_done_callback(_log_failure)
        except RuntimeError:
            pass  # the loop closed meanwhile: the server dropped it with the connection

    def _on_message(self, connection: Connection, subscription: Subscription, msg: Msg) -> None:
        data = self._decode_or_dead_letter(connection, msg, subscription.answer_malformed)
        if data is not None:
            self._tell(subscription, Delivery(
                msg.subject, data, headers=msg.headers or {}, reply=msg.reply or None))

    def _tell(self, subscription: Subscription, delivery: Delivery) -> bool:
        if subscription.on_loop is not None and self._handled_on_loop(subscription, delivery):
            self._counters.delivered += 1
            return True
        target = subscription.target
        if isinstance(target, pykka.ActorRef):
            told = tell_if_alive(target, delivery)
        else:
            target.tell(delivery)
            told = True
        if not told:
            self._counters.dropped += 1
            self._forget(subscription)
            return False
        self._counters.delivered += 1
        return True

    def _handled_on_loop(self, subscription: Subscription, delivery: Delivery) -> bool:
        assert subscription.on_loop is not None
        try:
            return subscription.on_loop(delivery)
        except Exception:
            logger.exception("%r failed on a message on %s; it goes to %s instead",
                             subscription.on_loop, delivery.subject, subscription.target)
            return False

    def _decode_or_dead_letter(
        self, connection: Connection, msg: Msg,
        answer: Callable[[str], Mapping[str, Any]] | None = None,
    ) -> dict[str, Any] | None:
        try:
            return decode(msg.data)
        except MalformedMessage as error:
            self._counters.malformed += 1
            logger.warning("malformed message on %s: %s (sent to %s)",
                           msg.subject, error, DEAD_LETTER_SUBJECT)
            if msg.subject != DEAD_LETTER_SUBJECT:
                connection.publish_nowait(
                    DEAD_LETTER_SUBJECT,
                    msg.data,
                    {"Noetl-Subject": msg.subject, "Noetl-Reason": str(error)},
                )
            if answer is not None and msg.reply:
                connection.publish_nowait(msg.reply, encode(answer(str(error))), None)
            return None

    # -- JetStream ---------------------------------------------------------------

    def ensure_stream(
        self,
        name: str,
        subjects: Iterable[str],
        *,
        duplicate_window: float = 120.0,
        max_age: float | None = None,
        storage: str = "file",
        timeout: float = 5.0,
    ) -> None:
        """Create the stream, or update it to this config; idempotent.

        `duplicate_window` is how long the server remembers message ids
        (see `publish_acked`).
        """
        check_token(name, "stream name")
        config = js_api.StreamConfig(
            name=name,
            subjects=list(subjects),
            storage=js_api.StorageType(storage),
            duplicate_window=duplicate_window,
            max_age=max_age,
        )
        connection = self._current(timeout)

        async def ensure() -> None:
            try:
                await connection.js.add_stream(config)
            except js_errors.BadRequestError:
                await connection.js.update_stream(config)

        connection.call(ensure(), timeout=timeout)

    def publish_acked(
        self,
        subject: str,
        data: Mapping[str, Any],
        *,
        msg_id: str | None = None,
        timeout: float = 5.0,
    ) -> pykka.Future[PubAck]:
        """Publish to a stream and get the server's receipt in a future.

        With `msg_id` the server stores the message once however often it is
        sent within the stream's duplicate window, so the bridge retries
        (across a server restart, with backoff) until acked or `timeout`.
        Without it there is one attempt.
        """
        payload = encode(data)
        headers = {MSG_ID_HEADER: msg_id} if msg_id else None
        connection = self._current(timeout)
        deadline = time.monotonic() + timeout

        async def publish() -> PubAck:
            pause = 0.05
            while True:
                remaining = deadline - time.monotonic()
                try:
                    ack = await connection.js.publish(
                        subject, payload, timeout=max(min(remaining, 1.0), 0.01), headers=headers
                    )
                    return PubAck(ack.stream, ack.seq, bool(ack.duplicate))
                except _RETRYABLE:
                    if headers is None or time.monotonic() + pause >= deadline:
                        raise
                await asyncio.sleep(pause)
                pause = min(pause * 2, 1.0)

        return _pykka_future(connection.submit(publish()))

    def consume(
        self,
        stream: str,
        durable: str,
        target: pykka.ActorRef[Any],
        *,
        filter_subject: str | None = None,
        max_in_flight: int = 64,
        ack_wait: float = 30.0,
        timeout: float = 5.0,
    ) -> Subscription:
        """Deliver a durable pull consumer's messages into `target`.

        At most `max_in_flight` messages are unsettled at a time; each must
        be settled with `Delivery.ack()`, `nak()` or `term()`. Unsettled
        messages come again after `ack_wait` seconds.
        """
        check_token(stream, "stream name")
        check_token(durable, "consumer name")
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1 (got {max_in_flight})")
        subscription = Subscription(
            self, filter_subject or ">", target, stream=stream, durable=durable,
            max_in_flight=max_in_flight, ack_wait=ack_wait,
        )
        return self._register(subscription, timeout)

    def ensure_bucket(self, name: str, *, ttl: float | None, timeout: float = 5.0) -> KeyValue:
        """Create the key-value bucket `name` (keys expire after `ttl` seconds, never if
        None) unless it exists; returns it."""
        check_token(name, "bucket name")
        connection = self._current(timeout)

        async def ensure() -> None:
            await connection.js.create_key_value(bucket=name, ttl=ttl)

        connection.call(ensure(), timeout=timeout)
        return KeyValue(self, name, timeout=timeout)

    def claim(self, bucket: str, key: str, *, timeout: float = 5.0) -> bool:
        """Create `key` in `bucket` if no one has: True for exactly one caller, across
        every process and node on this NATS (until the key expires). Blocks one round trip.

        Raises:
            ConnectError, BridgeTimeout: NATS could not answer; nobody may assume the claim.
        """
        connection = self._current(timeout)

        async def create() -> bool:
            try:
                await (await connection.js.key_value(bucket)).create(key, b"1")
            except js_errors.KeyWrongLastSequenceError:
                return False
            return True

        return connection.call(create(), timeout=timeout)

    def history(
        self, stream: str, subjects: Iterable[str], *, timeout: float = 10.0
    ) -> list[Delivery]:
        """Every message of `stream` on `subjects` (wildcards allowed), oldest first.

        Reads through a short-lived consumer of its own; malformed messages
        are skipped (and counted). Blocks until read, at most `timeout`.
        """
        check_token(stream, "stream name")
        connection = self._current(timeout)
        wanted = list(subjects)

        async def read() -> list[Delivery]:
            info = await connection.js.add_consumer(stream, js_api.ConsumerConfig(
                ack_policy=js_api.AckPolicy.NONE, filter_subjects=wanted,
                inactive_threshold=max(timeout, 5.0),
            ))
            pull = await connection.js.pull_subscribe_bind(info.name, stream)
            found: list[Delivery] = []
            try:
                pending = info.num_pending or 0
                while pending > 0:
                    messages = await pull.fetch(batch=min(pending, 1000), timeout=timeout)
                    for msg in messages:
                        data = self._decode_or_dead_letter(connection, msg)
                        if data is not None:
                            found.append(Delivery(msg.subject, data, headers=msg.headers or {}))
                    pending = (messages[-1].metadata.num_pending or 0) if messages else 0
            finally:
                await pull.unsubscribe()
                await connection.js.delete_consumer(stream, info.name)
            return found

        return connection.call(read(), timeout=timeout + 1)

    async def _bind_consumer(self, connection: Connection, subscription: Subscription) -> Any:
        assert subscription.stream is not None and subscription.durable is not None
        config = js_api.ConsumerConfig(
            durable_name=subscription.durable,
            ack_policy=js_api.AckPolicy.EXPLICIT,
            max_ack_pending=subscription.max_in_flight,
            ack_wait=subscription.ack_wait,
            filter_subject=None if subscription.subject == ">" else subscription.subject,
        )
        await connection.js.add_consumer(subscription.stream, config)
        return await connection.js.pull_subscribe_bind(subscription.durable, subscription.stream)

    async def _pull(self, connection: Connection, subscription: Subscription, pull: Any) -> None:
        in_flight = InFlight(subscription.max_in_flight)
        try:
            while True:
                free = in_flight.free()
                if free <= 0:
                    in_flight.freed.clear()
                    await in_flight.freed.wait()
                    continue
                try:
                    messages = await pull.fetch(batch=min(free, FETCH_BATCH), timeout=FETCH_WAIT)
                except (TimeoutError, nats.errors.TimeoutError):
                    continue
                except Exception as error:  # reconnecting, server restarting, ...
                    logger.debug("fetch from %r failed: %r; retrying", subscription, error)
                    await asyncio.sleep(0.1)
                    continue
                for msg in messages:
                    self._deliver_js(connection, subscription, in_flight, msg)
        finally:
            try:
                await pull.unsubscribe()
            except Exception:
                logger.debug("unsubscribing %r failed", subscription, exc_info=True)

    def _deliver_js(
        self, connection: Connection, subscription: Subscription, in_flight: InFlight, msg: Msg
    ) -> None:
        in_flight.count += 1
        settle = Settler(connection, in_flight, msg)
        data = self._decode_or_dead_letter(connection, msg)
        if data is None:
            settle("term", None)
            return
        meta = msg.metadata
        delivery = Delivery(
            msg.subject,
            data,
            headers=msg.headers or {},
            js=JsMetadata(
                stream=meta.stream,
                consumer=meta.consumer,
                stream_seq=meta.sequence.stream,
                consumer_seq=meta.sequence.consumer,
                num_delivered=meta.num_delivered,
                num_pending=meta.num_pending,
                timestamp=meta.timestamp,
            ),
            settle=settle,
        )
        if not self._tell(subscription, delivery):
            settle("nak", None)

    # -- observing ----------------------------------------------------------------

    def statistics(self) -> BridgeStatistics:
        with self._lock:
            counters = attrs.evolve(self._counters)
            return BridgeStatistics(
                connected=self._connection is not None,
                published=counters.published,
                delivered=counters.delivered,
                malformed=counters.malformed,
                dropped=counters.dropped,
                buffered=len(self._buffer),
                connections=counters.connections,
                reconnects=counters.reconnects,
                subscriptions=len(self._subscriptions),
            )

    def _emit(self, kind: EventKind, detail: str) -> None:
        event = LifecycleEvent(kind=kind, path=self._path, detail=detail)
        for observer in self._observers:
            try:
                observer(event)
            except Exception:
                logger.exception("observer %r failed on %s (ignored)", observer, event)


def _pykka_future(future: Any) -> pykka.Future[Any]:
    """A pykka future set from a concurrent one, with nats errors translated."""
    result: pykka.Future[Any] = pykka.ThreadingFuture()

    def copy(done: Any) -> None:
        error = done.exception() if not done.cancelled() else asyncio.CancelledError()
        if error is None:
            result.set(done.result())
        else:
            translated = translate(error)
            result.set_exception((type(translated), translated, translated.__traceback__))

    future.add_done_callback(copy)
    return result


def _log_failure(future: Any) -> None:
    if not future.cancelled() and future.exception() is not None:
        logger.debug("unsubscribe failed", exc_info=future.exception())
