"""Settling JetStream deliveries: ack, nak, term, once each, from any thread.

A consumer's pull loop counts the deliveries its actor holds unsettled
(`_InFlight`), and hands each delivery a `_Settler` that settles it on the
connection's loop and frees its place.
"""

from __future__ import annotations

import asyncio
import logging
import threading

from nats.aio.msg import Msg

from noetl_actors.bridge._connection import Connection

__all__ = ["InFlight", "Settler"]

logger = logging.getLogger("noetl_actors.bridge")


class InFlight:
    """How many JetStream messages a consumer's actor holds unsettled (loop thread only)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.count = 0
        self.freed = asyncio.Event()

    def free(self) -> int:
        return self.limit - self.count

    def release(self) -> None:
        self.count -= 1
        self.freed.set()


class Settler:
    """Settles one JetStream message once, from any thread."""

    def __init__(self, connection: Connection, in_flight: InFlight, msg: Msg) -> None:
        self._connection = connection
        self._in_flight = in_flight
        self._msg = msg
        self._lock = threading.Lock()
        self._settled = False

    def __call__(self, how: str, delay: float | None) -> None:
        if how != "in_progress":
            with self._lock:
                if self._settled:
                    logger.warning("%s of a message on %s ignored: it was already settled",
                                   how, self._msg.subject)
                    return
                self._settled = True
        try:
            self._connection.submit(self._run(how, delay))
        except RuntimeError:
            logger.warning("%s of a message dropped: its connection is gone; "
                           "the server redelivers it after ack_wait", how)

    async def _run(self, how: str, delay: float | None) -> None:
        msg = self._msg
        try:
            if how == "ack":
                await msg.ack()
            elif how == "nak":
                await msg.nak(delay)
            elif how == "term":
                await msg.term()
            else:
                await msg.in_progress()
        except Exception:
            logger.warning("%s of a message on %s failed", how, msg.subject, exc_info=True)
        finally:
            if how != "in_progress":
                self._in_flight.release()
