"""A child's stable address: messages survive its restarts.

A pykka `ActorRef` points at one incarnation; after a crash it is dead. An
`Address` points at whatever incarnation of a supervised child is current.
While the child restarts or backs off, messages wait in the address (in order,
up to `max_pending`) and go to the new incarnation first. Messages the dead
incarnation had not handled yet wait there too (the one that crashed it does
not come back). When the child will not come back, waiting asks fail with
`ActorDeadError` and waiting tells are reported as dead letters: nothing is
dropped silently.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

import pykka

from noetl_actors.errors import ActorDeadError, MailboxFull
from noetl_actors.supervision._pykka import Entry, make_envelope, put

__all__ = ["Address"]

DEFAULT_MAX_PENDING = 10_000


class Address:
    """Where to send messages for one supervised child, across its restarts.

    Thread-safe; hand it to any thread. Obtain it from
    `SupervisorRef.address(child_id)`.
    """

    def __init__(
        self,
        path: str,
        *,
        max_pending: int = DEFAULT_MAX_PENDING,
        on_dead_letter: Callable[[Any], None] | None = None,
    ) -> None:
        self.path = path
        self._max_pending = max_pending
        self._on_dead_letter = on_dead_letter
        self._lock = threading.Lock()
        self._ref: pykka.ActorRef[Any] | None = None
        self._pending: deque[Entry] = deque()
        self._closed = False

    def __repr__(self) -> str:
        return f"<Address {self.path}>"

    @property
    def closed(self) -> bool:
        """True once the child will not come back: sends raise ActorDeadError."""
        return self._closed

    @property
    def ref(self) -> pykka.ActorRef[Any] | None:
        """The current incarnation, or None while the child is not running."""
        return self._ref

    def tell(self, message: Any) -> None:
        """Send without waiting.

        Raises:
            ActorDeadError: the child is gone and will not come back.
            MailboxFull: the child is restarting and `max_pending` wait already.
        """
        self._send(make_envelope(message))

    def ask(self, message: Any, *, timeout: float | None = None) -> Any:
        """Send and wait for the reply (the handler's return value).

        Raises:
            ActorDeadError: the child is gone, or died before handling it.
            pykka.Timeout: no reply within `timeout` seconds.
            Exception: whatever the handler raised (the child crashed on it).
        """
        return self.ask_future(message).get(timeout=timeout)

    def ask_future(self, message: Any) -> pykka.Future[Any]:
        """Send and return the future of the reply, without waiting."""
        future: pykka.Future[Any] = pykka.ThreadingFuture()
        self._send(make_envelope(message, reply_to=future))
        return future

    def _send(self, envelope: Entry) -> None:
        with self._lock:
            if self._closed:
                raise ActorDeadError(f"{self.path} is gone and will not be restarted")
            if self._ref is not None and self._ref.is_alive():
                put(self._ref.actor_inbox, envelope)
                return
            if len(self._pending) >= self._max_pending:
                raise MailboxFull(
                    f"{self.path} is restarting and already holds "
                    f"{self._max_pending} messages"
                )
            self._pending.append(envelope)

    # The supervisor's side. Called from the supervisor's thread only.

    def _attach(self, ref: pykka.ActorRef[Any]) -> None:
        """A new incarnation runs: hand it what waited, then route to it."""
        with self._lock:
            while self._pending:
                put(ref.actor_inbox, self._pending.popleft())
            self._ref = ref

    def _detach(self, leftovers: Iterable[Entry] = ()) -> None:
        """The incarnation is gone; its unhandled messages wait for the next."""
        with self._lock:
            self._ref = None
            self._pending.extendleft(reversed(list(leftovers)))

    def _close(self, leftovers: Iterable[Entry] = ()) -> int:
        """The child will not come back: fail waiting asks, report waiting tells.

        Returns how many messages were dead-lettered.
        """
        with self._lock:
            self._ref = None
            self._closed = True
            dropped = [*leftovers, *self._pending]
            self._pending.clear()
        return dead_letter(self.path, dropped, self._on_dead_letter)

    def _reopen(self) -> None:
        """A terminated child was restarted by `restart_child`."""
        with self._lock:
            self._closed = False


def dead_letter(
    path: str,
    envelopes: Iterable[Entry],
    report: Callable[[Any], None] | None,
) -> int:
    """Fail each ask with ActorDeadError and report each tell; return the count."""
    count = 0
    for envelope in envelopes:
        count += 1
        if envelope.reply_to is not None:
            error = ActorDeadError(f"{path} stopped before handling the message")
            envelope.reply_to.set_exception((ActorDeadError, error, None))
        elif report is not None:
            report(envelope.message)
    return count
