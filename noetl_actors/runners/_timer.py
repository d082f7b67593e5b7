"""`Timers`: one thread that calls functions at given `time.monotonic()` instants.

The in-process runner uses it for attempt timeouts and cancel grace
periods, so a thousand attempts with a timeout cost one thread, not a
thousand `threading.Timer`s.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable

__all__ = ["Timers"]

log = logging.getLogger("noetl_actors.runners")


class Timers:
    """Calls each scheduled function once, at or soon after its instant, on the timer thread.

    The thread starts with the first `schedule()` and ends at `close()`. It
    is a daemon thread: it runs only the runners' own short functions, and a
    runner left unclosed must not hold up the interpreter's exit. Functions
    must be short: they delay every later timer.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._pending: set[int] = set()
        self._ids = itertools.count()
        self._thread: threading.Thread | None = None
        self._closed = False

    def schedule(self, when: float, fn: Callable[[], None]) -> int:
        """Call `fn()` at monotonic time `when`; returns an id for `cancel()`."""
        with self._cond:
            if self._closed:
                raise RuntimeError(f"{self._name} is closed")
            timer_id = next(self._ids)
            heapq.heappush(self._heap, (when, timer_id, fn))
            self._pending.add(timer_id)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
                self._thread.start()
            self._cond.notify()
            return timer_id

    def cancel(self, timer_id: int) -> None:
        """Forget a timer that has not fired yet (no effect after it fired)."""
        with self._cond:
            self._pending.discard(timer_id)

    def close(self, *, timeout: float = 5.0) -> None:
        """Drop every pending timer and join the thread. Idempotent."""
        with self._cond:
            self._closed = True
            self._heap.clear()
            self._pending.clear()
            self._cond.notify()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._closed and (
                        not self._heap or self._heap[0][0] > time.monotonic()):
                    delay = self._heap[0][0] - time.monotonic() if self._heap else None
                    self._cond.wait(delay)
                if self._closed:
                    return
                _, timer_id, fn = heapq.heappop(self._heap)
                if timer_id not in self._pending:
                    continue  # cancelled
                self._pending.discard(timer_id)
            try:
                fn()
            except Exception:
                log.exception("%s: a timer function failed", self._name)
