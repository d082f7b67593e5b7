"""`Bridge`: actor mailboxes on NATS subjects, for every actor of a process.

The `Bridge` object is the handle actors use (publish, request, subscribe,
JetStream, key-value); it lives as long as the process and is thread-safe.
It composes the parts of the bridge, each built on one `BridgeCore` (the
loop thread and the connection state): the `BridgeActor`, a supervised
child that owns the connection (when its loop thread dies or its client
closes, the actor crashes, its supervisor restarts it, and the new
connection makes every live subscription again), the subscriptions, the
JetStream calls and the key-value buckets. While there is no connection,
publishes wait in the core (up to `max_buffered`) and go out first once it
is back.
"""

from __future__ import annotations

import concurrent.futures
import functools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import pykka

from noetl_actors.bridge._bridge_actor import BridgeActor
from noetl_actors.bridge._codec import decode, encode
from noetl_actors.bridge._connection import Connection
from noetl_actors.bridge._core import BridgeCore, BridgeStatistics, pykka_future
from noetl_actors.bridge._delivery import Delivery, PubAck
from noetl_actors.bridge._jetstream import MSG_ID_HEADER, JetStream
from noetl_actors.bridge._kv import Entry, KeyValue, claim, claim_soon, ensure_bucket
from noetl_actors.bridge._link import LinkState
from noetl_actors.bridge._options import ConnectOptions
from noetl_actors.bridge._subjects import check_token
from noetl_actors.bridge._subscription import Mailbox, Subscription
from noetl_actors.supervision import ChildSpec, LoopHost, Observer

