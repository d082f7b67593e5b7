"""`AttemptHandle`: the settle-once part of a `RunningAttempt` that every runner shares."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import attrs

from noetl_actors.runners._attempt import Attempt, Outcome
from noetl_actors.runners._manifest import PluginInfo

__all__ = ["AttemptHandle", "check_start", "stop_message"]

log = logging.getLogger("noetl_actors.runners")


class AttemptHandle:
    """Holds one attempt's outcome: set once (first `_settle` wins), waited on, called back.

    Subclasses add `cancel()` and whatever runs the attempt.
    """

    def __init__(self, attempt: Attempt) -> None:
        self._attempt = attempt
        self.started_at = time.time()
        """Unix seconds when the attempt began to run: `Runner.start()`, moved on by a
        runner that queues it first (the inproc runner, when a pool thread takes it)."""
        self._cond = threading.Condition()
        self._outcome: Outcome | None = None
        self._callbacks: list[Callable[[Outcome], object]] = []

    @property
    def attempt(self) -> Attempt:
        return self._attempt

    def alive(self) -> bool:
        with self._cond:
            return self._outcome is None

    def wait(self, timeout: float | None = None) -> Outcome | None:
        with self._cond:
            self._cond.wait_for(lambda: self._outcome is not None, timeout)
            return self._outcome

    def add_done_callback(self, fn: Callable[[Outcome], object]) -> None:
        with self._cond:
            if self._outcome is None:
                self._callbacks.append(fn)
                return
            outcome = self._outcome
        self._call(fn, outcome)

    def _settle(self, outcome: Outcome) -> bool:
        """Make `outcome` the attempt's outcome unless one is already set; True if it was."""
        with self._cond:
            if self._outcome is not None:
                return False
            self._outcome = attrs.evolve(outcome, started_at=self.started_at,
                                         finished_at=time.time())
            callbacks, self._callbacks = self._callbacks, []
            self._cond.notify_all()
            final = self._outcome
        for fn in callbacks:
            self._call(fn, final)
        return True

    def _settled(self) -> bool:
        with self._cond:
            return self._outcome is not None

    def _call(self, fn: Callable[[Outcome], object], outcome: Outcome) -> None:
        try:
            fn(outcome)
        except Exception:
            log.exception("done callback of attempt %s failed", self._attempt.command_id)

    def __repr__(self) -> str:
        state = "running" if self.alive() else "done"
        return f"<{type(self).__name__} {self._attempt.command_id} {state}>"


def check_start(runner: str, plugin: PluginInfo, attempt: Attempt) -> None:
    """Raise ValueError if `runner` may not start `attempt` of `plugin`."""
    if attempt.plugin != plugin.name:
        raise ValueError(f"attempt {attempt.command_id} is for plugin {attempt.plugin!r}, "
                         f"not {plugin.name!r}")
    if runner not in plugin.modes:
        raise ValueError(f"plugin {plugin.name!r} cannot run {runner} "
                         f"(its modes: {', '.join(plugin.modes)})")


def stop_message(attempt: Attempt, reason: str) -> str:
    """Why a runner stopped an attempt: ``timeout`` or ``cancelled``, for people."""
    what = f"attempt {attempt.number} of step {attempt.task}.{attempt.step} ({attempt.plugin})"
    if reason == "timeout":
        return f"{what} ran past its timeout of {attempt.timeout:g}s"
    return f"{what} was cancelled"
