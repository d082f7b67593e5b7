"""`InprocRunner`: attempts on a bounded pool of threads in this process; cooperative cancel.

A plugin cannot be killed in a thread, so a timeout or cancel sets
``ctx.cancelled`` and waits `cancel_grace` seconds for the plugin to
return. One that does not is *abandoned*: the outcome is reported anyway
(``timeout``/``cancelled``, saying so), its thread leaves the pool (a new
one takes its place) and runs on until the plugin returns, and
`statistics().abandoned` counts it. Plugins that may block for long
belong in the process runner.

A plugin whose ``run`` is ``async def`` (it only waits: sleep) takes no
pool thread: its attempts are tasks on one event loop of the runner's
(`LoopThread`), as many at once as its worker lets run, and a timeout or
cancel cancels the task at once.
"""

from __future__ import annotations

import asyncio
import threading
import time

from noetl_actors.clock import Clock, MonotonicClock, TimerHandle
from noetl_actors.runners._attempt import CANCELLED, CRASH, TIMEOUT, Attempt, Outcome
from noetl_actors.runners._context import Context
from noetl_actors.runners._handle import AttemptHandle, check_start, stop_message
from noetl_actors.runners._invoke import invoke, invoke_async, is_async
from noetl_actors.runners._ledger import Ledger
from noetl_actors.runners._loop import LoopThread
from noetl_actors.runners._manifest import PluginInfo
from noetl_actors.runners._output import OutputSink, capture
from noetl_actors.runners._pool import WorkerPool
from noetl_actors.runners._protocol import RunnerStatistics

__all__ = ["InprocAttempt", "InprocRunner"]


