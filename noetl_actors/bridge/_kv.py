"""`KeyValue`: one JetStream key-value bucket, as JSON records, from any thread.

The node keeps in buckets what every node of a cluster must see the same:
which workflows exist and who runs them, which nodes are alive, which
playbooks are registered. Writes that race (two nodes judging the same
dead node) use `update` with the revision they read: one wins, the other
is told and reads again.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import nats.js.errors as js_errors

from noetl_actors.bridge._codec import SCHEMA_VERSION_KEY, decode, encode
from noetl_actors.bridge._connection import Connection
from noetl_actors.bridge._core import BridgeCore
from noetl_actors.bridge._errors import translate
from noetl_actors.bridge._subjects import check_token
from noetl_actors.errors import (
    BridgeTimeout,
    ConnectError,
    ConnectionLost,
    MalformedMessage,
    NoetlError,
)

__all__ = ["Entry", "KeyValue", "claim", "claim_soon", "ensure_bucket"]

WRONG_LAST_SEQUENCE = (10071, 10164)
"""JetStream's error codes for a write whose expected last revision is not the key's."""
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

    def update_many(self, updates: Sequence[tuple[str, Mapping[str, Any], int]],
                    ) -> list[int | NoetlError | None]:
        """`update` of each (key, data, revision), all in flight at once (at most
        `ENTRIES_IN_FLIGHT`): one call's time for many, where one after another each
        waits out its round trip. Per update: its new revision, None if the key has
        moved from `revision`, or the error NATS gave it.

        Raises:
            ConnectError, BridgeTimeout: NATS did not answer the whole batch in time;
                any of them may have been written.
        """
        payloads = [(key, encode(data), revision) for key, data, revision in updates]

        async def update_all(kv: Any) -> list[int | NoetlError | None]:
            slots = asyncio.Semaphore(ENTRIES_IN_FLIGHT)

            async def one(key: str, payload: bytes, revision: int) -> int | NoetlError | None:
                async with slots:
                    try:
                        return int(await kv.update(key, payload, last=revision))
                    except js_errors.KeyWrongLastSequenceError:
                        return None
                    except Exception as error:
                        translated = translate(error)
                        if isinstance(translated, NoetlError):
                            return translated
                        raise

            return list(await asyncio.gather(*(one(*each) for each in payloads)))

        if not payloads:
            return []
        result: list[int | NoetlError | None] = self._call(update_all)
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
                        or error.err_code in WRONG_LAST_SEQUENCE:
                    return False
                raise
            return True

        result: bool = self._call(delete)
        return result

    def get_soon(self, key: str) -> concurrent.futures.Future[Entry | None]:
        """`get` without waiting, from any thread (the loop's too); the future is
        settled on the bridge's loop thread, or at once (ConnectError) with no connection."""
        result: concurrent.futures.Future[Entry | None] = concurrent.futures.Future()
        connection = self._core.connection
        if connection is None or connection.closed:
            result.set_exception(ConnectError(f"no connection to read {key!r} of "
                                              f"{self.bucket} with"))
            return result

        async def get() -> Entry | None:
            kv = await connection.key_value(self.bucket)
            try:
                entry = await kv.get(key)
            except js_errors.KeyNotFoundError:
                return None
            return _entry(key, entry.value, entry.revision)

        def settle(done: concurrent.futures.Future[Entry | None]) -> None:
            error = done.exception() if not done.cancelled() else ConnectionLost("cancelled")
            if error is None:
                result.set_result(done.result())
            else:
                result.set_exception(translate(error))

        try:
            connection.submit(get()).add_done_callback(settle)
        except RuntimeError:  # its loop closed meanwhile
            result.set_exception(ConnectError(f"the bridge's loop closed; {key!r} not read"))
        return result

    def delete_soon(self, key: str) -> concurrent.futures.Future[bool]:
        """`delete` without waiting, from any thread (the loop's too); the future is
        settled on the bridge's loop thread, or at once (ConnectError) with no connection."""

        async def delete(connection: Connection) -> bool:
            kv = await connection.key_value(self.bucket)
            await kv.delete(key)
            return True

        return self._core.soon(delete, f"delete {key!r} of {self.bucket}")

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
    while True:
        connection = core.current(max(deadline - time.monotonic(), 0.0))
        try:
            result: tuple[bool, Entry | None] = connection.call(
                _create_then_read(connection, bucket, key, token, then_read),
                timeout=max(deadline - time.monotonic(), 0.001))
            return result
        except ConnectionLost:
            if time.monotonic() >= deadline:
                raise


RECONNECT_POLL = 0.05
"""Seconds between looks for a new connection, for a claim whose connection closed."""


def claim_soon(core: BridgeCore, bucket: str, key: str, *, timeout: float,
               then_read: tuple[str, str] | None = None,
               ) -> concurrent.futures.Future[tuple[bool, Entry | None]]:
    """`claim` without waiting for it, from any thread (the loop's too).

    The future is settled on the loop's thread (its callbacks run there): many
    claims are in flight at once, where `claim` makes a caller wait out each
    round trip in turn. The same token rules: a create lost with its
    connection is made again on the next one, within `timeout`. With no
    connection, it looks for one until `timeout` (ConnectError).
    """
    claiming = _Claiming(core, bucket, key, timeout=timeout, then_read=then_read)
    claiming.attempt(None)
    return claiming.result


class _Claiming:
    """One `claim_soon`: its token, its deadline, its future (methods, not closures that
    call each other: those would hold the claim in a reference cycle)."""

    def __init__(self, core: BridgeCore, bucket: str, key: str, *, timeout: float,
                 then_read: tuple[str, str] | None) -> None:
        self.core, self.bucket, self.key, self.then_read = core, bucket, key, then_read
        self.timeout = timeout
        self.token = uuid.uuid4().hex.encode()
        self.deadline = time.monotonic() + timeout
        self.result: concurrent.futures.Future[tuple[bool, Entry | None]] = (
            concurrent.futures.Future())
        self.timer: asyncio.TimerHandle | None = None

    def attempt(self, loop: asyncio.AbstractEventLoop | None) -> None:
        connection = self.core.connection
        left = self.deadline - time.monotonic()
        if connection is None or connection.closed:
            # Between connections (a command published on a new one reaches its worker
            # before the bridge opens it to callers): look again until the deadline.
            host = self.core.host
            loop = loop or (host.loop if host is not None else None)
            if loop is None or left <= 0:
                self.result.set_exception(ConnectError(
                    f"the bridge to {self.core.options.describe()} has no connection to "
                    f"claim {self.key!r} with"))
            else:
                loop.call_soon_threadsafe(loop.call_later, RECONNECT_POLL, self.attempt, loop)
            return
        try:
            # No asyncio.wait_for around it: on Python 3.11 it can swallow the cancel
            # that a closing connection sends its calls, and the claim then waits out
            # its whole timeout instead of being made again on the next connection.
            future = connection.submit(_create_then_read(
                connection, self.bucket, self.key, self.token, self.then_read))
            loop = connection.loop
            loop.call_soon_threadsafe(self.watch, loop, future, max(left, 0.001))
        except RuntimeError:  # its loop closed meanwhile
            self.result.set_exception(ConnectError(f"the bridge's loop closed; {self.key!r} "
                                                   f"not claimed"))
            return
        future.add_done_callback(functools.partial(self.settled, loop=loop))

    def watch(self, loop: asyncio.AbstractEventLoop, future: concurrent.futures.Future[Any],
              left: float) -> None:
        """On the loop: cancel the call in flight when its time is up."""
        self.timer = loop.call_later(left, future.cancel)

    def settled(self, done: concurrent.futures.Future[tuple[bool, Entry | None]], *,
                loop: asyncio.AbstractEventLoop) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.result.done():
            return
        late = time.monotonic() >= self.deadline
        if done.cancelled():  # its time was up (or its connection closed)
            error: BaseException = ConnectionLost("cancelled") if not late else BridgeTimeout(
                f"no answer from NATS within {self.timeout:g}s to the claim of {self.key!r}")
        else:
            error = done.exception()  # type: ignore[assignment]
        if error is None:
            self.result.set_result(done.result())
        elif isinstance(error, ConnectionLost) and not late:
            loop.call_later(RECONNECT_POLL, self.attempt, loop)
        else:
            self.result.set_exception(translate(error))


async def _create(connection: Connection, bucket: str, key: str, token: bytes) -> bool:
    kv = await connection.key_value(bucket)
    try:
        await kv.create(key, token)
    except js_errors.KeyWrongLastSequenceError:
        try:
            entry = await kv.get(key)
        except js_errors.KeyNotFoundError:
            return False  # deleted since: no one's, and not to be taken again
        return bool(entry.value == token)
    return True


async def _create_then_read(connection: Connection, bucket: str, key: str, token: bytes,
                            then_read: tuple[str, str] | None) -> tuple[bool, Entry | None]:
    claimed = await _create(connection, bucket, key, token)
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


def _entry(key: str, value: bytes | None, revision: int | None) -> Entry:
    data = decode(value or b"")
    del data[SCHEMA_VERSION_KEY]  # the wire's, not the record's
    return Entry(key, data, revision or 0)
