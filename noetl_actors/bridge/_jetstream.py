"""JetStream through the bridge: streams, acknowledged publishes, history, pull consumers.

Each call runs on the current connection of a `BridgeCore`; a durable
consumer's pull loop (`pull_into`) is a task of the connection it was
bound on, and is bound again on the next one.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import nats.errors
import nats.js.api as js_api
import nats.js.errors as js_errors
import pykka
from nats.aio.msg import Msg

from noetl_actors.bridge._codec import encode
from noetl_actors.bridge._connection import Connection
from noetl_actors.bridge._core import BridgeCore, pykka_future
from noetl_actors.bridge._delivery import Delivery, JsMetadata, PubAck
from noetl_actors.bridge._settle import InFlight, Settler
from noetl_actors.bridge._subjects import check_token
from noetl_actors.errors import ConnectionLost

__all__ = ["JetStream"]

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


class JetStream:
    """The bridge's JetStream calls (see `Bridge` for what each does)."""

    def __init__(self, core: BridgeCore) -> None:
        self._core = core

    def ensure_stream(
        self,
        name: str,
        subjects: Iterable[str],
        *,
        duplicate_window: float,
        max_age: float | None,
        storage: str,
        max_bytes: int | None = None,
        timeout: float,
    ) -> None:
        check_token(name, "stream name")
        config = js_api.StreamConfig(
            name=name,
            subjects=list(subjects),
            storage=js_api.StorageType(storage),
            duplicate_window=duplicate_window,
            max_age=max_age,
            max_bytes=max_bytes,
        )
        connection = self._core.current(timeout)

        async def ensure() -> None:
            try:
                await connection.js.add_stream(config)
            except js_errors.BadRequestError:
                await connection.js.update_stream(config)

        connection.call(ensure(), timeout=timeout)

    def publish_acked(
        self, subject: str, data: Mapping[str, Any], *, msg_id: str | None, timeout: float
    ) -> pykka.Future[PubAck]:
        """Publish to a stream; the server's `PubAck` in the future.

        With `msg_id` it is sent again, with backoff, until acknowledged or
        `timeout` passes: each time on the core's connection of the moment,
        so also after the one it was sent on closed (a bridge restart). The
        server stores a message id once within the stream's duplicate window,
        so sending it again is safe. Without one there is a single attempt, on
        the connection of the call, and a `ConnectionLost` if that closes
        first: the server may have stored it, its answer lost, and a second
        send would store it twice.
        """
        payload = encode(data)
        connection = self._core.current(timeout)
        deadline = time.monotonic() + timeout

        async def attempt(on: Connection, headers: dict[str, str] | None) -> PubAck:
            remaining = deadline - time.monotonic()
            ack = await on.js.publish(
                subject, payload, timeout=max(min(remaining, 1.0), 0.01), headers=headers
            )
            return PubAck(ack.stream, ack.seq, bool(ack.duplicate))

        if not msg_id:
            return pykka_future(connection.submit(attempt(connection, None)))

        async def until_acked() -> PubAck:
            headers = {MSG_ID_HEADER: msg_id}
            pause = 0.05
            on: Connection | None = connection
            while True:
                try:
                    if on is None or on.closed or on.loop is not asyncio.get_running_loop():
                        raise ConnectionLost(f"the bridge's connection closed, and no other "
                                             f"came within {timeout:g}s")
                    return await attempt(on, headers)
                except (*_RETRYABLE, ConnectionLost):
                    if time.monotonic() + pause >= deadline:
                        raise
                await asyncio.sleep(pause)
                pause = min(pause * 2, 1.0)
                on = self._core.connection

        # Not one connection's call (`Connection.submit`): it outlives a connection
        # that closes (the bridge restarts on the same loop).
        return pykka_future(asyncio.run_coroutine_threadsafe(until_acked(), connection.loop))

    def history(self, stream: str, subjects: Iterable[str], *, timeout: float) -> list[Delivery]:
        check_token(stream, "stream name")
        wanted = list(subjects)
        connection = self._core.current(timeout)
        return connection.call(self._read(connection, stream, wanted, timeout),
                               timeout=timeout + 1)

    def history_future(self, stream: str, subjects: Iterable[str], *,
                       timeout: float) -> concurrent.futures.Future[list[Delivery]]:
        check_token(stream, "stream name")
        wanted = list(subjects)
        connection = self._core.current(0.0)
        return connection.submit(
            asyncio.wait_for(self._read(connection, stream, wanted, timeout), timeout + 1))

    async def _read(self, connection: Connection, stream: str, wanted: list[str],
                    timeout: float) -> list[Delivery]:
        """Every message of `stream` on the subjects `wanted`, through a consumer of its
        own, oldest first."""
        core = self._core
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
                    data = core.decode_or_dead_letter(connection, msg)
                    if data is not None:
                        found.append(Delivery(msg.subject, data, headers=msg.headers or {}))
                pending = (messages[-1].metadata.num_pending or 0) if messages else 0
        finally:
            await pull.unsubscribe()
            await connection.js.delete_consumer(stream, info.name)
        return found

    async def pull_into(
        self,
        connection: Connection,
        tell: Callable[[Delivery], bool],
        *,
        stream: str,
        durable: str,
        filter_subject: str | None,
        max_in_flight: int,
        ack_wait: float,
    ) -> asyncio.Task[None]:
        """Bind the durable consumer on `connection` and start its pull loop (on the loop).

        Each message goes to `tell(delivery)`; one it returns False for is
        nak'ed. The task ends when cancelled (or with the connection).
        """
        config = js_api.ConsumerConfig(
            durable_name=durable,
            ack_policy=js_api.AckPolicy.EXPLICIT,
            max_ack_pending=max_in_flight,
            ack_wait=ack_wait,
            filter_subject=filter_subject,
        )
        await connection.js.add_consumer(stream, config)
        pull = await connection.js.pull_subscribe_bind(durable, stream)
        return connection.spawn(
            self._pull(connection, pull, tell, InFlight(max_in_flight), f"{stream}/{durable}"),
            name=f"consume {stream}/{durable}",
        )

    async def _pull(
        self, connection: Connection, pull: Any, tell: Callable[[Delivery], bool],
        in_flight: InFlight, source: str,
    ) -> None:
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
                    logger.debug("fetch from %s failed: %r; retrying", source, error)
                    await asyncio.sleep(0.1)
                    continue
                for msg in messages:
                    self._deliver(connection, tell, in_flight, msg)
        finally:
            try:
                await pull.unsubscribe()
            except Exception:
                logger.debug("unsubscribing from %s failed", source, exc_info=True)

    def _deliver(
        self, connection: Connection, tell: Callable[[Delivery], bool], in_flight: InFlight,
        msg: Msg,
    ) -> None:
        in_flight.count += 1
        settle = Settler(connection, in_flight, msg)
        data = self._core.decode_or_dead_letter(connection, msg)
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
        if not tell(delivery):
            settle("nak", None)
