"""Raw nats-py round trips that the benchmarks measure against (shared by them)."""

from __future__ import annotations

import asyncio
import time

from nats.aio.client import Client
from nats.aio.msg import Msg

from noetl_actors.bridge import encode

REQUEST_TIMEOUT = 5.0
"""Seconds a single reply may take before the run fails (a reply is lost)."""
PAD = "x" * 60
REQUEST = encode({"op": "echo", "pad": PAD})
"""About 100 bytes with its envelope: the size of a small command."""


class LostReply(Exception):
    """A reply never came: the benchmark's figures would be wrong, so it fails."""


async def pipelined(nc: Client, subject: str, count: int, in_flight: int) -> float:
    """`count` round trips, `in_flight` outstanding at every moment; the elapsed seconds.

    Every reply arrives on one subscription, and its callback publishes the
    next request, so the requester does no per-request bookkeeping.
    """
    inbox = nc.new_inbox()
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    sent = received = 0

    async def on_reply(_msg: Msg) -> None:
        nonlocal sent, received
        received += 1
        if sent < count:
            sent += 1
            await nc.publish(subject, REQUEST, reply=inbox)
        elif received == count and not done.done():
            done.set_result(None)

    sub = await nc.subscribe(inbox, cb=on_reply)
    await nc.flush()
    began = time.perf_counter()
    for _ in range(min(in_flight, count)):
        sent += 1
        await nc.publish(subject, REQUEST, reply=inbox)
    try:
        await asyncio.wait_for(done, timeout=REQUEST_TIMEOUT + count / 1000)
    except TimeoutError:
        raise LostReply(f"{count - received} of {count} replies on {subject} never came") from None
    finally:
        elapsed = time.perf_counter() - began
        await sub.unsubscribe()
    return elapsed
