"""`TreeContext`: what every supervisor of one tree shares."""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Iterable
from typing import Any

import attrs

from noetl_actors.clock import Clock, MonotonicClock
from noetl_actors.supervision._address import Address
from noetl_actors.supervision._events import EventKind, LifecycleEvent, Observer

__all__ = ["TreeContext"]

logger = logging.getLogger("noetl_actors.supervision")


@attrs.define
class TreeContext:
    """What every supervisor of one tree shares: the clock, the observers, the addresses.

    Addresses live here, by path, so that an address outlives the
    incarnation of the supervisor that made it: a child's address keeps
    working when its supervisor is restarted, until the tree decides that
    the child will not come back (then it is closed).
    """

    clock: Clock = attrs.field(factory=MonotonicClock)
    observers: tuple[Observer, ...] = ()
    rng: random.Random = attrs.field(factory=random.Random)
    _addresses: dict[str, Address] = attrs.field(factory=dict, init=False)
    _under: dict[str, set[str]] = attrs.field(factory=dict, init=False)
    """Paths of the addresses directly under each path: closing a subtree walks
    it, instead of scanning every address of the tree."""
    _lock: threading.Lock = attrs.field(factory=threading.Lock, init=False)

    def address(self, path: str, on_dead_letter: Callable[[Any], None]) -> Address:
        """The open address of `path`, made if there is none."""
        with self._lock:
            address = self._addresses.get(path)
            if address is None or address.closed:
                address = Address(path, on_dead_letter=on_dead_letter)
                self._addresses[path] = address
                self._under.setdefault(path.rsplit("/", 1)[0], set()).add(path)
            return address

    def close_addresses(
        self, path: str, *, include_path: bool = True, keep: Iterable[str] = ()
    ) -> None:
        """Close the addresses of `path` and everything under it, except `keep` subtrees."""
        kept = set(keep)
        closing: list[Address] = []
        with self._lock:
            todo = [path] if include_path else list(self._under.get(path, ()))
            while todo:
                current = todo.pop()
                if current in kept:
                    continue
                todo.extend(self._under.pop(current, ()))
                address = self._addresses.pop(current, None)
                if address is not None:
                    closing.append(address)
                    self._under.get(current.rsplit("/", 1)[0], set()).discard(current)
        for address in closing:
            address._close()

    def emit(self, kind: EventKind, path: str, **fields: Any) -> None:
        """Tell every observer of the tree a `LifecycleEvent`; a failing one is logged."""
        if not self.observers:
            return
        event = LifecycleEvent(kind=kind, path=path, **fields)
        for observer in self.observers:
            try:
                observer(event)
            except Exception:
                logger.exception("observer %r failed on %s (ignored)", observer, event)

    def reopen(self, address: Address) -> None:
        """Open a closed address again (`restart_child` of a terminated child)."""
        with self._lock:
            address._reopen()
            self._addresses[address.path] = address
            self._under.setdefault(address.path.rsplit("/", 1)[0], set()).add(address.path)
