"""The bridge's link to NATS: whether it is up now, and what to send again once it is back.

nats-py reconnects on its own when the server goes away, and keeps what is
published meanwhile in its pending buffer (2 MiB; past it, publishes are
refused and lost). What it wrote to a socket whose server had just died is
lost without a word: the write succeeded, the server never read it. So a
publish that must reach its stream is made with a message id (`Nats-Msg-Id`,
the stream stores it once within its duplicate window), kept here for a
while, and sent again after the link comes back if it was handed over less
than `RESEND_BEFORE` seconds before the link was seen down, or while it was
down. Sending it again is safe: the stream drops the copy; subscribers may
see it twice.
"""

from __future__ import annotations

import logging
from collections import deque

import attrs

from noetl_actors.bridge._nats_internals import Outgoing

__all__ = ["MAX_KEPT", "RESEND_BEFORE", "LinkState", "Resends"]

logger = logging.getLogger("noetl_actors.bridge")

RESEND_BEFORE = 2.0
"""Seconds before the link was seen down from which kept publishes are sent again: a
server that dies is seen gone within milliseconds on a live host (its socket is
reset), and what was written to it meanwhile is lost."""
MAX_KEPT = 100_000
"""Publishes kept while the link is down; past it the oldest are dropped (and warned of)."""


@attrs.frozen
class LinkState:
    """The bridge's link to NATS, as seen now (`Bridge.link()`)."""

    up: bool
    """Connected now: what is published reaches the server, subscriptions hear."""
    changes: int
    """How often the link went down or came back, or a new connection was made: two
    readings with the same count saw no outage between them (while `up`)."""


class Resends:
    """Publishes with a message id, kept to be sent again after an outage.

    Not thread-safe: the `BridgeCore` calls it under its lock. Times are
    seconds on one monotonic clock, given by the caller.
    """

    def __init__(self, *, before: float = RESEND_BEFORE, limit: int = MAX_KEPT) -> None:
        self._before = before
        self._limit = limit
        self._kept: deque[tuple[float, Outgoing]] = deque()
        self._down_at: float | None = None
        self._dropped = 0

    def __len__(self) -> int:
        return len(self._kept)

    def keep(self, item: Outgoing, now: float) -> None:
        """`item` was handed over at `now`; forget what is too old to be sent again."""
        self._kept.append((now, item))
        if self._down_at is None:
            horizon = now - self._before
            while self._kept and self._kept[0][0] < horizon:
                self._kept.popleft()
        elif len(self._kept) > self._limit:
            self._kept.popleft()
            if not self._dropped:
                logger.warning("more than %d publishes with a message id wait for NATS to "
                               "come back: the oldest are no longer kept to be sent again",
                               self._limit)
            self._dropped += 1

    def down(self, now: float) -> None:
        """The link was seen down at `now` (the first time counts)."""
        if self._down_at is None:
            self._down_at = now

    def back(self, now: float) -> list[Outgoing]:
        """The link is back at `now`: what to send again, oldest first (kept a while
        longer, stamped `now`: it is in flight again)."""
        if self._down_at is None:
            return []
        horizon = self._down_at - self._before
        self._down_at = None
        self._dropped = 0
        again = [item for at, item in self._kept if at >= horizon]
        self._kept = deque((now, item) for item in again)
        return again
