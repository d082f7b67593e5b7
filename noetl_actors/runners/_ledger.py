"""`Ledger`: what a runner has started and what still runs, shared by the runners."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from noetl_actors.runners._protocol import RunnerStatistics, RunningAttempt

__all__ = ["Ledger"]

H = TypeVar("H", bound=RunningAttempt)


class Ledger(Generic[H]):
    """The attempts of one runner, thread-safe; once closed it admits none.

    Args:
        runner: the runner's name, for the error of a start after `close()`.
    """

    def __init__(self, runner: str) -> None:
        self._runner = runner
        self._lock = threading.Lock()
        self._running: set[H] = set()
        self._started = 0
        self._abandoned = 0
        self._closed = False

    def admit(self, handle: H | None = None) -> None:
        """Count a start, and keep `handle` until `forget`; raise if closed.

        An attempt that never runs apart (an instant plugin run in place) has
        no handle to keep.
        """
        with self._lock:
            if self._closed:
                raise RuntimeError(f"the {self._runner} runner is closed")
            self._started += 1
            if handle is not None:
                self._running.add(handle)

    def forget(self, handle: H) -> None:
        with self._lock:
            self._running.discard(handle)

    def count_abandoned(self) -> None:
        with self._lock:
            self._abandoned += 1

    def close(self, timeout: float, wait: Callable[[H, float], object]) -> float:
        """Admit no more, cancel every attempt that runs, then wait for each.

        `wait(handle, seconds)` is given what is left of `timeout`. Returns
        the deadline, for what the runner still has to close.
        """
        deadline = time.monotonic() + timeout
        with self._lock:
            self._closed = True
            running = list(self._running)
        for handle in running:
            handle.cancel()
        for handle in running:
            wait(handle, max(0.0, deadline - time.monotonic()))
        return deadline

    def statistics(self) -> RunnerStatistics:
        with self._lock:
            return RunnerStatistics(started=self._started, running=len(self._running),
                                    abandoned=self._abandoned)
