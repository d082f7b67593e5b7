"""Every use of a private name of nats-py, in one module, checked before it is used.

Two fast paths of the bridge lean on nats-py's internals (bench/README.md
has what each saves on a step):

- **direct delivery**: nats-py puts each message in its subscription's
  queue, and the subscription's own task takes it out on a later loop
  iteration. `new_client()` makes a client whose `_process_msg(sid,
  subject, reply, data, headers)` (the method nats-py's parser calls) hands
  the messages of subscriptions made with `deliver_directly()` straight to
  their handler. It uses `Client._process_msg`, `Client._build_message`,
  `Client._process_headers` and `Subscription._id`.
- **direct write**: nats-py's `publish()` is a coroutine that leaves the
  write to its flusher task. `write_directly()` appends PUB commands
  (`nats.protocol.command.pub_cmd`, or `hpub_cmd` for a message with
  headers, such as a message id) behind what nats-py has pending and
  writes them at once. It uses `Client._pending`, `Client._pending_data_size`
  and `Client._transport`. (`pending_size()` reads `Client._pending_data_size` too,
  for the node's metrics.)

Each path is checked before its first use: the methods' signatures when
the first client is made, the attributes on the first connected client, a
subscription's id when the first is made. If one is missing or of another
shape, that path is switched off with one warning (logger
`noetl_actors.bridge`) and the public API does the work instead:
`Client.subscribe(cb=...)` delivers, `Client.publish()` and nats-py's
flusher write. If a path raises AttributeError or TypeError while it runs,
it is switched off the same way and what it held goes the public way: a
nats-py release that renames one gives a slower node, never a hung one.

One more override is a guard, not a fast path: nats-py 2.16's
`_process_pong` sets the result of the oldest future in `Client._pongs`
without asking whether it is done. A `flush()` that timed out, or was
cancelled with the call that made it (`Connection.call`'s timeout), has
cancelled its future; when its PONG arrives at last, `set_result` raises
InvalidStateError, nats-py's reader task ends, and the client hears
nothing more while it says it is connected (nats.py#624 guarded only the
flusher). Every client made by `new_client()` gives such a PONG a fresh
future instead. It uses `Client._process_pong` and `Client._pongs`; if
either is missing or of another shape, it warns once and leaves nats-py
as it is.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
import threading
from collections.abc import Callable, Sequence
from typing import Any

import nats.protocol.command as _command
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

__all__ = ["FastPaths", "deliver_directly", "fast_paths", "new_client", "pending_size",
           "stop_delivering", "writable", "write_directly"]

logger = logging.getLogger("noetl_actors.bridge")

Outgoing = tuple[str, bytes, dict[str, str] | None]

_PROCESS_MSG = ["self", "sid", "subject", "reply", "data", "headers"]
_METHODS = {
    "_process_msg": _PROCESS_MSG,
    "_build_message": _PROCESS_MSG,
    "_process_headers": ["self", "headers"],
}
_PUB_CMD = ["subject", "reply", "payload"]
_HPUB_CMD = ["subject", "reply", "hdr", "payload"]
pub_cmd: Callable[[str, str, bytes], bytes] | None = getattr(_command, "pub_cmd", None)
hpub_cmd: Callable[[str, str, bytes, bytes], bytes] | None = getattr(_command, "hpub_cmd", None)


class FastPaths:
    """Whether each fast path is on; each is checked once, and warned about once."""

    def __init__(self) -> None:
        self.delivery: bool | None = None
        """Direct delivery: None until checked."""
        self.write: bool | None = None
        """Direct write: None until checked on a connected client."""
        self.pong_guard = True
        """`_PongSafeClient`'s guard: off once nats-py's PONG internals are not as checked."""
        self.headers = False
        """Direct write takes messages with headers too (else nats-py publishes them):
        checked with the classes."""
        self._lock = threading.Lock()

    def check_classes(self) -> None:
        """Check nats-py's methods the fast paths call (once)."""
        if self.delivery is not None:
            return
        why = _changed_methods(Client, _METHODS)
        if why:
            self.switch_off("delivery", why)
        else:
            self.delivery = True
        if _signature(pub_cmd) != _PUB_CMD:
            self.switch_off("write", "nats.protocol.command.pub_cmd is missing or changed")
        self.headers = _signature(hpub_cmd) == _HPUB_CMD
        if _signature(getattr(Client, "_process_pong", None)) != ["self"]:
            self.unguard("Client._process_pong is missing or changed")

    def check_connected(self, client: Client) -> None:
        """Check the attributes direct write uses, on a connected client (once)."""
        if self.write is not None:
            return
        if not isinstance(getattr(client, "_pongs", None), list):
            self.unguard("Client._pongs is missing or not a list")
        pending = getattr(client, "_pending", None)
        size = getattr(client, "_pending_data_size", None)
        transport = getattr(client, "_transport", None)
        if not isinstance(pending, list):
            self.switch_off("write", f"Client._pending is {type(pending).__name__}, not a list")
        elif not isinstance(size, int):
            self.switch_off("write",
                            f"Client._pending_data_size is {type(size).__name__}, not an int")
        elif not callable(getattr(transport, "writelines", None)):
            self.switch_off("write", "Client._transport has no writelines()")
        else:
            self.write = True

    def switch_off(self, path: str, why: str) -> None:
        """Use the public API for `path` ("delivery" or "write") from now on; warn once."""
        with self._lock:
            if getattr(self, path) is False:
                return
            setattr(self, path, False)
        what = {"delivery": "delivering messages on the reader task",
                "write": "writing publishes straight to the socket"}[path]
        logger.warning("the installed nats-py does not allow %s (%s): the bridge uses "
                       "nats-py's public API instead, which is slower", what, why)


    def unguard(self, why: str) -> None:
        """Leave nats-py's PONG handling as it is from now on; warn once."""
        with self._lock:
            if not self.pong_guard:
                return
            self.pong_guard = False
        logger.warning("the installed nats-py is not the one the bridge guards (%s): a flush "
                       "that times out may stop its reader task (nats.py#624)", why)


