"""Every use of pykka's internals, in one place, checked once at import.

The kernel is a new pykka actor type (see `_actor.py`), and four of pykka's
private names make it fast: the `Envelope` class of inbox entries, the
`_ActorStop` message, `Actor._handle_receive` (proxy calls) and the
`_create_actor_inbox` hook. None is part of pykka's public API, so a pykka
release may rename one. Each is probed here when the package is imported; one
that is missing or has another shape is replaced by a fallback built on
pykka's public API alone, and ONE warning names what was replaced. A renamed
internal then gives a working kernel (perhaps a little slower), never a hang
or a crash. tests/test_pykka_internals.py removes each in turn.

Nothing else in the package imports a private name of pykka.
"""

from __future__ import annotations

import functools
import importlib.metadata
import logging
from collections.abc import Callable
from typing import Any, Protocol

import attrs
import pykka
import pykka.messages

__all__ = ["FALLBACKS", "Entry", "Envelope", "handle_receive", "inbox_hook_works", "is_stop",
           "make_envelope", "put", "send_stop"]

logger = logging.getLogger("noetl_actors.supervision")

FALLBACKS: list[str] = []
"""The internals replaced by a public-API fallback (empty with a tested pykka)."""


class Entry(Protocol):
    """What an inbox holds (pykka's `Envelope`, or ours): all the kernel reads of one."""

    message: Any
    reply_to: pykka.Future[Any] | None


@attrs.define(slots=True, eq=False)
class _OwnEnvelope:
    """An inbox entry, shaped as pykka's: the message, and the future to reply to."""

    message: Any
    reply_to: pykka.Future[Any] | None = None


def _pykka_envelope() -> Any:
    try:
        from pykka._envelope import Envelope as envelope_class
        future: pykka.Future[Any] = pykka.ThreadingFuture()
        probe = envelope_class("probe", reply_to=future)
        if probe.message == "probe" and probe.reply_to is future:
            return envelope_class
    except Exception:
        pass
    FALLBACKS.append("pykka._envelope.Envelope")
    return _OwnEnvelope


Envelope: Any = _pykka_envelope()
"""The class of the entries the kernel puts in inboxes: pykka's own, or `_OwnEnvelope`.

Both have `message` and `reply_to`, which is all the kernel reads of any entry."""


def make_envelope(message: Any, reply_to: pykka.Future[Any] | None = None) -> Entry:
    """An inbox entry for `message` (and the future its reply goes to)."""
    entry: Entry = Envelope(message, reply_to=reply_to)
    return entry


def put(inbox: Any, entry: Entry) -> None:
    """Put `entry` in an actor's inbox. pykka types its inbox as holding its own
    `Envelope`s; ours are shaped the same (`Entry`), which is all either side reads."""
    inbox.put(entry)


class _Probe(pykka.ThreadingActor):
    """Never started: its inbox shows what pykka's public calls put there."""


def _sent_by(send: Callable[[pykka.ActorRef[Any]], object]) -> Any:
    """The message that `send(ref)` puts in an unstarted actor's inbox.

    Raises:
        queue.Empty: `send` put nothing there (it must not wait: no one else will).
    """
    probe = _Probe()
    send(probe.actor_ref)
    return probe.actor_inbox.get_nowait().message  # type: ignore[attr-defined]


def _private_stop() -> type[Any] | None:
    """pykka's `_ActorStop` class, if this pykka has one."""
    private = getattr(pykka.messages, "_ActorStop", None)
    return private if isinstance(private, type) else None


def _stop_type() -> tuple[type[Any], bool]:
    """The class of pykka's stop message, and whether it can be made directly.

    The probe shows what `stop()` sends. If it shows nothing (a `stop()` that
    refuses an actor that is not running, say), pykka's `_ActorStop` is taken on
    trust when it exists: only what is really missing is reported.
    """
    try:
        sent: type[Any] | None = type(_sent_by(lambda ref: ref.stop(block=False)))
    except Exception:
        sent = None
    private = _private_stop()
    if private is not None and sent in (None, private):
        try:
            private()
            return private, True
        except Exception:
            pass
    FALLBACKS.append("pykka.messages._ActorStop")
    return (sent if sent is not None else _OwnStop), False