__all__ = ["Bridge"]


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
        self._core = BridgeCore(options, observers=observers, max_buffered=max_buffered)
        self._jetstream = JetStream(self._core)

    def __repr__(self) -> str:
        return f"<Bridge {self.options.describe()}>"

    def child_spec(self, id: str = "bridge") -> ChildSpec:
        """The `ChildSpec` of the actor that owns this bridge's connection."""
        return ChildSpec(id=id, start=functools.partial(BridgeActor, self._core), shutdown=10.0)

    @property
    def host(self) -> LoopHost | None:
        """Where actors can run on the bridge's loop (`SupervisedActor.run_on`); None
        while the bridge is not started.

        What runs there shares its thread with the bridge's I/O: no handler may
        block, or wait on NATS (`request`, `history`, a KV call): that raises.
        """
        return self._core.host

    def wait_connected(self, timeout: float | None = None) -> bool:
        """Block until a connection is up; False if none within `timeout`."""
        return self._core.wait_connected(timeout)

    # -- core NATS -------------------------------------------------------------

    def publish(
        self, subject: str, data: Mapping[str, Any], *, headers: Mapping[str, str] | None = None,
        msg_id: str | None = None,
    ) -> None:
        """Publish a JSON payload; never waits on the network. Thread-safe.

        With `msg_id`, for a subject a stream keeps: the message carries it as
        ``Nats-Msg-Id`` (the stream stores it once within its duplicate window)
        and is sent again after an outage if it may have been lost in it (see
        `_link`). Subscribers may then see it twice.

        Raises:
            TypeError: `data` cannot be JSON.
            BridgeError: no connection and `max_buffered` publishes wait already.
        """
        if msg_id is not None:
            headers = {**(headers or {}), MSG_ID_HEADER: msg_id}
        self._core.publish((subject, encode(data), dict(headers) if headers else None),
                           keep=msg_id is not None)

    def link(self) -> LinkState:
        """Whether the link to NATS is up now, and how often it went down or came back:
        what was silent while it was down (or since it came back) says nothing of others."""
        return self._core.link()

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
        connection = self._core.current(timeout)
        payload = encode(data)

        async def ask() -> Delivery:
            msg = await connection.client.request(subject, payload, timeout=timeout)
            return Delivery(msg.subject, decode(msg.data), headers=msg.headers or {})

        return pykka_future(connection.submit(ask()))

    def request_soon(
        self, subject: str, data: Mapping[str, Any], *, timeout: float
    ) -> concurrent.futures.Future[Delivery]:
        """Send a request and return at once, from any thread (the loop's too).

        The future gets the reply as a `Delivery`, or fails with NoResponders
        (nothing is subscribed on `subject`: the server says so at once),
        BridgeTimeout, MalformedMessage, or ConnectError (no connection now: a
        request is not buffered). It is settled on the bridge's loop thread,
        where its callbacks run: they must not block.

        Raises:
            TypeError: `data` cannot be JSON.
        """
        payload = encode(data)

        async def ask(connection: Connection) -> Delivery:
            msg = await connection.client.request(subject, payload, timeout=timeout)
            return Delivery(msg.subject, decode(msg.data), headers=msg.headers or {})

        return self._core.soon(ask, f"send a request on {subject}")

    def read_up_soon(self, *, timeout: float) -> concurrent.futures.Future[None]:
        """A round trip to the server (PING, PONG) without waiting, from any thread.

        The future is settled on the loop once the answer is read, so after
        every message the server had sent this connection before it: what was
        for subscribers has been handed to them by then (in order on the
        loop), even when the loop was too busy to read its socket for a while.
        It fails as `request_soon`'s does (BridgeTimeout, ConnectError).
        """

        async def ping(connection: Connection) -> None:
            await connection.client.flush(timeout=max(math.ceil(timeout), 1))  # whole seconds

        return self._core.soon(ping, "read what the server sent")

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
        return Subscription(self._core, self._jetstream, subject, target, queue=queue,
                            answer_malformed=answer_malformed, on_loop=on_loop).start(timeout)

    # -- JetStream ---------------------------------------------------------------

    def ensure_stream(
        self,
        name: str,
        subjects: Iterable[str],
        *,
        duplicate_window: float = 120.0,
        max_age: float | None = None,
        max_bytes: int | None = None,
        storage: str = "file",
        timeout: float = 5.0,
    ) -> None:
        """Create the stream, or update it to this config; idempotent.

        `duplicate_window` is how long the server remembers message ids
        (see `publish_acked`); `max_age` (seconds) and `max_bytes` bound what
        it keeps, the oldest messages going first.
        """
        self._jetstream.ensure_stream(name, subjects, duplicate_window=duplicate_window,
                                      max_age=max_age, max_bytes=max_bytes, storage=storage,
                                      timeout=timeout)

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
        (across a server or bridge restart, with backoff) until acked or
        `timeout`. Without it there is one attempt, which fails with
        ConnectionLost if the connection closes first.
        """
        return self._jetstream.publish_acked(subject, data, msg_id=msg_id, timeout=timeout)

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
        return Subscription(
            self._core, self._jetstream, filter_subject or ">", target, stream=stream,
            durable=durable, max_in_flight=max_in_flight, ack_wait=ack_wait,
        ).start(timeout)

    def history(
        self, stream: str, subjects: Iterable[str], *, timeout: float = 10.0
    ) -> list[Delivery]:
        """Every message of `stream` on `subjects` (wildcards allowed), oldest first.

        Reads through a short-lived consumer of its own; malformed messages
        are skipped (and counted). Blocks until read, at most `timeout`.
        """
        return self._jetstream.history(stream, subjects, timeout=timeout)

    def history_future(
        self, stream: str, subjects: Iterable[str], *, timeout: float = 10.0
    ) -> concurrent.futures.Future[list[Delivery]]:
        """`history`, without waiting: the messages come in the future, whose callbacks
        run on the bridge's loop thread (be quick there). For a caller that must not
        block (a clock's thread, an actor on the loop).

        Raises:
            ConnectError: the bridge has no connection now (the future would wait).
        """
        return self._jetstream.history_future(stream, subjects, timeout=timeout)

    # -- key-value -----------------------------------------------------------------

    def ensure_bucket(self, name: str, *, ttl: float | None, timeout: float = 5.0) -> KeyValue:
        """Create the key-value bucket `name` (keys expire after `ttl` seconds, never if
        None) unless it exists; returns it."""
        return ensure_bucket(self._core, name, ttl=ttl, timeout=timeout)

    def bucket(self, name: str, *, timeout: float = 5.0) -> KeyValue:
        """The key-value bucket `name`, made (or to be made) by `ensure_bucket`: no round
        trip now; each call on it fails while the bucket does not exist."""
        return KeyValue(self._core, name, timeout=timeout)

    def claim(self, bucket: str, key: str, *, timeout: float = 5.0) -> bool:
        """Create `key` in `bucket` if no one has: True for exactly one caller, across
        every process and node on this NATS (until the key expires). Blocks one round trip.

        A restart of the bridge while the claim is made does not lose it: the
        claim is made again on the next connection, and this caller's own claim,
        made before, is recognised as its own (see `claim` in `_kv`).

        Raises:
            ConnectError, BridgeTimeout, ConnectionLost: NATS could not answer within
                `timeout`; nobody may assume the claim.
        """
        return claim(self._core, bucket, key, timeout=timeout)[0]

    def claim_then_read(self, bucket: str, key: str, read_bucket: str, read_key: str, *,
                        timeout: float = 5.0) -> tuple[bool, Entry | None]:
        """`claim`, then, if claimed, read `read_key` of `read_bucket` (None: it has no
        record) in the same call: one hop to the loop, and the read after the claim."""
        return claim(self._core, bucket, key, timeout=timeout,
                     then_read=(read_bucket, read_key))

    def claim_soon(self, bucket: str, key: str, *, then_read: tuple[str, str] | None = None,
                   timeout: float = 5.0) -> concurrent.futures.Future[tuple[bool, Entry | None]]:
        """`claim_then_read` (or `claim`, without `then_read`) without waiting, from any
        thread: the future gets ``(claimed, read entry or None)``, settled on the
        bridge's loop thread. Many are in flight at once, each one round trip."""
        return claim_soon(self._core, bucket, key, timeout=timeout, then_read=then_read)

    # -- observing ----------------------------------------------------------------

    def statistics(self) -> BridgeStatistics:
        return self._core.statistics()
