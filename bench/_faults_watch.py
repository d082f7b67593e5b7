"""The fault suite's view of the cluster, through the command API and the history stream.

`Watch` keeps one `noetl_actors.client.Client` (the `noetl list`/`status`
API) and opens a new one when a call fails: NATS is killed on purpose,
and the client does not reconnect by itself. Its calls return None instead
of raising while the cluster cannot answer.

`read_histories` reads what `noetl events ID --json` prints for each
workflow (the ``NOETL_EVENTS`` stream's ``event.*.<id>.*`` and
``noetl.lifecycle.<id>`` messages, in stream order, each with its
``subject``), for every workflow at once, in one pass.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import nats
from _login import login
from nats.js import api as js_api

from noetl_actors.bridge import ConnectOptions, decode
from noetl_actors.client import Client
from noetl_actors.errors import MalformedMessage, NoetlError

EVENTS_STREAM = "NOETL_EVENTS"
CALL_TIMEOUT = 10.0
"""Seconds one API call may take (records of 100 workflows on a busy box)."""

Record = dict[str, Any]


class Watch:
    """The command API, reconnecting; use as ``async with Watch(url) as watch``."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._client: Client | None = None

    async def __aenter__(self) -> Watch:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._drop()

    async def _drop(self) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):
                await self._client.close()
            self._client = None

    async def _connected(self) -> Client:
        if self._client is None:
            client = Client(ConnectOptions(servers=(self.url,), connect_timeout=2.0),
                            timeout=CALL_TIMEOUT)
            await client.connect()
            self._client = client
        return self._client

    async def submit(self, text: str, file: str) -> str:
        """Start a workflow; its id. Raises what the client raises."""
        client = await self._connected()
        started = await client.submit(text, file=file)
        return str(started["workflow_id"])

    async def workflows(self) -> dict[str, Record] | None:
        """`noetl list --json` by workflow id, or None if no node answered."""
        try:
            client = await self._connected()
            return {w["workflow_id"]: w for w in await client.workflows()}
        except (TimeoutError, NoetlError, OSError, nats.errors.Error):
            await self._drop()
            return None

    async def record(self, workflow_id: str) -> Record | None:
        """`noetl status ID --json`, or None if no node answered."""
        try:
            client = await self._connected()
            record: Record = await client.status(workflow_id)
            return record
        except (TimeoutError, NoetlError, OSError, nats.errors.Error):
            await self._drop()
            return None


async def read_histories(url: str, workflow_ids: Iterable[str],
                         timeout: float = 30.0) -> dict[str, list[Record]]:
    """Every workflow's history, oldest first (see the module's docstring)."""
    wanted = set(workflow_ids)
    found: dict[str, list[Record]] = defaultdict(list)
    nc = await nats.connect(url, allow_reconnect=False, connect_timeout=5, **login(url))
    try:
        js = nc.jetstream(timeout=timeout)
        info = await js.add_consumer(EVENTS_STREAM, js_api.ConsumerConfig(
            ack_policy=js_api.AckPolicy.NONE, inactive_threshold=timeout,
            filter_subjects=["event.>", "noetl.lifecycle.>"]))
        pull = await js.pull_subscribe_bind(info.name, EVENTS_STREAM)
        try:
            pending = info.num_pending or 0
            while pending > 0:
                messages = await pull.fetch(batch=min(pending, 1000), timeout=timeout)
                for msg in messages:
                    owner = _workflow_of(msg.subject)
                    if owner in wanted:
                        with contextlib.suppress(MalformedMessage):
                            found[owner].append({"subject": msg.subject, **decode(msg.data)})
                pending = (messages[-1].metadata.num_pending or 0) if messages else 0
        finally:
            await pull.unsubscribe()
            with contextlib.suppress(Exception):
                await js.delete_consumer(EVENTS_STREAM, info.name)
    finally:
        await nc.close()
    return dict(found)


def _workflow_of(subject: str) -> str:
    """The workflow id of ``event.<plugin>.<id>.<step>`` or ``noetl.lifecycle.<id>``."""
    parts = subject.split(".")
    if parts[0] == "event" and len(parts) == 4:
        return parts[2]
    if parts[:2] == ["noetl", "lifecycle"] and len(parts) == 3:
        return parts[2]
    return ""
