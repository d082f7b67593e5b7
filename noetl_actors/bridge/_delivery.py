"""`Delivery`: what an actor is told when a message arrives on its subject."""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping
from typing import Any

import attrs

__all__ = ["Delivery", "JsMetadata", "PubAck"]

Settle = Callable[[str, float | None], None]


@attrs.frozen
class JsMetadata:
    """Where a JetStream message sits in its stream and consumer."""

    stream: str
    consumer: str
    stream_seq: int
    consumer_seq: int
    num_delivered: int
    """1 on first delivery; more when it is redelivered (nak, ack timeout)."""
    num_pending: int
    timestamp: datetime.datetime | None


@attrs.frozen
class PubAck:
    """The server's receipt for a JetStream publish."""

    stream: str
    seq: int
    duplicate: bool
    """True when the message id was seen before: stored once, not twice."""


@attrs.frozen
class Delivery:
    """One message from NATS, decoded, as told to an actor.

    `data` is the decoded JSON object (it always has ``schema_version``).
    Messages from a JetStream consumer carry `js` and must be settled once
    with `ack()`, `nak()` or `term()`; until then they count against the
    consumer's bound on messages in flight. Settling is thread-safe and
    does not block.
    """

    subject: str
    data: Mapping[str, Any]
    headers: Mapping[str, str] = attrs.field(factory=dict)
    reply: str | None = None
    js: JsMetadata | None = None
    _settle: Settle | None = attrs.field(default=None, eq=False, repr=False, alias="settle")

    def ack(self) -> None:
        """Done with it: the stream will not deliver it again."""
        self._require_js()("ack", None)

    def nak(self, delay: float | None = None) -> None:
        """Not now: deliver it again (after `delay` seconds)."""
        self._require_js()("nak", delay)

    def term(self) -> None:
        """Never: do not deliver it again (it is not processable)."""
        self._require_js()("term", None)

    def in_progress(self) -> None:
        """Still working on it: reset the server's ack timer."""
        self._require_js()("in_progress", None)

    def _require_js(self) -> Settle:
        if self._settle is None:
            raise TypeError(
                f"the message on {self.subject} is not from a JetStream consumer: "
                "it has nothing to ack"
            )
        return self._settle
