"""One nats-py connection on the bridge's asyncio loop (`LoopThread`).

Actors live on their own threads; nats-py lives on asyncio. A `Connection`
is the crossing: `call()` and `submit()` run a coroutine on the loop,
and `publish_nowait()` hands a message over without waiting, batched so
that a burst of publishes costs one loop wake-up (one
`run_coroutine_threadsafe` per publish halved throughput). Its two fast
paths lean on nats-py's internals, all of them in `_nats_internals`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import nats.aio.subscription
import nats.errors
import nats.js
from nats.aio.client import Client
from nats.aio.msg import Msg

from noetl_actors.bridge._errors import is_auth_error, translate
from noetl_actors.bridge._loop import LoopThread
from noetl_actors.bridge._nats_internals import (
    Outgoing,
    deliver_directly,
    fast_paths,
    new_client,
    pending_size,
    stop_delivering,
    writable,
    write_directly,
)
from noetl_actors.bridge._options import ConnectOptions
from noetl_actors.errors import (
    AuthorizationError,
    BridgeError,
    BridgeTimeout,
    ConnectError,
    ConnectionLost,
)

__all__ = ["Connection", "Outgoing"]

logger = logging.getLogger("noetl_actors.bridge")

T = TypeVar("T")


class Connection:
    """A connected nats-py client, on a loop thread that it shares and does not own.

    `on_state(kind, detail)` hears "disconnected", "reconnected" and
    "error"; `on_lost(why)` is called once if the loop thread ends or the
    client closes without `close()` being asked for (the owner restarts);
    `on_unsent(count)` hears of publishes nats-py refused while the server
    was away (its reconnect buffer full): they are gone. All are called on
    the loop thread: be quick.
    """

    def __init__(
        self,
        options: ConnectOptions,
        *,
        loop: LoopThread,
        on_state: Callable[[str, str], None] = lambda kind, detail: None,
        on_lost: Callable[[str], object] = lambda why: None,
        on_unsent: Callable[[int], None] = lambda count: None,
    ) -> None:
        self.options = options
        self.loop = loop.loop
        self._loop_thread = loop
        self._on_state = on_state
        self._on_lost = on_lost
        self._on_unsent = on_unsent
        self._unsent_while_away = 0
        """Publishes refused since the server went away (loop thread only)."""
        self._closing = False
        self._thread = loop.thread
        self._client: Client | None = None
        self._js: nats.js.JetStreamContext | None = None
        self._buckets: dict[str, asyncio.Future[Any]] = {}
        """Key-value handles by bucket name (loop thread only): nats-py looks one up with
        a round trip (the stream's info), which doubled the cost of every bucket call."""
        self._tasks: set[asyncio.Task[Any]] = set()
        self._calls: set[asyncio.Task[Any]] = set()
        """What `submit()` runs, until it ends (loop thread only): failed on close."""
        self._outbox: deque[Outgoing] = deque()
        self._outbox_lock = threading.Lock()
        self._outbox_scheduled = False
        self._outbox_ready: asyncio.Event | None = None
        self._wrote_this_turn = False
        """A publish of this loop turn was written at once (loop thread only)."""

    # -- life cycle ------------------------------------------------------------

    def open(self) -> Connection:
        """Connect on the loop (started); return once connected.

        Raises:
            AuthorizationError: the server refused the credentials.
            ConnectError: no server answered within `options.connect_timeout`.
        """
        self._loop_thread.watch(self._loop_died)
        try:
            self.call(self._connect(), timeout=self.options.connect_timeout + 1)
        except BaseException:
            self.close()
            raise
        return self

    def close(self, *, timeout: float = 5.0) -> None:
        """Flush what was published and close the client; the loop runs on."""
        if self._closing:
            return
        self._closing = True
        self._loop_thread.unwatch(self._loop_died)
        if self._thread.is_alive():
            future = asyncio.run_coroutine_threadsafe(self._shutdown(), self.loop)
            try:
                future.result(timeout)
            except Exception:
                logger.debug("closing the NATS connection failed", exc_info=True)
        elif self._thread.ident is not None and not self.loop.is_closed():
            # The loop thread died: close the client on this thread instead, or
            # the server keeps the connection and its subscriptions.
            try:
                self.loop.run_until_complete(asyncio.wait_for(self._shutdown(), timeout))
            except Exception:
                logger.debug("closing the NATS connection failed", exc_info=True)

    @property
    def closed(self) -> bool:
        return self._closing or not self._thread.is_alive()

    def _loop_died(self, why: str) -> None:
        if not self._closing:
            self._on_lost(why)

    async def _connect(self) -> None:
        client = new_client()
        refused = asyncio.get_running_loop().create_future()

        async def on_error(error: Exception) -> None:
            if is_auth_error(error) and not refused.done():
                refused.set_result(error)
            self._on_state("error", str(error))

        async def on_disconnected() -> None:
            if not self._closing:
                self._on_state("disconnected", self.options.describe())

        async def on_reconnected() -> None:
            self._say_unsent()
            url = client.connected_url
            self._on_state("reconnected", url.geturl() if url else self.options.describe())

        async def on_closed() -> None:
            if not self._closing:
                self._on_lost("the NATS connection closed")

        connecting = asyncio.ensure_future(
            client.connect(
                **self.options.nats_kwargs(),
                error_cb=on_error,
                disconnected_cb=on_disconnected,
                reconnected_cb=on_reconnected,
                closed_cb=on_closed,
            )
        )
        done, _ = await asyncio.wait(
            {connecting, refused}, timeout=self.options.connect_timeout,
            return_when=asyncio.FIRST_COMPLETED,
        )
        if connecting not in done or connecting.exception() is not None:
            connecting.cancel()
            await _quietly(client.close())
            where = self.options.describe()
            if refused.done():
                raise AuthorizationError(self.options.refused())
            finished = connecting.done() and not connecting.cancelled()
            error = connecting.exception() if finished else None
            if error is not None and is_auth_error(error):
                raise AuthorizationError(self.options.refused())
            raise ConnectError(
                f"could not connect to {where} within {self.options.connect_timeout:g}s"
                + (f": {error}" if error else "")
            )
        refused.cancel()
        fast_paths.check_connected(client)
        self._client = client
        self._js = client.jetstream()
        self._outbox_ready = asyncio.Event()
        self.spawn(self._send_outbox(), name="outbox")

    async def _shutdown(self) -> None:
        for call in list(self._calls):
            call.cancel()  # they raise ConnectionLost (`submit`)
        for task in list(self._tasks):
            if task.get_name() != "outbox":
                task.cancel()
        for lookup in self._buckets.values():
            lookup.cancel()  # nats-py leaves a request pending when its client closes
        if self._client is not None:
            await self._flush_outbox()
            self._say_unsent()
            await _quietly(self._client.flush(timeout=2))
            await _quietly(self._client.close())
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- running things on the loop -------------------------------------------

    @property
    def client(self) -> Client:
        assert self._client is not None, "not connected"
        return self._client

    def pending_bytes(self) -> int:
        """Bytes nats-py holds to write (its pending buffer); from any thread."""
        return pending_size(self._client) if self._client is not None else 0

    @property
    def js(self) -> nats.js.JetStreamContext:
        assert self._js is not None, "not connected"
        return self._js

    async def key_value(self, bucket: str) -> Any:
        """nats-py's handle of a key-value bucket, looked up once per connection.

        The lookup is a request (the bucket's stream info): calls that come while
        it is under way wait for it rather than send their own (a burst of 10,000
        claims had sent 10,000 lookups). A lookup that failed is made again. It
        outlives a caller that gives up (shielded), so its failure is its
        waiters' to see, never asyncio's to log as not retrieved; and it ends
        with the connection (`_shutdown`).
        """
        lookup = self._buckets.get(bucket)
        if lookup is None or (lookup.done() and (lookup.cancelled()
                                                  or lookup.exception() is not None)):
            lookup = self._buckets[bucket] = asyncio.ensure_future(self.js.key_value(bucket))
            lookup.add_done_callback(_seen_through)
        return await asyncio.shield(lookup)

    async def subscribe(
        self, subject: str, queue: str, handler: Callable[[Msg], None]
    ) -> nats.aio.subscription.Subscription:
        """Subscribe; `handler(msg)` is called on the loop as each message is read.

        It returns once nats-py has queued the SUB, not once the server has it:
        what another connection publishes before then is dropped for want of
        interest. Await `client.flush()` (a round trip) where that matters, as
        the bridge's subscriptions do (`_subscription`).

        Where the direct-delivery path is off (`_nats_internals`), the
        subscription's task calls it, a loop iteration later.
        """

        async def public_way(msg: Msg) -> None:
            handler(msg)

        client = self.client
        subscription = await client.subscribe(subject, queue=queue, cb=public_way)
        # Set before this coroutine yields: the server cannot have sent a message
        # for the subscription yet (its SUB is written on the loop's next turn).
        deliver_directly(client, subscription, handler)
        return subscription

    async def unsubscribe(self, subscription: nats.aio.subscription.Subscription) -> None:
        stop_delivering(self.client, subscription)
        await subscription.unsubscribe()

    def submit(self, coroutine: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Run `coroutine` on the loop; from any thread except the loop's.

        If the connection is closed first (its bridge restarts), the future
        fails at once with ConnectionLost rather than wait out its timeout for
        an answer that cannot come any more (nats-py leaves a request's reply
        pending when its client closes). It is not sent again on the next
        connection: what it asked may have been done on the server, its answer
        lost, and only the caller knows whether asking again is safe (see
        `claim` in `_kv`, which makes it so).
        """
        return asyncio.run_coroutine_threadsafe(self._tracked(coroutine), self.loop)

    async def _tracked(self, coroutine: Coroutine[Any, Any, T]) -> T:
        if self._closing:
            coroutine.close()
            raise self._lost_in_flight()
        task = asyncio.current_task()
        assert task is not None
        self._calls.add(task)
        try:
            return await coroutine
        except asyncio.CancelledError:
            if self._closing:
                raise self._lost_in_flight() from None
            raise
        finally:
            self._calls.discard(task)

    def _lost_in_flight(self) -> ConnectionLost:
        return ConnectionLost(f"the connection to {self.options.describe()} closed while a "
                              f"call was in flight; it may or may not have been done")

    def call(self, coroutine: Coroutine[Any, Any, T], *, timeout: float) -> T:
        """Run `coroutine` on the loop and wait for it; errors come back translated.

        Raises:
            BridgeError: called on the loop's own thread (by an actor hosted
                there), where it would wait for itself until the timeout.
        """
        if threading.current_thread() is self._thread:
            coroutine.close()
            raise BridgeError("a blocking NATS call on the NATS loop's own thread (from an "
                              "actor hosted there?) would wait for itself; make it elsewhere")
        future = self.submit(coroutine)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise BridgeTimeout(f"no answer from NATS within {timeout:g}s") from None
        except Exception as error:
            raise translate(error) from error

    def spawn(self, coroutine: Coroutine[Any, Any, Any], *, name: str) -> asyncio.Task[Any]:
        """Start a task this connection owns (cancelled on close); on the loop thread."""
        task = self.loop.create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("NATS task %s failed", task.get_name(), exc_info=task.exception())

    # -- publishing without blocking ------------------------------------------

    def publish_nowait(
        self, subject: str, payload: bytes, headers: dict[str, str] | None = None
    ) -> None:
        """Queue a core-NATS publish; never waits on the network. Thread-safe.

        It is written in the loop's next iteration, batched with any that
        follow until then (one write for a burst). On the loop's own thread
        the first publish of a turn is written at once and the rest of the
        turn's (the events of every command one read brought in) in one write
        after it.
        """
        with self._outbox_lock:
            self._outbox.append((subject, payload, headers))
            if self._outbox_scheduled:
                return
            self._outbox_scheduled = True
        if threading.current_thread() is not self._thread:
            self.loop.call_soon_threadsafe(self._write_outbox)
        elif self._wrote_this_turn:
            self.loop.call_soon(self._write_outbox)
        else:
            # The first of the loop's turn leaves at once: a step's command (or a
            # worker's event) need not wait for the rest of the turn. Those after
            # it join one write at the end of the turn (`_turn_over`).
            self._wrote_this_turn = True
            self.loop.call_soon(self._turn_over)
            self._write_outbox()

    def _turn_over(self) -> None:
        self._wrote_this_turn = False

    def _write_outbox(self) -> None:
        """Write the outbox to the socket now, as nats-py's flusher would (on the loop).

        nats-py's `publish()` leaves the write to its flusher task: with our
        wake-up, three loop iterations per hand-over, ~70 us of a step's
        latency on the 2-core box (bench/README.md). Here the outbox is
        written at once, behind anything nats-py queued itself (order kept),
        by `write_directly`. What it cannot take (see `writable`), or all of
        it once that path is off, the outbox task publishes through nats-py.
        """
        client = self._client
        with self._outbox_lock:
            batch = list(self._outbox)
            if client is None or not writable(client, batch):
                self._wake_outbox()
                return
            self._outbox.clear()
            self._outbox_scheduled = False
        if not write_directly(client, batch):
            # Nothing of it was written: it goes first, through nats-py.
            with self._outbox_lock:
                self._outbox.extendleft(reversed(batch))
                self._outbox_scheduled = True
            self._wake_outbox()

    def _wake_outbox(self) -> None:
        if self._outbox_ready is not None:
            self._outbox_ready.set()

    async def _send_outbox(self) -> None:
        assert self._outbox_ready is not None
        while True:
            await self._outbox_ready.wait()
            self._outbox_ready.clear()
            await self._flush_outbox()

    async def _flush_outbox(self) -> None:
        """Publish the outbox through nats-py's `publish()`, until it is empty.

        The outbox stays "scheduled" until then: a publish made meanwhile (while
        nats-py's buffer is full, `publish()` waits) joins it, and is never
        written straight to the socket ahead of what is still queued here.
        """
        client = self.client
        while True:
            with self._outbox_lock:
                batch = list(self._outbox)
                self._outbox.clear()
                if not batch:
                    self._outbox_scheduled = False
                    return
            refused = 0
            for subject, payload, headers in batch:
                try:
                    await client.publish(subject, payload, headers=headers)
                except nats.errors.OutboundBufferLimitError:
                    refused += 1  # the server is away and nats-py's buffer is full
                except Exception:
                    logger.warning("publish to %s failed", subject, exc_info=True)
            if refused:
                self._refused(refused)

    def _refused(self, count: int) -> None:
        """`count` publishes are lost: warned once per outage, not once each."""
        if not self._unsent_while_away:
            logger.warning("%s is away and nats-py's reconnect buffer is full: publishes "
                           "are lost until it is back (statistics().unsent counts them)",
                           self.options.describe())
        self._unsent_while_away += count
        self._on_unsent(count)

    def _say_unsent(self) -> None:
        """How many publishes the outage that ends cost, if any (once)."""
        if self._unsent_while_away:
            logger.warning("%d publishes were lost while %s was away",
                           self._unsent_while_away, self.options.describe())
            self._unsent_while_away = 0


def _seen_through(lookup: asyncio.Future[Any]) -> None:
    """Mark a lookup's failure as seen: its waiters, if any are left, get it too."""
    if not lookup.cancelled():
        lookup.exception()


async def _quietly(awaitable: Any) -> None:
    try:
        await awaitable
    except Exception:
        logger.debug("ignored while closing", exc_info=True)