fast_paths = FastPaths()
"""The process's: what was checked holds for every client of the installed nats-py."""


class _PongSafeClient(Client):
    """nats-py's client, whose reader survives the PONG of a flush that gave up."""

    async def _process_pong(self, *args: Any, **kwargs: Any) -> None:
        # Whatever nats-py passes goes on: a release that changed the method's
        # shape (the check turned the guard off) still gets its own call.
        pongs = getattr(self, "_pongs", None) if fast_paths.pong_guard else None
        if isinstance(pongs, list) and pongs and pongs[0].done():
            # Its flush gave up (cancelled): nats-py would raise setting it and its
            # reader would end. nats-py counts the PONG and sets this one instead.
            pongs[0] = asyncio.get_running_loop().create_future()
        await super()._process_pong(*args, **kwargs)


class _DirectClient(_PongSafeClient):
    """nats-py's client, handing the messages of some subscriptions straight to a handler."""

    def __init__(self) -> None:
        super().__init__()
        self.direct_handlers: dict[int, Callable[[Msg], None]] = {}

    async def _process_msg(
        self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes
    ) -> None:
        handler = self.direct_handlers.get(sid) if fast_paths.delivery else None
        if handler is None:
            await super()._process_msg(sid, subject, reply, data, headers)
            return
        try:
            msg = self._build_message(
                sid, subject, reply, data, await self._process_headers(headers))
            self.stats["in_msgs"] += 1
            self.stats["in_bytes"] += len(data)
        except (AttributeError, TypeError, KeyError) as error:
            fast_paths.switch_off("delivery", repr(error))
            # The subscription's own callback delivers it (`deliver_directly`).
            await super()._process_msg(sid, subject, reply, data, headers)
            return
        try:
            handler(msg)
        except Exception:  # never into nats-py's reader: it would drop the connection
            logger.exception("the handler of a message on %s failed", msg.subject)


def new_client() -> Client:
    """A nats-py client (not connected), PONG-safe, that can deliver directly if the
    check allows."""
    fast_paths.check_classes()
    return _DirectClient() if fast_paths.delivery else _PongSafeClient()


def deliver_directly(
    client: Client, subscription: Subscription, handler: Callable[[Msg], None]
) -> None:
    """Hand `subscription`'s messages to `handler` where they are read, if allowed.

    The subscription must have been made with a callback that calls
    `handler` too: that is how messages arrive when this path is off.
    """
    if not isinstance(client, _DirectClient) or not fast_paths.delivery:
        return
    sid = getattr(subscription, "_id", None)
    if not isinstance(sid, int):
        fast_paths.switch_off("delivery", "Subscription._id is missing or not an int")
        return
    client.direct_handlers[sid] = handler


