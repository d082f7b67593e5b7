"""`Latch`: a one-way `threading.Event`, for an actor's started and exited."""

from __future__ import annotations

import threading

__all__ = ["Latch"]


class Latch:
    """A one-way `threading.Event`: `set()` once, then every `wait()` returns at once.

    An actor has two (started, exited), and a step's attempt sets both within a
    millisecond: a `threading.Event` costs a `Condition` to make and a
    `notify_all` to set. This is one lock, held until set.
    """

    __slots__ = ("_flag", "_lock")

    def __init__(self) -> None:
        self._flag = False
        self._lock = threading.Lock()
        self._lock.acquire()

    def set(self) -> None:
        if not self._flag:
            self._flag = True
            self._lock.release()

    def is_set(self) -> bool:
        return self._flag

    def wait(self, timeout: float | None = None) -> bool:
        if self._flag:
            return True
        if not self._lock.acquire(timeout=-1 if timeout is None else max(timeout, 0)):
            return False
        self._lock.release()  # and the next waiter passes too
        return True
