"""`LoopHost`: hosted actors run on an asyncio loop's thread."""

from __future__ import annotations

import asyncio
import logging
import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING

from noetl_actors.supervision._pykka import Entry

if TYPE_CHECKING:
    from noetl_actors.supervision._actor import SupervisedActor

__all__ = ["LoopHost"]

logger = logging.getLogger("noetl_actors.supervision")


class LoopHost:
    """Runs hosted actors on an asyncio loop's thread, as callbacks between its own.

    Give it with `SupervisedActor.run_on(host)` to an actor (a supervisor,
    say, with its hosted children) that waits on the same loop's I/O: its
    turns then run where its messages arrive, with no hand-over between
    threads. The bridge's loop hosts the node's workflows this way
    (docs/supervision.md, "Hosted on a loop"). What it runs must never
    block, and must never wait for the loop itself (`Connection.call`).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
        self.loop = loop
        self.thread = thread
        self._guests: weakref.WeakSet[SupervisedActor] = weakref.WeakSet()
        self._guests_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<LoopHost on {self.thread.name}>"

    def alive(self) -> bool:
        return self.thread.is_alive() and not self.loop.is_closed()

    def _post_turn(self, run: Entry) -> None:
        try:
            self.call_soon(run.message.actor._run_hosted)
        except RuntimeError:  # closed: its owner killed what ran here before closing it
            logger.debug("%r is closed: a turn of %s is dropped", self, run.message.actor.path)

    def call_soon(self, callback: Callable[[], object]) -> None:
        """Run `callback` on the loop's thread, after what was posted before.

        Raises:
            RuntimeError: the loop is closed.
        """
        if threading.current_thread() is self.thread:
            self.loop.call_soon(callback)
        else:
            self.loop.call_soon_threadsafe(callback)

    def _runner_thread(self) -> threading.Thread | None:
        return self.thread

    def _adopt(self, actor: SupervisedActor) -> None:
        with self._guests_lock:
            self._guests.add(actor)

    def hosting(self) -> bool:
        """Whether an actor still runs here."""
        with self._guests_lock:
            return any(actor.exit_reason is None for actor in self._guests)

    def kill_guests(self, *, at_once: bool = False) -> None:
        """Kill every actor still running here: an actor left on a stopped loop would
        never run again, and its supervisor would wait for it.

        The kills are posted (they happen on the loop's next turns, before a stop
        posted after them), or, `at_once`, run right here: for the loop's own
        thread once its loop has died.
        """
        with self._guests_lock:
            guests = list(self._guests)
        for actor in guests:
            if actor.exit_reason is None:
                actor._kill()
                if at_once:
                    actor._run_hosted()
