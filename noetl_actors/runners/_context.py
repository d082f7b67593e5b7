"""`Context`: what a plugin's ``run(input, ctx)`` gets besides its input."""

from __future__ import annotations

import threading
import time

import attrs

from noetl_actors.errors import Cancelled
from noetl_actors.runners._attempt import Attempt
from noetl_actors.runners._manifest import PluginInfo

__all__ = ["Context"]


@attrs.frozen(kw_only=True)
class Context:
    """The attempt being run, and the means to notice that it should stop.

    Thread-safety: `cancelled` is set from another thread (the runner's, or
    the process runner's SIGTERM handler); everything else is read-only.
    """

    attempt: Attempt
    plugin: PluginInfo
    runner: str
    """The runner executing this attempt: ``inproc``, ``process``, ``kubernetes``."""
    cancelled: threading.Event = attrs.field(factory=threading.Event)
    """Set when the attempt is cancelled or times out. A long-running plugin
    checks it, or waits on it instead of sleeping (`sleep()` does)."""
    deadline: float | None = None
    """`time.monotonic()` value at which the attempt times out, or None."""

    def remaining(self) -> float | None:
        """Seconds left before the attempt times out (>= 0), or None without a timeout."""
        return None if self.deadline is None else max(0.0, self.deadline - time.monotonic())

    def check_cancelled(self) -> None:
        """Raise `Cancelled` if the attempt was cancelled (or timed out)."""
        if self.cancelled.is_set():
            raise Cancelled(f"attempt {self.attempt.command_id} was cancelled")

    def sleep(self, seconds: float) -> None:
        """Wait `seconds`, or raise `Cancelled` as soon as the attempt is cancelled."""
        if self.cancelled.wait(max(0.0, seconds)):
            raise Cancelled(f"attempt {self.attempt.command_id} was cancelled")