class InprocRunner:
    """Runs attempts on at most `max_workers` threads; more wait in a queue (their
    timeout runs while they wait).

    Args:
        max_workers: threads in the pool.
        cancel_grace: seconds a cancelled or timed-out plugin gets to return
            before it is abandoned.
        clock: runs the timeouts and grace periods (its `call_later`); by default
            one of its own (one timer thread), closed by `close()`. A clock
            given (the node's, say) is its owner's to close.
        output: where what a plugin prints goes (`OutputSink`); None: to this
            process's stdout and stderr, as ever.
    """

    name = "inproc"

    def __init__(self, *, max_workers: int = 32, cancel_grace: float = 2.0,
                 clock: Clock | None = None, output: OutputSink | None = None) -> None:
        if cancel_grace < 0:
            raise ValueError(f"cancel_grace must be >= 0 (got {cancel_grace!r})")
        self.cancel_grace = cancel_grace
        self.output = output
        self._pool = WorkerPool(max_workers, name="noetl-inproc")
        self._loop = LoopThread(name="noetl-inproc-async")
        self._own_clock: MonotonicClock | None = None
        if clock is None:
            clock = self._own_clock = MonotonicClock()
        self._clock = clock
        self._ledger: Ledger[InprocAttempt] = Ledger(self.name)

    def start(self, plugin: PluginInfo, attempt: Attempt) -> InprocAttempt:
        """Queue `attempt` on the pool and return at once (see `Runner.start`).

        A plugin whose manifest says `instant: true` runs right here, on the
        caller's thread, and the attempt returned has its outcome already.
        """
        check_start(self.name, plugin, attempt)
        handle = InprocAttempt(self, plugin, attempt)
        self._ledger.admit(handle)
        handle.add_done_callback(lambda _outcome: self._ledger.forget(handle))
        if plugin.instant:
            # It ends at once (its manifest says so): a hop to the pool and back
            # would cost more than the plugin. It returns settled.
            handle.run()
            return handle
        if attempt.timeout is not None:
            handle.stop_after(attempt.timeout, TIMEOUT)
        if is_async(plugin):
            handle.on_loop = self._loop
            self._loop.submit(handle.run_async())
        else:
            self._pool.submit(handle.run)
        return handle

    def run_now(self, plugin: PluginInfo, attempt: Attempt) -> Outcome:
        """Run `attempt` of an `instant` plugin on this thread (`InstantRunner`).

        What `start()` does for an instant plugin, without the handle: the
        attempt is never running between calls, so there is nothing to
        cancel, time out or keep track of.
        """
        check_start(self.name, plugin, attempt)
        if not plugin.instant:
            raise ValueError(f"plugin {plugin.name!r} is not instant: start() it")
        self._ledger.admit()
        ctx = Context(attempt=attempt, plugin=plugin, runner=self.name)
        with capture(self.output, attempt):
            outcome = invoke(plugin, ctx, started_at=time.time())
        if self.output is not None:
            self.output.end(attempt)
        return outcome

    def statistics(self) -> RunnerStatistics:
        return self._ledger.statistics()

    def close(self, *, timeout: float = 10.0) -> None:
        """Cancel what runs, wait for it (abandoning what will not stop), end the threads."""
        deadline = self._ledger.close(timeout, InprocAttempt.wait_or_abandon)
        if self._own_clock is not None:
            self._own_clock.close(timeout=max(0.0, deadline - time.monotonic()))
        self._pool.close(timeout=max(0.0, deadline - time.monotonic()))
        self._loop.close(timeout=max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> InprocRunner:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _abandon(self, thread: threading.Thread) -> None:
        """A thread stuck in a plugin that will not stop leaves the pool."""
        self._pool.retire(thread)
        self._ledger.count_abandoned()


class InprocAttempt(AttemptHandle):
    """An attempt on the in-process runner (a `RunningAttempt`)."""

    def wait_or_abandon(self, timeout: float) -> None:
        """Wait up to `timeout` for the outcome, then abandon a plugin that will not stop."""
        if self.wait(timeout) is None:
            self.abandon()

    def __init__(self, runner: InprocRunner, plugin: PluginInfo, attempt: Attempt) -> None:
        super().__init__(attempt)
        self._runner = runner
        self._plugin = plugin
        deadline = None if attempt.timeout is None else time.monotonic() + attempt.timeout
        self.ctx = Context(attempt=attempt, plugin=plugin, runner=runner.name, deadline=deadline)
        self._thread: threading.Thread | None = None
        self._task: asyncio.Task[None] | None = None
        self.on_loop: LoopThread | None = None
        """The loop it runs on, an async plugin's attempt (`run_async`); else None."""
        self._stop_reason: str | None = None
        self._timers: list[TimerHandle] = []

    def cancel(self) -> None:
        self._stop(CANCELLED)

    def stop_after(self, delay: float, reason: str) -> None:
        """Stop the attempt for `reason` `delay` seconds from now (its timeout)."""
        self._timers.append(self._runner._clock.call_later(delay, lambda: self._stop(reason)))

    def run(self) -> None:
        """The pool thread's job: run the plugin unless the attempt was stopped first."""
        with self._cond:
            if self._stop_reason is not None or self._outcome is not None:
                return
            self._thread = threading.current_thread()
            self.started_at = time.time()  # after its wait for a pool thread
        try:
            with capture(self._runner.output, self.attempt):
                outcome = invoke(self._plugin, self.ctx, started_at=self.started_at)
        except BaseException as error:  # invoke() reports what plugins raise; not this
            outcome = Outcome.failed(CRASH, f"the inproc runner failed: {error!r}",
                                     started_at=self.started_at)
        self._end(outcome)

    async def run_async(self) -> None:
        """An async plugin's attempt, as a task on the runner's loop: `run`, without a thread."""
        with self._cond:
            if self._stop_reason is not None or self._outcome is not None:
                return
            self._task = asyncio.current_task()
            self.started_at = time.time()
        try:
            with capture(self._runner.output, self.attempt):
                outcome = await invoke_async(self._plugin, self.ctx, started_at=self.started_at)
        except asyncio.CancelledError:  # _stop() cancelled the task
            outcome = Outcome.failed(CANCELLED, stop_message(self.attempt, CANCELLED),
                                     started_at=self.started_at)
        except BaseException as error:
            outcome = Outcome.failed(CRASH, f"the inproc runner failed: {error!r}",
                                     started_at=self.started_at)
        self._end(outcome)

    def _end(self, outcome: Outcome) -> None:
        """Settle the attempt with `outcome`, or with the stop that came while it ran."""
        if self._runner.output is not None:  # its lines before its end, on the same wire
            self._runner.output.end(self.attempt)
        with self._cond:
            reason = self._stop_reason
        if reason is not None:  # stopped while it ran: the runner's verdict wins
            outcome = Outcome.failed(reason, stop_message(self.attempt, reason),
                                     started_at=self.started_at)
        self._settle(outcome)
        for timer in self._timers:
            timer.cancel()

    def abandon(self) -> None:
        """Report the attempt as stopped although its plugin still runs; retire its thread."""
        with self._cond:
            if self._outcome is not None:
                return
            thread, reason = self._thread, self._stop_reason or CANCELLED
        grace = self._runner.cancel_grace
        message = (f"{stop_message(self.attempt, reason)}; the plugin did not return within "
                   f"{grace:g}s of being told to stop, so its thread was abandoned")
        settled = self._settle(Outcome.failed(reason, message, started_at=self.started_at))
        if settled and thread is not None:
            self._runner._abandon(thread)

    def _stop(self, reason: str) -> None:
        with self._cond:
            if self._outcome is not None or self._stop_reason is not None:
                return
            self._stop_reason = reason
            started = self._thread is not None or self._task is not None
            task = self._task
        self.ctx.cancelled.set()
        if not started:  # still queued: it never runs
            self._settle(Outcome.failed(reason, stop_message(self.attempt, reason),
                                        started_at=self.started_at))
            return
        if task is not None and self.on_loop is not None:
            self.on_loop.call_soon(task.cancel)  # it ends at once, its outcome with it
        try:
            self._timers.append(self._runner._clock.call_later(
                self._runner.cancel_grace, self.abandon))
        except RuntimeError:  # the runner is closing: close() abandons what is left
            pass