class _OwnStop:
    """The stop message if pykka's `stop()` could not even be observed."""


_STOP, _STOP_DIRECT = _stop_type()


def _stop_classes() -> tuple[type[Any], ...]:
    """Every class a stop message may have: pykka's own `stop()` must stop the
    actor too, even when the probe could not see what it sends."""
    private = _private_stop()
    return (_STOP, _OwnStop) if private is None else (_STOP, _OwnStop, private)


_STOP_CLASSES = _stop_classes()


def is_stop(message: Any) -> bool:
    """Whether `message` asks the actor to stop (pykka's `stop()`, or `send_stop`)."""
    return isinstance(message, _STOP_CLASSES)


def send_stop(ref: pykka.ActorRef[Any]) -> None:
    """Ask the actor to stop after what it was sent before (pykka's `ActorRef.stop`).

    Raises:
        pykka.ActorDeadError: it has already stopped (see `tell_if_alive`).
    """
    if _STOP_DIRECT:
        ref.tell(_STOP())  # no future: pykka's `stop()` makes two
    elif _STOP is _OwnStop:
        ref.tell(_OwnStop())
    else:
        if not ref.is_alive():
            raise pykka.ActorDeadError(f"{ref} is dead")
        ref.stop(block=False)


def _proxy_receive(actor: pykka.Actor, message: Any) -> Any:
    """What `pykka.Actor._handle_receive` does, with pykka's public messages only."""
    messages = pykka.messages
    if isinstance(message, messages.ProxyCall):
        callee: Any = functools.reduce(getattr, message.attr_path, actor)
        return callee(*message.args, **message.kwargs)
    if isinstance(message, messages.ProxyGetAttr):
        return functools.reduce(getattr, message.attr_path, actor)
    if isinstance(message, messages.ProxySetAttr):
        parent = functools.reduce(getattr, message.attr_path[:-1], actor)
        return setattr(parent, message.attr_path[-1], message.value)
    return actor.on_receive(message)


def _pykka_handle_receive() -> Callable[[pykka.Actor, Any], Any]:
    method = getattr(pykka.Actor, "_handle_receive", None)
    if not callable(method):
        FALLBACKS.append("pykka.Actor._handle_receive")
        return _proxy_receive
    if not _STOP_DIRECT:  # it reads pykka's stop message too: not the one we know
        return _proxy_receive
    return method  # type: ignore[no-any-return]


handle_receive: Callable[[pykka.Actor, Any], Any] = _pykka_handle_receive()
"""Handle one message that is not a stop: proxy calls, then `on_receive`."""


class _Marker:
    pass


class _HookProbe(pykka.ThreadingActor):
    @staticmethod
    def _create_actor_inbox() -> Any:
        return _Marker()


def _inbox_hook_works() -> bool:
    try:
        works = isinstance(_HookProbe().actor_inbox, _Marker)
    except Exception:
        works = False
    if not works:
        FALLBACKS.append("pykka.Actor._create_actor_inbox")
    return works


inbox_hook_works = _inbox_hook_works()
"""Whether pykka builds an actor's inbox with `_create_actor_inbox()`. If not, the
kernel swaps its inbox in after `__init__` through the public `actor_inbox`
attributes of the actor and its ref."""


def _version() -> str:
    try:
        return importlib.metadata.version("pykka")
    except importlib.metadata.PackageNotFoundError:
        return "(unknown version)"


if FALLBACKS:
    logger.warning(
        "pykka %s lacks internals the supervision kernel uses (%s): using pykka's "
        "public API instead, which works but is slower; a pykka outside the tested "
        "range (setup.cfg) is installed?",
        _version(), ", ".join(FALLBACKS))
