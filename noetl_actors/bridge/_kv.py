"""`KeyValue`: one JetStream key-value bucket, as JSON records, from any thread.

The node keeps in buckets what every node of a cluster must see the same:
which workflows exist and who runs them, which nodes are alive, which
playbooks are registered. Writes that race (two nodes judging the same
dead node) use `update` with the revision they read: one wins, the other
is told and reads again.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Mapping
from typing import Any

import attrs
import nats.js.errors as js_errors

from noetl_actors.bridge._codec import SCHEMA_VERSION_KEY, decode, encode
from noetl_actors.bridge._connection import Connection
from noetl_actors.bridge._core import BridgeCore
from noetl_actors.bridge._subjects import check_token
from noetl_actors.errors import ConnectionLost, MalformedMessage

__all__ = ["Entry", "KeyValue", "claim", "ensure_bucket"]

WRONG_LAST_SEQUENCE = 10071
"""JetStream's error code for a write whose expected last sequence is not the key's."""
ENTRIES_IN_FLIGHT = 64
"""Reads `KeyValue.entries()` keeps in flight at once."""


@attrs.frozen
class Entry:
    """A key's JSON record and the revision it was read at."""

    key: str
    data: dict[str, Any]
    revision: int


class KeyValue:
    """A bucket made with `Bridge.ensure_bucket`; every call blocks one round trip.

    Raises (every method): ConnectError or BridgeTimeout when NATS cannot answer.
    """

    def __init__(self, core: BridgeCore, bucket: str, *, timeout: float = 5.0) -> None:
        self._core = core
        self.bucket = bucket
        self._timeout = timeout

    def _call(self, operation: Any) -> Any:
        connection = self._core.current(self._timeout)

        async def run() -> Any:
            return await operation(await connection.key_value(self.bucket))

        return connection.call(run(), timeout=self._timeout)

    def get(self, key: str) -> Entry | None:
        """The record under `key`, or None if there is none (or it was deleted)."""

        async def get(kv: Any) -> Entry | None:
            try:
                entry = await kv.get(key)
            except js_errors.KeyNotFoundError:
                return None
            return _entry(key, entry.value, entry.revision)

        result: Entry | None = self._call(get)
        return result

    def put(self, key: str, data: Mapping[str, Any]) -> int:
        """Write `data` under `key` whatever was there; its new revision."""
        payload = encode(data)

        async def put(kv: Any) -> int:
            return int(await kv.put(key, payload))

        result: int = self._call(put)
        return result

    def create(self, key: str, data: Mapping[str, Any]) -> int | None:
        """Write `data` only if `key` has no record: its revision for exactly one caller,
        None for the others."""
        payload = encode(data)

        async def create(kv: Any) -> int | None:
            try:
                return int(await kv.create(key, payload))
            except js_errors.KeyWrongLastSequenceError:
                return None

        result: int | None = self._call(create)
        return result

    def update(self, key: str, data: Mapping[str, Any], revision: int) -> int | None:
        """Write `data` only if `key` is still at `revision`: its new revision, or None if
        someone wrote since."""
        payload = encode(data)

        async def update(kv: Any) -> int | None:
            try:
                return int(await kv.update(key, payload, last=revision))
            except js_errors.KeyWrongLastSequenceError:
                return None

        result: int | None = self._call(update)
        return result

    def delete(self, key: str, *, revision: int | None = None) -> bool:
        """Remove `key` (nothing happens if it has no record); with `revision`, only if it
        is still at it (False if someone wrote since)."""

        async def delete(kv: Any) -> bool:
            try:
                await kv.delete(key, last=revision)
            except js_errors.APIError as error:
                # nats-py raises KeyWrongLastSequenceError from update(), but a plain
                # APIError with the server's code from delete()
                if isinstance(error, js_errors.KeyWrongLastSequenceError) \
                        or error.err_code == WRONG_LAST_SEQUENCE:
                    return False
                raise
            return True

        result: bool = self._call(delete)
        return result

    def keys(self, prefix: str = "") -> list[str]:
        """The keys that start with `prefix` and a dot (every key without one), from the
        bucket stream's state: one round trip. A key deleted lately may be among them."""
        connection = self._core.current(self._timeout)
        subjects = f"$KV.{self.bucket}.{prefix}.>" if prefix else f"$KV.{self.bucket}.>"
        start = len(f"$KV.{self.bucket}.")

        async def keys() -> list[str]:
            info = await connection.js.stream_info(f"KV_{self.bucket}",
                                                   subjects_filter=subjects)
            return [subject[start:] for subject in info.state.subjects or {}]

        result: list[str] = connection.call(keys(), timeout=self._timeout)
        return result

    def entries(self) -> dict[str, Entry]:
        """Every live key's record; records that are not ours are left out.

        The keys come from the bucket stream's per-subject state, not from
        nats-py's `keys()`, whose watcher can end before the first key
        arrives and then reports an empty bucket. The records are read
        `ENTRIES_IN_FLIGHT` at a time (one after another, 10,000 workflows'
        records took longer than a call may wait).
        """
        connection = self._core.current(self._timeout)
        prefix = f"$KV.{self.bucket}."

        async def entries() -> dict[str, Entry]:
            info = await connection.js.stream_info(f"KV_{self.bucket}",
                                                   subjects_filter=f"{prefix}>")
            kv = await connection.key_value(self.bucket)
            slots = asyncio.Semaphore(ENTRIES_IN_FLIGHT)

            async def read(key: str) -> Entry | None:
                async with slots:
                    try:
                        entry = await kv.get(key)
                    except js_errors.KeyNotFoundError:
                        return None  # deleted
                try:
                    return _entry(key, entry.value, entry.revision)
                except MalformedMessage:
                    return None  # not ours

            keys = [subject.removeprefix(prefix) for subject in info.state.subjects or {}]
            read_all = await asyncio.gather(*(read(key) for key in keys))
            return {entry.key: entry for entry in read_all if entry is not None}

        result: dict[str, Entry] = connection.call(entries(), timeout=self._timeout)
        return result


