"""An actor's inbox, and the kernel's own entries in it (wake-ups, hosted turns)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs

from noetl_actors.supervision._pykka import Entry, is_stop, make_envelope

if TYPE_CHECKING:
    from noetl_actors.supervision._actor import SupervisedActor

__all__ = ["HOSTED_BATCH", "WAKE", "Inbox", "Post", "RunHosted", "drain", "put_back"]


class _Wake:
    """Put in a killed actor's inbox so that an idle loop notices the kill."""


WAKE = _Wake()


@attrs.frozen(eq=False)
class RunHosted:
    """Put in a host's inbox: run the hosted actor's messages (`_run_hosted`)."""

    actor: SupervisedActor


HOSTED_BATCH = 64
"""Messages a hosted actor handles in one turn before its host's other messages."""


Post = Callable[[Entry], None]
"""How a hosted actor's turn reaches its host: the host runs `entry.message`
(a `RunHosted`) on its thread, after what it was given before."""


class Inbox(queue.SimpleQueue[Entry]):
    """An actor's inbox: unbounded FIFO like pykka's `queue.Queue`, but in C, and,
    once the actor is hosted, a put also tells its host to run it.

    `put` and `get` skip `queue.Queue`'s Python-level condition variable
    (put + get: 2.0 us -> 0.3 us); pykka and the kernel use only `put`,
    `get`, `get_nowait` and `empty`.

    At most one `RunHosted` of an actor waits at its host: `_scheduled` is set
    by the put that posts it and cleared (under the lock, when the inbox is
    found empty) by the turn that runs it, so no wake-up is lost or doubled.
    Until `host(...)` is called (or when the actor runs on a thread of its own)
    it is a plain inbox. Every actor has one: whether it will be hosted (on a
    loop, `run_on`) is decided after it is built.
    """

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._scheduled = False
        self._post: Post | None = None
        self._run: Entry | None = None

    def host(self, post: Post | None, actor: SupervisedActor | None) -> None:
        """Post `actor`'s turns with `post` from now on; `None, None`: no longer hosted."""
        run = None if actor is None else make_envelope(RunHosted(actor))
        with self._lock:
            self._post, self._run, self._scheduled = post, run, False

    def put(self, item: Entry, block: bool = True, timeout: float | None = None) -> None:
        super().put(item)
        self.wake()

    def wake(self) -> None:
        """Post a turn to the host, unless one is posted or running."""
        with self._lock:
            if self._scheduled or self._run is None:
                return
            self._scheduled = True
            run, post = self._run, self._post
        assert post is not None
        post(run)

    def idle(self) -> bool:
        """End a turn if nothing is left (True); else the turn goes on."""
        with self._lock:
            if not self.empty():
                return False
            self._scheduled = False
            return True

    def repost(self) -> None:
        """End a turn that left messages: the host runs the actor again later."""
        with self._lock:
            run, post = self._run, self._post
        if run is not None and post is not None:
            post(run)


def drain(inbox: Any) -> list[Entry]:
    """Take every message still in an exited actor's inbox.

    Stop requests are settled here (the actor has stopped: a `stop()` ask
    gets None) and kill wake-ups dropped, so neither reaches a next
    incarnation.
    """
    entries = []
    while not inbox.empty():
        entry = inbox.get_nowait()
        if is_stop(entry.message):
            if entry.reply_to is not None:
                entry.reply_to.set(None)
        elif entry.message is not WAKE and type(entry.message) is not RunHosted:
            entries.append(entry)
    return entries


def put_back(inbox: Any, first: Entry) -> None:
    """Return an entry taken too early to the front of the inbox."""
    rest = drain(inbox)
    inbox.put(first)
    for entry in rest:
        inbox.put(entry)
