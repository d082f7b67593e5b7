"""The attempts a worker has seen, and what their claims found.

A command sent again (its step heard nothing yet) must not cost a second
round trip to the claims bucket: the worker remembers the last `KNOWN`
attempts it saw, answers a resend from memory once its claim is settled, and
keeps the reply subjects of resends that came while the claim was in flight.
Both the bridge's loop thread and the worker's own thread call in, so every
method takes the lock.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import attrs

from noetl_actors.services._claims import Claim

__all__ = ["KNOWN", "SeenAttempts", "Sighting"]

KNOWN = 50_000
"""Attempts a worker remembers having seen (to drop a command sent again at once)."""

AttemptKey = tuple[str, int]
"""(claim key, epoch): one attempt as one owner sent it."""


@attrs.frozen
class Sighting:
    """What `SeenAttempts.see` found of an attempt."""

    first: bool
    """Never seen before: the caller claims it (it is now noted as in flight)."""
    found: Claim | None = None
    """Seen, and its claim settled: what it found (answer a resend with it)."""


class SeenAttempts:
    """The last `size` attempts seen, each with its claim (None while in flight)."""

    def __init__(self, size: int = KNOWN) -> None:
        self._size = size
        self._claims: OrderedDict[AttemptKey, Claim | None] = OrderedDict()
        self._asked: dict[AttemptKey, list[str]] = {}
        self._lock = threading.Lock()

    def see(self, key: AttemptKey, reply: str | None, *, settled: Claim | None = None) -> Sighting:
        """Note a command of attempt `key`; `settled` notes it as already decided.

        A resend (`reply`) of an attempt whose claim is in flight is kept, to be
        answered by `settle`; it returns neither `first` nor `found`.
        """
        with self._lock:
            if key not in self._claims:
                self._claims[key] = settled
                if len(self._claims) > self._size:
                    self._claims.popitem(last=False)
                return Sighting(first=True)
            found = self._claims[key]
            if found is None and reply:
                self._asked.setdefault(key, []).append(reply)
            return Sighting(first=False, found=found)

    def settle(self, key: AttemptKey, claim: Claim | None) -> list[str]:
        """Note what the claim of `key` found (None: it could not be made, so a resend
        is claimed again); return the replies of the resends that waited for it."""
        with self._lock:
            asked = self._asked.pop(key, [])
            if claim is None:
                self._claims.pop(key, None)
            elif key in self._claims:
                self._claims[key] = claim
            return asked
