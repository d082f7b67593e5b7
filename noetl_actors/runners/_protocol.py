"""The runner interface: `Runner.start()` gives a `RunningAttempt`, which ends in one `Outcome`.

A runner executes attempts somewhere (a thread, a subprocess, later a
Kubernetes Job); its caller (a plugin worker) only starts, watches, waits
for and cancels them. Nothing here blocks except `wait()`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

import attrs

from noetl_actors.runners._attempt import Attempt, Outcome
from noetl_actors.runners._manifest import PluginInfo

__all__ = ["InstantRunner", "Runner", "RunnerStatistics", "RunningAttempt"]


@attrs.frozen
class RunnerStatistics:
    """A runner's counters at one moment (`Runner.statistics()`)."""

    started: int
    """Attempts started since the runner was made."""
    running: int
    """Attempts without an outcome yet."""
    abandoned: int
    """Attempts given up on because they would not stop (in-process threads that
    ignored cancel); their threads may still run."""


@runtime_checkable
class RunningAttempt(Protocol):
    """An attempt that a runner has started. Every method is thread-safe.

    It ends in exactly one `Outcome`: the plugin's result, its failure, or
    the runner's verdict (``timeout``, ``crash``, ``cancelled``). After a
    timeout or cancel the outcome arrives once the attempt has really
    stopped (thread returned, process reaped, Job deleted) or, where it
    cannot be stopped (a thread that ignores cancel), once it is abandoned.
    """

    @property
    def attempt(self) -> Attempt: ...

    started_at: float
    """Unix seconds when the attempt really began to run: after any wait in the
    runner's own queue (a pool thread taken), not when it was started."""

    def alive(self) -> bool:
        """True until the outcome is known: what a worker's heartbeats report."""
        ...

    def wait(self, timeout: float | None = None) -> Outcome | None:
        """Block until the outcome is known, at most `timeout` seconds; None if not yet."""
        ...

    def cancel(self) -> None:
        """Ask the attempt to stop; returns at once. Idempotent; no effect once it ended.

        Its outcome becomes ``cancelled`` (status `Status.CANCELLED`) unless it
        had already ended otherwise.
        """
        ...

    def add_done_callback(self, fn: Callable[[Outcome], object]) -> None:
        """Call ``fn(outcome)`` once the outcome is known, on the thread that settles it
        (at once, on the caller's thread, if it already is). Keep `fn` short; an
        asyncio caller hands over with ``loop.call_soon_threadsafe``."""
        ...


@runtime_checkable
class Runner(Protocol):
    """Executes attempts of plugins. Thread-safe; one per kind per node is enough."""

    name: str
    """``inproc``, ``process`` or ``kubernetes``: the `modes:` entry it serves."""

    def start(self, plugin: PluginInfo, attempt: Attempt) -> RunningAttempt:
        """Start `attempt` of `plugin` and return at once; its timeout counts from now.

        Raises:
            ValueError: `plugin` does not support this runner (see its `modes`),
                or `attempt.plugin` is not `plugin.name`.
            RuntimeError: the runner is closed.
        """
        ...

    def statistics(self) -> RunnerStatistics: ...

    def close(self, *, timeout: float = 10.0) -> None:
        """Cancel every attempt still running, wait up to `timeout` for them to end,
        and stop the runner's threads. Idempotent."""
        ...


@runtime_checkable
class InstantRunner(Runner, Protocol):
    """A runner that can also run an `instant` plugin's attempt right on the caller's
    thread (`InprocRunner`): for a caller that would only wait for its outcome."""

    def run_now(self, plugin: PluginInfo, attempt: Attempt) -> Outcome:
        """Run `attempt` of an instant plugin here and return how it ended.

        Raises:
            ValueError: as `start()`, or the plugin is not `instant`.
            RuntimeError: the runner is closed.
        """
        ...
