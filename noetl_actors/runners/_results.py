"""A Job's result: in its termination message when it fits, else in NATS's object store.

Kubernetes keeps at most 4096 bytes of a container's termination message and
cuts the rest without a word. So the entrypoint writes the answer
(``{"schema_version": 1, "outcome": ...}``) there only if it fits; a larger
one goes to the JetStream object store (bucket `RESULTS_BUCKET`, object named
after the attempt's Job) and the message holds a pointer::

    {"schema_version": 1, "result": {"bucket": str, "name": str, "size": int,
                                     "sha256": str}}

`read_result()` is the other side: it turns either message back into the
`Outcome`, checking the object's size and digest, so nothing is ever cut
or mixed up silently.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any

from noetl_actors.errors import ResultError
from noetl_actors.runners._attempt import SCHEMA_VERSION, Outcome

__all__ = ["RESULTS_BUCKET", "RESULT_TTL", "TERMINATION_LIMIT", "read_result",
           "termination_message"]

RESULTS_BUCKET = "noetl-results"
TERMINATION_LIMIT = 4096
"""Bytes of a termination message Kubernetes keeps (the rest is cut)."""
RESULT_TTL = 24 * 3600.0
"""Seconds the object store keeps a large result: long enough for an owner that takes
the workflow over to read it, bounded so the bucket does not grow for ever."""
NATS_TIMEOUT = 30.0
"""Seconds to connect to NATS and store or fetch one result."""


def termination_message(outcome: Outcome, *, name: str, nats_url: str | None) -> bytes:
    """What to write to the termination message for `outcome`: the answer itself if it
    fits, else a pointer to it after storing it as object `name`.

    Raises:
        ResultError: it does not fit and cannot be stored (no `nats_url`, NATS away).
    """
    answer = json.dumps({"schema_version": SCHEMA_VERSION, "outcome": outcome.to_json()},
                        separators=(",", ":")).encode("utf-8")
    if len(answer) <= TERMINATION_LIMIT:
        return answer
    if not nats_url:
        raise ResultError(f"the result ({len(answer)} bytes) is over the termination "
                          f"message's {TERMINATION_LIMIT} bytes and no NATS URL was given")
    try:
        asyncio.run(asyncio.wait_for(_put(nats_url, name, answer), NATS_TIMEOUT))
    except Exception as error:
        raise ResultError(f"the result ({len(answer)} bytes) is over the termination "
                          f"message's {TERMINATION_LIMIT} bytes and could not be stored in "
                          f"NATS at {nats_url}: {error!r}") from None
    pointer = {"bucket": RESULTS_BUCKET, "name": name, "size": len(answer),
               "sha256": hashlib.sha256(answer).hexdigest()}
    return json.dumps({"schema_version": SCHEMA_VERSION, "result": pointer}).encode("utf-8")


def read_result(message: bytes | str, *, nats_url: str | None) -> Outcome:
    """The `Outcome` a termination message holds, fetching it from NATS if it points there.

    Raises:
        ResultError: not a message the entrypoint writes; the object is missing, or its
            size or digest differs from the pointer's.
    """
    data = _json(message)
    if "outcome" in data:
        try:
            return Outcome.from_json(data["outcome"])
        except (KeyError, TypeError, ValueError) as error:
            raise ResultError(f"the termination message holds a bad outcome: {error}") from None
    pointer = data.get("result")
    if not isinstance(pointer, dict) or not {"bucket", "name", "size", "sha256"} <= set(pointer):
        raise ResultError(f"the termination message has neither an outcome nor a result "
                          f"pointer: {_shown(message)}")
    if not nats_url:
        raise ResultError(f"the result is in NATS ({pointer['name']}) but no NATS URL was given")
    try:
        answer = asyncio.run(asyncio.wait_for(
            _get(nats_url, pointer["bucket"], pointer["name"]), NATS_TIMEOUT))
    except Exception as error:
        raise ResultError(f"the result {pointer['bucket']}/{pointer['name']} cannot be read "
                          f"from NATS at {nats_url}: {error!r}") from None
    if len(answer) != pointer["size"] or hashlib.sha256(answer).hexdigest() != pointer["sha256"]:
        raise ResultError(f"the result {pointer['bucket']}/{pointer['name']} is {len(answer)} "
                          f"bytes that do not match its pointer ({pointer['size']} bytes, "
                          f"sha256 {pointer['sha256']})")
    return read_result(answer, nats_url=None)


def _json(message: bytes | str) -> dict[str, Any]:
    try:
        data = json.loads(message)
    except ValueError:
        data = None
    if not isinstance(data, dict) or data.get("schema_version") != SCHEMA_VERSION:
        raise ResultError(f"the termination message is not a noetl answer of schema_version "
                          f"{SCHEMA_VERSION}: {_shown(message)}")
    return data


def _shown(message: bytes | str) -> str:
    text = message.decode("utf-8", "replace") if isinstance(message, bytes) else message
    return repr(text[:200])


async def _connect(url: str) -> Any:
    import nats  # here: a node that never runs a Job's entrypoint need not load it for this

    from noetl_actors.bridge import ConnectOptions, use_context

    # credentials as every command takes them: NATS_NKEY, NATS_CREDS, ... or this
    # user's context for the server (docs/security.md)
    options = use_context(ConnectOptions.from_env(servers=url), role="node")
    return await nats.connect(**{**options.nats_kwargs(), "connect_timeout": 5,
                                 "max_reconnect_attempts": 2, "allow_reconnect": False})


async def _put(url: str, name: str, data: bytes) -> None:
    from nats.js.errors import BucketNotFoundError

    client = await _connect(url)
    try:
        js = client.jetstream()
        try:
            store = await js.object_store(RESULTS_BUCKET)
        except BucketNotFoundError:
            store = await js.create_object_store(RESULTS_BUCKET, ttl=RESULT_TTL)
        await store.put(name, data)
    finally:
        await client.close()


async def _get(url: str, bucket: str, name: str) -> bytes:
    client = await _connect(url)
    try:
        store = await client.jetstream().object_store(bucket)
        found = await store.get(name)
        return bytes(found.data or b"")
    finally:
        await client.close()
