"""The package's one clock: real time with one timer thread, and a manual one for tests.

Supervisors read the time for their restart-intensity windows and schedule
backoff timers through a `Clock`, never through `time` directly, so tests
drive windows and backoff with `ManualClock.advance()` instead of sleeping.
The in-process runner schedules its timeouts and grace periods on one too.
It imports only the standard library, so every layer may use it;
`noetl_actors.supervision` exports it as its own.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

__all__ = ["Clock", "ManualClock", "MonotonicClock", "TimerHandle"]

logger = logging.getLogger("noetl_actors.supervision")


class TimerHandle:
    """A scheduled call; `cancel()` makes sure it never runs (if it has not yet)."""

    __slots__ = ("_cancelled", "due", "fn")

    def __init__(self, due: float, fn: Callable[[], object]) -> None:
        self.due = due
        self.fn = fn
        self._cancelled = False

    def cancel(self) -> None:
        self._cancelled = True

    @property
    def cancelled(self) -> bool:
        return self._cancelled


class Clock(Protocol):
    def now(self) -> float:
        """Seconds on a monotonic scale; only differences mean anything."""
        ...

    def call_later(self, delay: float, fn: Callable[[], object]) -> TimerHandle:
        """Run `fn` once, `delay` seconds from now, on the clock's own thread.

        `fn` must be quick and must not block: supervisors pass a `tell`.
        """
        ...

    def close(self) -> None:
        """Drop pending timers and stop any thread the clock started."""
        ...


class _TimerQueue:
    """A heap of timers ordered by due time, then by scheduling order."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, TimerHandle]] = []
        self._order = itertools.count()

    def push(self, handle: TimerHandle) -> None:
        heapq.heappush(self._heap, (handle.due, next(self._order), handle))

    def next_due(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float) -> list[TimerHandle]:
        due = []
        while self._heap and self._heap[0][0] <= now:
            handle = heapq.heappop(self._heap)[2]
            if not handle.cancelled:
                due.append(handle)
        return due

    def clear(self) -> None:
        self._heap.clear()


class MonotonicClock:
    """Real time. Timers run on one thread, started on the first `call_later`.

    Whoever creates the clock owns that thread and calls `close()`; a root
    supervisor does so when it exits.
    """

    def __init__(self) -> None:
        self._timers = _TimerQueue()
        self._condition = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False

    def now(self) -> float:
        return time.monotonic()

    def call_later(self, delay: float, fn: Callable[[], object]) -> TimerHandle:
        handle = TimerHandle(self.now() + max(delay, 0.0), fn)
        with self._condition:
            if self._closed:
                raise RuntimeError("call_later on a closed clock")
            next_due = self._timers.next_due()
            self._timers.push(handle)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="noetl-clock", daemon=True
                )
                self._thread.start()
            if next_due is None or handle.due < next_due:
                # Only an earlier timer changes how long the clock thread sleeps.
                self._condition.notify()
        return handle

    def close(self, timeout: float | None = None) -> None:
        """Drop pending timers and stop the timer thread; idempotent.

        Waits for a callback that is running to return, at most `timeout`
        seconds (None: as long as it takes); a later `call_later` raises
        RuntimeError.
        """
        with self._condition:
            self._closed = True
            self._timers.clear()
            self._condition.notify()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._condition:
                while True:
                    if self._closed:
                        return
                    due = self._timers.pop_due(self.now())
                    if due:
                        break
                    next_due = self._timers.next_due()
                    timeout = None if next_due is None else max(next_due - self.now(), 0)
                    self._condition.wait(timeout)
            for handle in due:
                try:
                    handle.fn()
                except Exception:
                    logger.exception("a timer callback failed (ignored)")


class ManualClock:
    """Time that moves only when a test calls `advance()`.

    Timers that fall due run inside `advance()`, in the caller's thread, in
    due order. Like trio's MockClock: no sleeping, no flaky windows.
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._timers = _TimerQueue()
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self._now

    def call_later(self, delay: float, fn: Callable[[], object]) -> TimerHandle:
        with self._lock:
            handle = TimerHandle(self._now + max(delay, 0.0), fn)
            self._timers.push(handle)
        return handle

    def pending(self) -> list[float]:
        """Due times of the timers not run yet (cancelled ones excluded)."""
        with self._lock:
            return sorted(due for due, _, h in self._timers._heap if not h.cancelled)

    def advance(self, seconds: float) -> None:
        """Move time forward and run every timer that falls due, in order."""
        if seconds < 0:
            raise ValueError(f"seconds must be >= 0 (got {seconds!r})")
        with self._lock:
            target = self._now + seconds
        while True:
            with self._lock:
                next_due = self._timers.next_due()
                if next_due is None or next_due > target:
                    self._now = target
                    return
                self._now = max(self._now, next_due)
                due = self._timers.pop_due(self._now)
            for handle in due:
                handle.fn()

    def close(self) -> None:
        with self._lock:
            self._timers.clear()
