"""`LoopThread`: one asyncio loop on a thread of its own, for attempts that only wait.

The inproc runner awaits async plugins (sleep) here: ten thousand waiting
attempts are ten thousand tasks on this one thread, not a pool thread each.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any

__all__ = ["LoopThread"]


class LoopThread:
    """An event loop that runs on a daemon thread from `start()` to `close()`. Thread-safe."""

    def __init__(self, *, name: str) -> None:
        self._name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._closed = False
        self._pending: list[Coroutine[Any, Any, None]] = []
        self._waking = False
        """`_start_pending` is posted to the loop and has not run yet."""
        self._tasks: set[asyncio.Task[None]] = set()

    def submit(self, coroutine: Coroutine[Any, Any, None]) -> None:
        """Run `coroutine` as a task on the loop (started on first use).

        Coroutines submitted while the loop has not yet taken the last ones wait
        with them and are started in one go: one wake-up of the loop (a write to
        its self-pipe, and a wait for the GIL after it) per burst, not per
        coroutine; 10,000 `sleep` attempts started at once had spent most of
        their start in those writes.

        Raises:
            RuntimeError: the loop is closed.
        """
        loop = self._started()
        with self._lock:
            self._pending.append(coroutine)
            if self._waking:
                return
            self._waking = True
        loop.call_soon_threadsafe(self._start_pending)

    def _start_pending(self) -> None:
        """On the loop: start every coroutine submitted since the last wake-up."""
        with self._lock:
            pending, self._pending = self._pending, []
            self._waking = False
        loop = asyncio.get_running_loop()
        for coroutine in pending:
            task = loop.create_task(coroutine)
            self._tasks.add(task)  # the loop keeps only weak references to its tasks
            task.add_done_callback(self._tasks.discard)

    def call_soon(self, fn: Any, *args: Any) -> None:
        """Call ``fn(*args)`` on the loop's thread; nothing if it is not running."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(fn, *args)
            except RuntimeError:  # closed meanwhile
                pass

    def close(self, *, timeout: float = 5.0) -> None:
        """Cancel what still runs on the loop, stop it and wait for its thread. Idempotent."""
        with self._lock:
            self._closed = True
            loop, thread = self._loop, self._thread
            never_started, self._pending = self._pending, []
        for coroutine in never_started:
            coroutine.close()
        if loop is None or thread is None:
            return
        try:
            loop.call_soon_threadsafe(loop.stop)
        except RuntimeError:
            pass
        if thread is not threading.current_thread():
            thread.join(timeout)

    def _started(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._closed:
                raise RuntimeError(f"{self._name} is closed")
            if self._loop is None:
                loop = asyncio.new_event_loop()
                ready = threading.Event()
                thread = threading.Thread(target=self._run, args=(loop, ready), daemon=True,
                                          name=self._name)
                thread.start()
                ready.wait()
                self._loop, self._thread = loop, thread
            return self._loop

    @staticmethod
    def _run(loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(ready.set)
        try:
            loop.run_forever()
        finally:
            for task in asyncio.all_tasks(loop):
                task.cancel()
            loop.run_until_complete(asyncio.gather(*asyncio.all_tasks(loop),
                                                   return_exceptions=True))
            loop.close()