def stop_delivering(client: Client, subscription: Subscription) -> None:
    """Undo `deliver_directly` (before unsubscribing)."""
    if isinstance(client, _DirectClient):
        client.direct_handlers.pop(getattr(subscription, "_id", None), None)  # type: ignore[arg-type]


def writable(client: Client, batch: Sequence[Outgoing]) -> bool:
    """Whether `write_directly` can take `batch` now (on the loop).

    Not when the path is off; when a message has an odd subject, headers it
    cannot write (`_header_block`) or a payload too large; or when the client
    is not connected (nats-py buffers while it reconnects): publish those
    through nats-py.
    """
    if fast_paths.write is None and client.is_connected:
        fast_paths.check_connected(client)
    if not fast_paths.write or not client.is_connected:
        return False
    limit = client.max_payload
    return all(
        (not headers or _header_block(headers) is not None)
        and subject and not _SPACE.search(subject) and len(payload) <= limit
        for subject, payload, headers in batch
    )


def _header_block(headers: dict[str, str]) -> bytes | None:
    """The NATS header block of `headers`, as nats-py writes it; None if direct write
    cannot take them (no HPUB, or a key or value it would have to reshape)."""
    if not fast_paths.headers or hpub_cmd is None:
        return None
    lines = [b"NATS/1.0\r\n"]
    for key, value in headers.items():
        if not _HEADER_KEY.fullmatch(key) or value != value.strip() or _NEWLINE.search(value):
            return None
        lines.append(f"{key}: {value}\r\n".encode())
    lines.append(b"\r\n")
    return b"".join(lines)


def pending_size(client: Client) -> int:
    """Bytes `client` holds to write (`Client._pending_data_size`: nats-py has no public
    name for it); 0 if a nats-py release no longer has it. Any thread: a read of an int."""
    size = getattr(client, "_pending_data_size", 0)
    return size if isinstance(size, int) else 0


def write_directly(client: Client, batch: Sequence[Outgoing]) -> bool:
    """Write `batch` (`writable`) to `client`'s socket now, behind what nats-py has pending.

    On the loop. Order is kept: what nats-py had pending goes first. False
    if the path failed (and is now off): nothing of `batch` was written,
    publish it through nats-py.
    """
    try:
        assert pub_cmd is not None  # checked (`FastPaths.check_classes`)
        commands = [_command_of(subject, payload, headers) for subject, payload, headers in batch]
        transport = client._transport
        assert transport is not None  # connected (`writable`)
        transport.writelines([*client._pending, *commands])
    except (AttributeError, TypeError) as error:
        fast_paths.switch_off("write", repr(error))
        return False
    # Written: nats-py's pending went out with it.
    client._pending = []
    client._pending_data_size = 0
    client.stats["out_msgs"] += len(batch)
    client.stats["out_bytes"] += sum(len(payload) for _, payload, _ in batch)
    return True


def _command_of(subject: str, payload: bytes, headers: dict[str, str] | None) -> bytes:
    assert pub_cmd is not None
    if not headers:
        return pub_cmd(subject, "", payload)
    block = _header_block(headers)
    assert block is not None and hpub_cmd is not None  # `writable` checked
    return hpub_cmd(subject, "", block, payload)


_SPACE = re.compile(r"\s")
_HEADER_KEY = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
"""A header name (an RFC 7230 token), as nats-py accepts it."""
_NEWLINE = re.compile(r"[\r\n]")


def _changed_methods(cls: type, expected: dict[str, list[str]]) -> str:
    """What differs between `cls`'s methods and the `expected` parameter names ("" if none)."""
    changed = [f"{cls.__name__}.{name}" for name, parameters in expected.items()
               if _signature(getattr(cls, name, None)) != parameters]
    return (", ".join(changed) + " missing or changed") if changed else ""


def _signature(function: Any) -> list[str] | None:
    if not callable(function):
        return None
    try:
        return list(inspect.signature(function).parameters)
    except (TypeError, ValueError):
        return None
