"""Reading steps' output lines from the ``NOETL_LOGS`` stream (docs/node.md, `noetl logs`).

Straight from JetStream, through a consumer of the reader's own (no acks,
gone 30 s after the reader): any node's workers published the lines
there, so the reader needs neither the node nor the worker that ran the
step, nor access to Kubernetes. `chunks()` gives what the stream holds,
oldest first, then, when following, what comes until `done()` says the
workflow (or step) ended and a quiet second has passed.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import nats.errors
import nats.js.api as js_api
import nats.js.errors as js_errors
from nats.aio.client import Client as NatsClient

from noetl_actors.bridge import decode
from noetl_actors.errors import MalformedMessage
from noetl_actors.services import LOGS_STREAM, logs_filter

__all__ = ["chunks"]

BATCH = 500
QUIET = 1.0
"""Seconds without a chunk after which a follower looks whether the run has ended."""


async def chunks(nc: NatsClient, workflow_id: str, *,
                 done: Callable[[], Awaitable[bool]] | None = None
                 ) -> AsyncIterator[dict[str, Any]]:
    """Each chunk of `workflow_id`'s lines, oldest first; with `done`, follow.

    Without `done` it ends once what the stream held at the call is read.
    With it, it goes on with chunks as they come; at each quiet second it
    awaits `done()`, and ends after the first quiet second once that said
    True. A stream that does not exist yet holds nothing.
    """
    js = nc.jetstream()
    try:
        info = await js.add_consumer(LOGS_STREAM, js_api.ConsumerConfig(
            ack_policy=js_api.AckPolicy.NONE, deliver_policy=js_api.DeliverPolicy.ALL,
            filter_subject=logs_filter(workflow_id), inactive_threshold=30.0))
    except js_errors.NotFoundError:
        return
    pull = await js.pull_subscribe_bind(info.name, LOGS_STREAM)
    try:
        pending = info.num_pending or 0
        while pending > 0:
            messages = await _fetch(pull, min(pending, BATCH), 5.0)
            if not messages:
                break
            for msg in messages:
                chunk = _chunk(msg)
                if chunk is not None:
                    yield chunk
            pending = messages[-1].metadata.num_pending or 0
        if done is None:
            return
        ending = False
        while True:
            messages = await _fetch(pull, BATCH, QUIET)
            for msg in messages:
                chunk = _chunk(msg)
                if chunk is not None:
                    yield chunk
            if messages:
                continue
            if ending:
                return
            ending = await done()  # then one more quiet second: lines still on their way
    finally:
        with contextlib.suppress(Exception):
            await pull.unsubscribe()
        with contextlib.suppress(Exception):
            await js.delete_consumer(LOGS_STREAM, info.name)


async def _fetch(pull: Any, batch: int, timeout: float) -> list[Any]:
    try:
        found: list[Any] = await pull.fetch(batch=batch, timeout=timeout)
    except (TimeoutError, nats.errors.TimeoutError):
        return []
    return found


def _chunk(msg: Any) -> dict[str, Any] | None:
    try:
        data = decode(msg.data)
    except MalformedMessage:
        return None
    lines = data.get("lines")
    if not isinstance(lines, list) or not isinstance(data.get("attempt"), int):
        return None
    return data
