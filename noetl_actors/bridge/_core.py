"""`BridgeCore`: the bridge's loop thread and connection state, owned in one place.

Everything else of the bridge is built on it: the `BridgeActor` makes the
connections and hands them over (`attach`, `detach`), subscriptions and
JetStream consumers ask it for the current connection and count what they
deliver, the key-value buckets run their calls through it, and `Bridge`
composes them into the handle actors use.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any, Protocol, TypeVar

import attrs
import pykka
from nats.aio.msg import Msg

from noetl_actors._refusals import RefusalLog, short
from noetl_actors.bridge._codec import decode, encode
from noetl_actors.bridge._connection import Connection, Outgoing
from noetl_actors.bridge._errors import translate
from noetl_actors.bridge._link import LinkState, Resends
from noetl_actors.bridge._loop import LoopThread
from noetl_actors.bridge._options import ConnectOptions
from noetl_actors.bridge._subjects import DEAD_LETTER_SUBJECT
from noetl_actors.errors import BridgeError, ConnectError, ConnectionLost, MalformedMessage
from noetl_actors.supervision import EventKind, LifecycleEvent, LoopHost, Observer

__all__ = ["BridgeCore", "BridgeStatistics", "Bridged", "Counters", "pykka_future"]

logger = logging.getLogger("noetl_actors.bridge")
_REFUSALS = RefusalLog(logger)

T = TypeVar("T")


@attrs.frozen
class BridgeStatistics:
    connected: bool
    published: int
    """Core-NATS publishes handed to the connection (buffered ones once sent), but
    for the `unsent`."""
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
    unsent: int = 0
    """Core-NATS publishes lost while the server was away: nats-py's reconnect
    buffer (2 MiB) was full."""
    resent: int = 0
    """Publishes with a message id sent again after an outage (`Resends`)."""
    pending_bytes: int = 0
    """Bytes nats-py holds to write: its pending buffer (while the server is away, its
    reconnect buffer, 2 MiB at most; past it publishes are lost as `unsent`)."""


@attrs.define
class Counters:
    published: int = 0
    unsent: int = 0
    delivered: int = 0
    malformed: int = 0
    dropped: int = 0
    connections: int = 0
    reconnects: int = 0
    resent: int = 0


class Bridged(Protocol):
    """What the core makes live again on every new connection (a `Subscription`)."""

    id: int

    def activate(self, connection: Connection) -> Coroutine[Any, Any, None]: ...


class BridgeCore:
    """The loop thread, the current connection, the publish buffer, the counters.

    Thread-safe. There is at most one connection at a time: the
    `BridgeActor`'s; while there is none, publishes wait in the buffer (up
    to `max_buffered`) and go out first once one is attached.
    """

    def __init__(
        self,
        options: ConnectOptions,
        *,
        observers: Sequence[Observer] = (),
        max_buffered: int = 10_000,
    ) -> None:
        self.options = options
        self.counters = Counters()
        """Written on the loop thread (and under `lock` by publishers)."""
        self.lock = threading.Condition()
        self._observers = tuple(observers)
        self._max_buffered = max_buffered
        self._connection: Connection | None = None
        self._path = "/bridge"
        self._bridged: dict[int, Bridged] = {}
        self._buffer: deque[Outgoing] = deque()
        self._loop: LoopThread | None = None
        self._up = False
        self._changes = 0
        self._resends = Resends()

    # -- the loop thread -------------------------------------------------------

    @property
    def host(self) -> LoopHost | None:
        """Where actors can run on the loop; None while the bridge is not started."""
        loop = self._loop
        return loop.host if loop is not None and loop.alive() else None

    def running_loop(self) -> LoopThread:
        """The loop thread, started if there is none (or it died)."""
        with self.lock:
            if self._loop is None or not self._loop.alive():
                dead, self._loop = self._loop, LoopThread().start()
            else:
                dead = None
            loop = self._loop
        if dead is not None:
            dead.stop()
        return loop

    def stop_loop(self, *, unless_hosting: bool = False) -> None:
        """Stop the loop thread (and what it hosts), or keep it while it hosts actors."""
        with self.lock:
            loop = self._loop
            if loop is None or (unless_hosting and loop.host.hosting()):
                return
            self._loop = None
        loop.stop()

    # -- the connection --------------------------------------------------------

    def attach(self, connection: Connection, path: str) -> None:
        """Make `connection` the current one (the actor at `path` owns it)."""
        # Subscriptions first, so that what waited in the buffer reaches this
        # process's own subscribers too; then open the connection to callers.
        with self.lock:
            before = list(self._bridged.values())
        self._activate(before, connection)
        with self.lock:
            self._path = path
            self._connection = connection
            self.counters.connections += 1
            while self._buffer:
                connection.publish_nowait(*self._buffer.popleft())
                self.counters.published += 1
            self._link_changed(up=True)
            # Those registered from now on see the connection and activate
            # themselves; these were registered meanwhile.
            known = {bridged.id for bridged in before}
            meanwhile = [b for b in self._bridged.values() if b.id not in known]
            self.lock.notify_all()
        self._activate(meanwhile, connection)
        self.emit(EventKind.CONNECTED, connection.options.describe())

    def detach(self, connection: Connection) -> None:
        """`connection` is no longer usable; publishes are buffered until the next."""
        with self.lock:
            if self._connection is connection:
                self._connection = None
                self._link_changed(up=False)

    def count_unsent(self, count: int) -> None:
        """`count` publishes were handed over, but lost (`Connection`'s `on_unsent`)."""
        with self.lock:
            self.counters.published -= count
            self.counters.unsent += count

    def connection_state(self, kind: str, detail: str) -> None:
        """What the connection reports (`Connection`'s `on_state`)."""
        if kind == "disconnected":
            with self.lock:
                self._link_changed(up=False)
            self.emit(EventKind.DISCONNECTED, detail)
        elif kind == "reconnected":
            with self.lock:
                self.counters.reconnects += 1
                self._link_changed(up=True)
            self.emit(EventKind.RECONNECTED, detail)
        else:
            # Every failed reconnect says so; the disconnected event already told.
            logger.debug("NATS: %s", detail)

    def _link_changed(self, *, up: bool) -> None:
        """Under the lock: the link went down, or came back (kept publishes go again)."""
        self._up = up
        self._changes += 1
        now = time.monotonic()
        if not up:
            self._resends.down(now)
            return
        connection = self._connection
        again = self._resends.back(now) if connection is not None else []
        for item in again:
            assert connection is not None
            connection.publish_nowait(*item)
        self.counters.resent += len(again)

    def link(self) -> LinkState:
        """Whether the link to NATS is up, and how often it changed."""
        with self.lock:
            return LinkState(up=self._up and self._connection is not None,
                             changes=self._changes)

    @property
    def connection(self) -> Connection | None:
        """The current connection, if any."""
        return self._connection

    def wait_connected(self, timeout: float | None = None) -> bool:
        """Block until a connection is up; False if none within `timeout`."""
        with self.lock:
            return self.lock.wait_for(lambda: self._connection is not None, timeout)

    def current(self, timeout: float) -> Connection:
        """The current connection, waiting for one up to `timeout`.

        Raises:
            ConnectError: none within `timeout`.
        """
        with self.lock:
            if not self.lock.wait_for(lambda: self._connection is not None, timeout):
                raise ConnectError(
                    f"the bridge to {self.options.describe()} has no connection "
                    f"(waited {timeout:g}s)"
                )
            assert self._connection is not None
            return self._connection

    def publish(self, item: Outgoing, *, keep: bool = False) -> None:
        """Hand `item` to the connection, or buffer it while there is none; with `keep`
        (it has a message id), keep it to send again after an outage (`Resends`)."""
        with self.lock:
            if keep:
                self._resends.keep(item, time.monotonic())
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
            self.counters.published += 1

    # -- what is made live on every connection ---------------------------------

    def register(self, bridged: Bridged) -> Connection | None:
        """Remember `bridged` for every later connection; the current one, if any."""
        with self.lock:
            self._bridged[bridged.id] = bridged
            return self._connection

    def unregister(self, bridged: Bridged) -> bool:
        """Forget `bridged`; False if it was not registered (any more)."""
        with self.lock:
            return self._bridged.pop(bridged.id, None) is not None

    def registered(self, bridged: Bridged) -> bool:
        return bridged.id in self._bridged

    def _activate(self, everything: list[Bridged], connection: Connection) -> None:
        for bridged in everything:
            try:
                connection.call(bridged.activate(connection), timeout=10.0)
            except Exception:
                logger.exception("could not bridge %r again after a restart", bridged)

    # -- what arrives ----------------------------------------------------------

    def decode_or_dead_letter(
        self, connection: Connection, msg: Msg,
        answer: Callable[[str], Mapping[str, Any]] | None = None,
    ) -> dict[str, Any] | None:
        """`msg`'s payload decoded; or None, counted and sent to the dead letters.

        If `answer` is given and `msg` is a request, the requester gets
        `answer(why)` as its reply.
        """
        try:
            return decode(msg.data)
        except MalformedMessage as error:
            self.counters.malformed += 1
            _REFUSALS.refused("malformed:" + ".".join(msg.subject.split(".")[:2]),
                              "malformed message on %s: %s (sent to %s)",
                              msg.subject, short(str(error)), DEAD_LETTER_SUBJECT)
            if msg.subject != DEAD_LETTER_SUBJECT:
                connection.publish_nowait(
                    DEAD_LETTER_SUBJECT,
                    msg.data,
                    {"Noetl-Subject": msg.subject, "Noetl-Reason": str(error)},
                )
            if answer is not None and msg.reply:
                connection.publish_nowait(msg.reply, encode(answer(str(error))), None)
            return None

    # -- observing -------------------------------------------------------------

    def statistics(self) -> BridgeStatistics:
        with self.lock:
            counters = attrs.evolve(self.counters)
            return BridgeStatistics(
                connected=self._connection is not None,
                published=counters.published,
                delivered=counters.delivered,
                malformed=counters.malformed,
                dropped=counters.dropped,
                buffered=len(self._buffer),
                connections=counters.connections,
                reconnects=counters.reconnects,
                subscriptions=len(self._bridged),
                unsent=counters.unsent,
                resent=counters.resent,
                pending_bytes=self._connection.pending_bytes() if self._connection else 0,
            )

    def emit(self, kind: EventKind, detail: str) -> None:
        event = LifecycleEvent(kind=kind, path=self._path, detail=detail)
        for observer in self._observers:
            try:
                observer(event)
            except Exception:
                logger.exception("observer %r failed on %s (ignored)", observer, event)


    def soon(self, work: Callable[[Connection], Coroutine[Any, Any, T]],
             what: str) -> concurrent.futures.Future[T]:
        """Run `work` on the current connection's loop without waiting; from any thread
        (the loop's too). The future is settled on the loop thread (nats errors
        translated), or at once with ConnectError when there is no connection now:
        `what` ("send a request on x") says what was not done."""
        result: concurrent.futures.Future[T] = concurrent.futures.Future()
        connection = self.connection
        if connection is None or connection.closed:
            result.set_exception(ConnectError(f"no connection to {self.options.describe()} "
                                              f"to {what}"))
            return result

        def settle(done: concurrent.futures.Future[T]) -> None:
            error = done.exception() if not done.cancelled() else ConnectionLost(
                f"dropped with its connection: could not {what}")
            if error is None:
                result.set_result(done.result())
            else:
                result.set_exception(translate(error))

        try:
            connection.submit(work(connection)).add_done_callback(settle)
        except RuntimeError:  # the loop closed meanwhile
            result.set_exception(ConnectError(f"the bridge's loop closed: could not {what}"))
        return result


def pykka_future(future: Any) -> pykka.Future[Any]:
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
