"""`LoopThread`: the bridge's asyncio loop, on a thread of its own, for the bridge's life.

nats-py runs on asyncio; a bridge's connection runs on this loop. The loop
outlives connections (a bridge that restarts connects again on the same
loop), because more than the connection runs on it: the node's workflows
are hosted here (`host`), where their events arrive and their commands
leave, with no hand-over between threads per message (docs/bridge.md).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable

from noetl_actors.supervision import LoopHost

__all__ = ["LoopThread"]

logger = logging.getLogger("noetl_actors.bridge")


class LoopThread:
    """An asyncio loop running on a daemon thread; `start()`, then `stop()` once."""

    def __init__(self, name: str = "noetl-nats-loop") -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.host = LoopHost(self.loop, self.thread)
        """Hosts actors on this loop (`SupervisedActor.run_on(host)`)."""
        self._stopping = False
        self._watchers: set[Callable[[str], object]] = set()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<LoopThread {self.thread.name}>"

    def start(self) -> LoopThread:
        self.thread.start()
        return self

    def alive(self) -> bool:
        return self.thread.is_alive() and not self._stopping

    def watch(self, on_died: Callable[[str], object]) -> None:
        """Call `on_died(why)` (on the loop's thread) if the loop ends without `stop()`."""
        with self._lock:
            self._watchers.add(on_died)

    def unwatch(self, on_died: Callable[[str], object]) -> None:
        with self._lock:
            self._watchers.discard(on_died)

    def stop(self, *, timeout: float = 5.0) -> None:
        """Kill the actors hosted here, let them exit, then stop and close the loop."""
        if self._stopping:
            return
        self._stopping = True
        if self.thread.is_alive():
            self.host.kill_guests()  # their last turns run before the stop below
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout)
        if not self.thread.is_alive() and not self.loop.is_closed():
            self.loop.close()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        why = "the NATS loop stopped"
        try:
            self.loop.run_forever()
        except BaseException as error:  # a callback raised SystemExit or the like
            why = f"the NATS loop thread died: {error!r}"
            logger.error("%s", why)
        # Stopped or dead, nothing runs here any more: what is still hosted (a turn
        # posted after the stop, a start that raced it) is killed here, and its
        # supervisor hears of it.
        self.host.kill_guests(at_once=True)
        if self._stopping:
            _cancel_pending(self.loop)
            return
        with self._lock:
            watchers = list(self._watchers)
        for on_died in watchers:
            on_died(why)


def _cancel_pending(loop: asyncio.AbstractEventLoop, timeout: float = 1.0) -> None:
    """Cancel what still runs on a stopped loop and let it end, as `asyncio.run` does.

    A task left pending on a closed loop (nats-py's reader of a subscription
    whose server was gone, say) is reported at exit as "Task was destroyed but
    it is pending!", with a "RuntimeError: Event loop is closed" traceback.
    """
    pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
    if not pending:
        return
    for task in pending:
        task.cancel()
    try:
        loop.run_until_complete(asyncio.wait(pending, timeout=timeout))
    except BaseException:
        logger.debug("ignored while stopping the loop", exc_info=True)