def ensure_bucket(core: BridgeCore, name: str, *, ttl: float | None, timeout: float) -> KeyValue:
    """Create the bucket `name` unless it exists (see `Bridge.ensure_bucket`)."""
    check_token(name, "bucket name")
    connection = core.current(timeout)

    async def ensure() -> None:
        await connection.js.create_key_value(bucket=name, ttl=ttl)

    connection.call(ensure(), timeout=timeout)
    return KeyValue(core, name, timeout=timeout)


def claim(core: BridgeCore, bucket: str, key: str, *, timeout: float,
          then_read: tuple[str, str] | None = None) -> tuple[bool, Entry | None]:
    """Create `key` in `bucket` if no one has (see `Bridge.claim`); with `then_read`
    (bucket, key), read that key once the claim is made, in the same call: the read
    is after the claim, with no second hop to the loop.

    The key holds a token of this call's own, so that the call can ask again
    safely. A create in flight when the bridge's connection closes (a restart)
    fails at once (ConnectionLost) and may have been made on the server, its
    answer lost: it is made again on the next connection, within `timeout`,
    and a key that already holds this call's token is this call's claim. Told
    False instead, the claimer would drop a command whose claim it holds, and
    no one would ever run that attempt. Any other token is another's claim. A
    claim not settled within `timeout` raises, and is then no one's: the key
    may exist, so no one runs that attempt (its step takes it for lost).
    """
    token = uuid.uuid4().hex.encode()
    deadline = time.monotonic() + timeout

    async def create(connection: Connection) -> bool:
        kv = await connection.key_value(bucket)
        try:
            await kv.create(key, token)
        except js_errors.KeyWrongLastSequenceError:
            try:
                entry = await kv.get(key)
            except js_errors.KeyNotFoundError:
                return False  # deleted since: no one's, and not to be taken again
            return entry.value == token
        return True

    async def create_then_read(connection: Connection) -> tuple[bool, Entry | None]:
        claimed = await create(connection)
        if not claimed or then_read is None:
            return claimed, None
        kv = await connection.key_value(then_read[0])
        try:
            entry = await kv.get(then_read[1])
        except js_errors.KeyNotFoundError:
            return True, None
        try:
            return True, _entry(then_read[1], entry.value, entry.revision)
        except MalformedMessage:
            return True, None

    while True:
        connection = core.current(max(deadline - time.monotonic(), 0.0))
        try:
            result: tuple[bool, Entry | None] = connection.call(
                create_then_read(connection), timeout=max(deadline - time.monotonic(), 0.001))
            return result
        except ConnectionLost:
            if time.monotonic() >= deadline:
                raise


def _entry(key: str, value: bytes | None, revision: int | None) -> Entry:
    data = decode(value or b"")
    del data[SCHEMA_VERSION_KEY]  # the wire's, not the record's
    return Entry(key, data, revision or 0)
