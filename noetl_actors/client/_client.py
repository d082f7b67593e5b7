"""`Client`: one NATS connection that speaks the nodes' command API."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from types import TracebackType
from typing import Any

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from noetl_actors.bridge import ConnectOptions, decode, encode, use_context
from noetl_actors.bridge import is_auth_error as _is_auth_error
from noetl_actors.client._logs import chunks as _chunks
from noetl_actors.errors import (
    ApiError,
    AuthorizationError,
    BridgeTimeout,
    ConnectError,
    ErrorKind,
    MalformedMessage,
)
from noetl_actors.runtime import new_workflow_id
from noetl_actors.services import actor_subject, api_subject, node_subject

__all__ = ["Client"]

LIFECYCLE_SUBJECT = "noetl.lifecycle.>"
EVENTS_STREAM = "NOETL_EVENTS"
_DENIED = re.compile(r'permissions violation for publish to "([^"]+)"', re.IGNORECASE)
SUBMIT_TRIES = 6
"""Times a submit is sent (each waits `Client.timeout`) before it gives up."""
CANCEL_TIMEOUT = 100.0
"""A cancel waits for the workflow's grace periods on its node (90 s at most)."""


class Client:
    """Use as ``async with Client(options) as client: ...``.

    Options without credentials for a server of this user's (one that `noetl
    node start` or `noetl server` started) get those of its context.

    Every call raises `ApiError` when a node answers with an error,
    `ConnectError` when no node listens, `BridgeTimeout` when none answers
    in time.
    """

    def __init__(self, options: ConnectOptions, *, timeout: float = 5.0) -> None:
        options = use_context(options)  # a server of this user's: its admin seed
        if options.embedded:
            raise ConnectError("the command API needs --nats URL (or NATS_URL): the NATS "
                               "server of the nodes, as `noetl node start` printed it")
        self.options = options
        self.timeout = timeout
        self._nc: NatsClient | None = None
        self._denied: dict[str, list[asyncio.Future[None]]] = {}
        """Requests in flight by subject, told when the server refuses to take them."""

    async def __aenter__(self) -> Client:
        await self.connect()
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        trace: TracebackType | None) -> None:
        await self.close()

    async def connect(self) -> None:
        """Connect, or fail within about a second when no NATS answers at the address.

        Raises:
            AuthorizationError: the server refused the credentials.
            ConnectError: no server answered (one line that says where and why).
        """
        refused: list[Exception] = []
        failed: list[Exception] = []

        async def on_error(error: Exception) -> None:
            denied = _DENIED.search(str(error))
            if denied is not None:  # connected, but not allowed there: say so at once
                for waiting in self._denied.pop(denied.group(1), []):
                    if not waiting.done():
                        waiting.set_result(None)
                return
            (refused if _is_auth_error(error) else failed).append(error)

        # Each server is tried twice, reconnect_wait apart; then nats-py gives up
        # (with 0 it would try until the timeout, and say only "TimeoutError").
        kwargs = {**self.options.nats_kwargs(), "allow_reconnect": False,
                  "max_reconnect_attempts": 1}
        where = self.options.describe()
        try:
            self._nc = await asyncio.wait_for(nats.connect(**kwargs, error_cb=on_error),
                                              self.options.connect_timeout)
        except Exception as error:
            if refused or _is_auth_error(error):
                raise AuthorizationError(self.options.refused()) from None
            why = _why(failed[-1] if failed else error, self.options.connect_timeout)
            raise ConnectError(f"could not connect to {where}: NATS does not answer ({why}); "
                               f"is a node (noetl node start) or noetl server running "
                               f"there?") from None

    async def close(self) -> None:
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await self._nc.close()
            self._nc = None

    @property
    def nc(self) -> NatsClient:
        assert self._nc is not None, "connect() first"
        return self._nc

    # -- the wire ---------------------------------------------------------------

    async def request(self, subject: str, data: Mapping[str, Any],
                      timeout: float | None = None) -> dict[str, Any]:
        """The fields of an ok reply (without ``ok``); ApiError for an error reply."""
        timeout = self.timeout if timeout is None else timeout
        denied: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._denied.setdefault(subject, []).append(denied)
        asking = asyncio.ensure_future(self.nc.request(subject, encode(data), timeout=timeout))
        try:
            either: set[asyncio.Future[Any]] = {asking, denied}
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
            if denied.done() and not asking.done():
                asking.cancel()
                await asyncio.gather(asking, return_exceptions=True)
                raise AuthorizationError(
                    f"{self.options.describe()}: permissions violation: our credentials may "
                    f"not publish to {subject} (their role does not allow it; see "
                    "docs/security.md)")
            msg = asking.result()
        except nats.errors.NoRespondersError:
            raise ConnectError(f"no node answers on {subject} at {self.options.describe()}"
                               f" (is one started, with `noetl node start`?)") from None
        except nats.errors.TimeoutError:
            raise BridgeTimeout(f"no answer on {subject} within {timeout:g}s") from None
        except (nats.errors.Error, OSError) as error:  # the server went away meanwhile
            raise ConnectError(f"lost NATS at {self.options.describe()} while asking on "
                               f"{subject} ({_why(error, timeout)})") from None
        finally:
            waiting = self._denied.get(subject, [])
            if denied in waiting:
                waiting.remove(denied)
            if not waiting:
                self._denied.pop(subject, None)
        reply = decode(msg.data)
        if not reply.get("ok"):
            raise ApiError.from_reply(reply)
        return {key: value for key, value in reply.items()
                if key not in ("ok", "schema_version")}

    async def api(self, verb: str, timeout: float | None = None, **fields: Any) -> dict[str, Any]:
        return await self.request(api_subject(verb), fields, timeout)

    # -- workflows and playbooks -------------------------------------------------

    async def submit(self, text: str, *, file: str = "<submitted>",
                     variables: Mapping[str, Any] | None = None,
                     workflow_id: str | None = None) -> dict[str, Any]:
        """Start a workflow of a playbook's text: ``{"workflow_id", "node", "playbook"}``.

        The workflow's id is chosen here (or given: `workflow_id`), so a submit
        that got no answer in `timeout` (a burst queues on the nodes) is sent
        again, `SUBMIT_TRIES` times in all, and never starts a second
        workflow: a node that finds the id taken answers with the workflow
        that has it (``"again": true``).
        """
        workflow_id = workflow_id or new_workflow_id()
        for tries_left in range(SUBMIT_TRIES - 1, -1, -1):
            try:
                return await self.api("submit", playbook=text, file=file,
                                      vars=dict(variables or {}), workflow_id=workflow_id)
            except BridgeTimeout:
                if not tries_left:
                    raise
        raise AssertionError("unreachable")

    async def register(self, name: str, text: str, *, file: str | None = None) -> dict[str, Any]:
        return await self.api("register", name=name, playbook=text, file=file or name)

    async def run_registered(self, name: str, *,
                             variables: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return await self.api("run", name=name, vars=dict(variables or {}))

    async def playbooks(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = (await self.api("playbooks"))["playbooks"]
        return found

    async def workflows(self, status: str | None = None) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = (await self.api("list", status=status))["workflows"]
        return found

    async def status(self, workflow_id: str) -> dict[str, Any]:
        """The workflow's record: node, status and the `noetl run --json` report."""
        record: dict[str, Any] = (await self.api("status", workflow_id=workflow_id))["workflow"]
        return record

    async def cancel(self, workflow_id: str) -> dict[str, Any]:
        return await self.api("cancel", CANCEL_TIMEOUT, workflow_id=workflow_id)

    async def wait(self, workflow_id: str, *, timeout: float | None = None,
                   poll: float = 0.2) -> dict[str, Any]:
        """Poll the workflow's record until it is no longer running."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            record = await self.status(workflow_id)
            if record.get("status") != "running":
                return record
            if deadline is not None and time.monotonic() > deadline:
                raise BridgeTimeout(f"workflow {workflow_id} still runs after {timeout:g}s")
            await asyncio.sleep(poll)

    def log_chunks(self, workflow_id: str, *, done: Callable[[], Awaitable[bool]] | None = None
                   ) -> AsyncIterator[dict[str, Any]]:
        """The chunks of output lines of `workflow_id`'s steps, oldest first (each
        ``{"task", "step", "attempt", "seq", "lines", "end", "dropped"}``); with `done`,
        followed until it says True (`noetl_actors.client._logs.chunks`)."""
        return _chunks(self.nc, workflow_id, done=done)

    # -- nodes and actors ---------------------------------------------------------

    async def nodes(self) -> list[dict[str, Any]]:
        """Every node's presence record, by name."""
        found: list[dict[str, Any]] = (await self.api("nodes"))["nodes"]
        return found

    async def tree(self) -> list[dict[str, Any]]:
        """Every node's tree: ``{"node": info, "tree": snapshot}``, or ``"error"`` for a
        node that did not answer."""

        async def one(record: dict[str, Any]) -> dict[str, Any]:
            try:
                return await self.request(node_subject(record["name"], "tree"), {})
            except (ConnectError, BridgeTimeout, ApiError, MalformedMessage) as error:
                return {"node": record, "tree": None, "error": str(error)}

        return list(await asyncio.gather(*(one(record) for record in await self.nodes())))

    async def actor(self, path: str, op: str, **fields: Any) -> dict[str, Any]:
        """kill, restart, terminate or snapshot the actor at `path` (``/node/workflows/...``)."""
        try:
            subject = actor_subject(path)
        except ValueError as error:
            raise ApiError(ErrorKind.BAD_REQUEST, str(error)) from None
        try:
            return await self.request(subject, {"op": op, **fields}, timeout=30.0)
        except AuthorizationError:
            raise
        except ConnectError:
            node = path.strip("/").split("/")[0]
            raise ApiError(ErrorKind.NOT_FOUND, f"no node {node!r} answers for {path}") from None

    async def history(self, workflow_id: str, *, timeout: float = 10.0
                      ) -> list[dict[str, Any]]:
        """Every step and supervision event of a workflow, oldest first, read from the
        NOETL_EVENTS stream through a consumer of our own (all a `viewer` may do there:
        no node needed, nothing changed)."""
        import nats.js.api as js_api

        js = self.nc.jetstream()
        wanted = [f"event.*.{workflow_id}.*", f"noetl.lifecycle.{workflow_id}"]
        try:
            info = await js.add_consumer(EVENTS_STREAM, js_api.ConsumerConfig(
                ack_policy=js_api.AckPolicy.NONE, filter_subjects=wanted,
                inactive_threshold=max(timeout, 5.0)), timeout=timeout)
            pull = await js.pull_subscribe_bind(info.name, EVENTS_STREAM)
        except nats.errors.TimeoutError:
            raise BridgeTimeout(f"no answer from JetStream on {EVENTS_STREAM} within "
                                f"{timeout:g}s (may our credentials read it?)") from None
        except nats.js.errors.NotFoundError:
            return []
        found: list[dict[str, Any]] = []
        try:
            pending = info.num_pending or 0
            while pending > 0:
                messages = await pull.fetch(batch=min(pending, 1000), timeout=timeout)
                for msg in messages:
                    with contextlib.suppress(MalformedMessage):
                        found.append({"subject": msg.subject, **decode(msg.data)})
                pending = (messages[-1].metadata.num_pending or 0) if messages else 0
        finally:
            await pull.unsubscribe()
            with contextlib.suppress(Exception):
                await js.delete_consumer(EVENTS_STREAM, info.name)
        return found

    async def follow(self, on_event: Callable[[dict[str, Any]], Awaitable[None] | None],
                     subject: str = LIFECYCLE_SUBJECT) -> Subscription:
        """Call `on_event` with every supervision event (of every node) from now on."""

        async def handle(msg: Msg) -> None:
            try:
                data = decode(msg.data)
            except MalformedMessage:
                return
            result = on_event({"subject": msg.subject, **data})
            if result is not None:
                await result

        return await self.nc.subscribe(subject, cb=handle)


def _why(error: BaseException, timeout: float) -> str:
    """A failure to reach NATS, in a few words ("connection refused")."""
    if isinstance(error, OSError) and error.errno is not None:
        return os.strerror(error.errno).lower()
    if isinstance(error, (asyncio.TimeoutError, TimeoutError)):
        return f"no answer within {timeout:g}s"
    return str(error) or type(error).__name__
