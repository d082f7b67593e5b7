"""Steps' output lines on NATS: `LogPublisher` (the workers' side) and where they live.

    noetl.log.<workflow_id>.<task>=<step>.<attempt>    a chunk of one attempt's lines

A worker's runners hand what an attempt's plugin prints to the node's
`LogPublisher` (an `OutputSink`), which cuts it into lines and publishes
them in chunks: at most `CHUNK_BYTES` a message, at most `FLUSH_AFTER`
seconds after a line was written. The ``NOETL_LOGS`` JetStream stream
keeps them (`LOGS_MAX_AGE`, `LOGS_MAX_BYTES`; the oldest go first), so any
node and `noetl logs` read them after the worker that ran the step is gone,
with no access to where it ran (a pod's log included). Bounded: a line is
cut at `LINE_LIMIT` characters, and an attempt keeps its first
`ATTEMPT_LIMIT` bytes; its last chunk (``"end": true``) says how many
lines were left out. An attempt that printed nothing publishes nothing.

A chunk: ``{"task", "step", "attempt", "seq", "lines": [...], "end": bool,
"dropped": int}`` (``seq`` from 0 per attempt).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from noetl_actors.bridge import Bridge
    from noetl_actors.clock import Clock, TimerHandle
    from noetl_actors.runners import Attempt

__all__ = [
    "ATTEMPT_LIMIT",
    "CHUNK_BYTES",
    "LINE_LIMIT",
    "LOGS_MAX_AGE",
    "LOGS_MAX_BYTES",
    "LOGS_STREAM",
    "LOGS_SUBJECTS",
    "LogPublisher",
    "ensure_logs_stream",
    "log_subject",
    "logs_filter",
]

LOGS_STREAM = "NOETL_LOGS"
LOGS_SUBJECTS = "noetl.log.>"
LOGS_MAX_AGE = 7 * 24 * 3600.0
"""Seconds the stream keeps a chunk: a week."""
LOGS_MAX_BYTES = 1 << 30
"""Bytes the stream keeps in all (1 GiB); past that the oldest chunks go first."""
CHUNK_BYTES = 32 * 1024
"""A chunk is published once its lines reach this many bytes (or `FLUSH_AFTER`)."""
FLUSH_AFTER = 0.2
"""Seconds a written line waits, at most, to be published."""
LINE_LIMIT = 16 * 1024
"""Characters of one line kept; the rest is cut, and the line says so."""
ATTEMPT_LIMIT = 4 * 1024 * 1024
"""Bytes of lines one attempt keeps; later lines are counted, not kept."""
ENDED = 10_000
"""Attempts remembered as ended (a write after the end is dropped, not a new log)."""

logger = logging.getLogger("noetl_actors.services")


def log_subject(workflow_id: str, step_id: str, attempt: int) -> str:
    """``noetl.log.<workflow_id>.<step_id>.<attempt>``; `step_id` is ``task=step``."""
    return f"noetl.log.{workflow_id}.{step_id}.{attempt}"


def ensure_logs_stream(bridge: Bridge, *, timeout: float) -> None:
    """Create ``NOETL_LOGS`` with its limits, or update it to them."""
    bridge.ensure_stream(LOGS_STREAM, [LOGS_SUBJECTS], max_age=LOGS_MAX_AGE,
                         max_bytes=LOGS_MAX_BYTES, timeout=timeout)


def logs_filter(workflow_id: str) -> str:
    """The subjects of every line of a workflow."""
    return f"noetl.log.{workflow_id}.>"


class _Lines:
    """One attempt's lines not yet published, and what it has published."""

    def __init__(self) -> None:
        self.partial = ""
        self.lines: list[str] = []
        self.size = 0
        self.kept = 0
        self.dropped = 0
        self.seq = 0
        self.timer: TimerHandle | None = None


class LogPublisher:
    """An `OutputSink` that publishes attempts' lines in chunks. Thread-safe.

    Args:
        publish: ``publish(subject, data)``, which must not block (`Bridge.publish`).
        clock: runs the flush timers.
    """

    def __init__(self, publish: Callable[[str, Mapping[str, Any]], None], clock: Clock, *,
                 flush_after: float = FLUSH_AFTER, chunk_bytes: int = CHUNK_BYTES,
                 line_limit: int = LINE_LIMIT, attempt_limit: int = ATTEMPT_LIMIT) -> None:
        self._publish = publish
        self._clock = clock
        self._flush_after = flush_after
        self._chunk_bytes = chunk_bytes
        self._line_limit = line_limit
        self._attempt_limit = attempt_limit
        self._lock = threading.Lock()
        self._open: dict[str, _Lines] = {}
        """By command id."""
        self._ended: OrderedDict[str, None] = OrderedDict()

    def write(self, attempt: Attempt, text: str) -> None:
        if not text:
            return
        with self._lock:
            key = attempt.command_id
            state = self._open.get(key)
            if state is None:
                if key in self._ended:
                    return
                state = self._open[key] = _Lines()
            *whole, state.partial = (state.partial + text).split("\n")
            for line in whole:
                self._add(state, line.removesuffix("\r"))
            if len(state.partial) > self._line_limit:
                self._add(state, state.partial)
                state.partial = ""
            if state.size >= self._chunk_bytes:
                self._flush(attempt, state, end=False)
            elif state.lines and state.timer is None:
                state.timer = self._clock.call_later(
                    self._flush_after, lambda: self._flush_later(attempt))

    def end(self, attempt: Attempt) -> None:
        with self._lock:
            state = self._open.pop(attempt.command_id, None)
            if state is None:
                return  # it printed nothing: nothing to say
            self._ended[attempt.command_id] = None
            if len(self._ended) > ENDED:
                self._ended.popitem(last=False)
            if state.partial:
                self._add(state, state.partial)
            if state.timer is not None:
                state.timer.cancel()
            self._flush(attempt, state, end=True)

    def _add(self, state: _Lines, line: str) -> None:
        if len(line) > self._line_limit:
            line = f"{line[:self._line_limit]} [noetl: line cut at {self._line_limit} " \
                   f"characters, {len(line)} in all]"
        size = len(line.encode("utf-8", "replace")) + 1
        if state.kept + size > self._attempt_limit:
            state.dropped += 1
            return
        state.kept += size
        state.size += size
        state.lines.append(line)

    def _flush_later(self, attempt: Attempt) -> None:
        with self._lock:
            state = self._open.get(attempt.command_id)
            if state is not None:
                state.timer = None
                self._flush(attempt, state, end=False)

    def _flush(self, attempt: Attempt, state: _Lines, *, end: bool) -> None:
        """Publish what `state` holds (under the lock: chunks leave in order)."""
        if not state.lines and not end:
            return
        data = {"task": attempt.task, "step": attempt.step, "attempt": attempt.number,
                "seq": state.seq, "lines": state.lines, "end": end, "dropped": state.dropped}
        state.seq += 1
        state.lines, state.size = [], 0
        subject = log_subject(attempt.workflow_id, f"{attempt.task}={attempt.step}",
                              attempt.number)
        try:
            self._publish(subject, data)
        except Exception as error:  # no connection and a full buffer: lines are not worth more
            logger.debug("could not publish lines of %s: %r", attempt.command_id, error)
