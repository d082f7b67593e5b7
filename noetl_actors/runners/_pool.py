"""`WorkerPool`: a bounded set of threads for in-process attempts, that can give up on one.

Why not `concurrent.futures.ThreadPoolExecutor`: a plugin that ignores
cancel keeps its thread forever, and the executor joins its threads at
interpreter exit (so `noetl run` could never exit after Ctrl-C) and has no
way to replace a lost thread. Here a stuck thread is *retired*: it leaves
the pool (a new one may start in its place) and ends whenever its plugin
returns. The threads are daemon threads for that reason: at interpreter
exit a plugin still running is stopped without cleanup, which is why
runners cancel attempts (and wait a grace period) before they close.
"""

from __future__ import annotations

import collections
import itertools
import threading
import time
from collections.abc import Callable

import attrs

__all__ = ["PoolStatistics", "WorkerPool"]


@attrs.frozen
class PoolStatistics:
    threads: int
    """Threads in the pool (busy or idle), at most `max_workers`."""
    idle: int
    queued: int
    """Jobs waiting for a thread."""
    retired: int
    """Threads given up on (their plugin ignored cancel) that have not ended yet."""


class WorkerPool:
    """Runs submitted functions, first in first out, on at most `max_workers` threads.

    Threads start on demand and stay until `close()`. Thread-safe.
    """

    def __init__(self, max_workers: int, *, name: str) -> None:
        if max_workers < 1:
            raise ValueError(f"max_workers must be >= 1 (got {max_workers!r})")
        self._max = max_workers
        self._name = name
        self._cond = threading.Condition()
        self._queue: collections.deque[Callable[[], None]] = collections.deque()
        self._threads: set[threading.Thread] = set()
        self._retired: set[threading.Thread] = set()
        self._idle = 0
        self._closed = False
        self._numbers = itertools.count(1)

    def submit(self, job: Callable[[], None]) -> None:
        """Queue `job`; it runs on a pool thread. `job` must not raise.

        Raises:
            RuntimeError: the pool is closed.
        """
        with self._cond:
            if self._closed:
                raise RuntimeError(f"{self._name} is closed")
            self._queue.append(job)
            self._grow()
            self._cond.notify()

    def retire(self, thread: threading.Thread) -> None:
        """Give up on `thread` (busy in a job that will not return soon): it leaves the
        pool, ends when its job returns, and a new thread may take its place."""
        with self._cond:
            if thread in self._threads:
                self._threads.discard(thread)
                self._retired.add(thread)
                self._grow()

    def statistics(self) -> PoolStatistics:
        with self._cond:
            return PoolStatistics(threads=len(self._threads), idle=self._idle,
                                  queued=len(self._queue), retired=len(self._retired))

    def close(self, *, timeout: float = 5.0) -> bool:
        """Run what is queued, then end every pool thread; wait up to `timeout` for them.

        Retired threads are not waited for. Returns True if every pool thread
        ended in time. Idempotent.
        """
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            threads = list(self._threads)
        deadline = time.monotonic() + timeout
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in threads)

    def _grow(self) -> None:
        """Start a thread if jobs outnumber idle threads and there is room (lock held)."""
        if len(self._queue) > self._idle and len(self._threads) < self._max:
            thread = threading.Thread(target=self._work, daemon=True,
                                      name=f"{self._name}-{next(self._numbers)}")
            self._threads.add(thread)
            thread.start()

    def _work(self) -> None:
        me = threading.current_thread()
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._idle += 1
                    self._cond.wait()
                    self._idle -= 1
                if not self._queue:  # closed and drained
                    self._threads.discard(me)
                    return
                job = self._queue.popleft()
            job()
            with self._cond:
                if me in self._retired:
                    self._retired.discard(me)
                    return
