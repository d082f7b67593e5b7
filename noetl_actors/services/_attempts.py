"""The attempts a worker runs: the runner's `Attempt` of a command, what the worker has
said of each, and the claimed commands waiting to start on its thread."""

from __future__ import annotations

import threading
from collections import deque

import attrs

from noetl_actors.runners import Attempt, RunningAttempt
from noetl_actors.runtime import Command

__all__ = ["START_BATCH", "Running", "StartQueue", "attempt_of"]

START_BATCH = 64
"""Claimed commands a worker starts in one turn of its thread, before what else waits in
its mailbox (its heartbeats among them) has a turn."""


def attempt_of(command: Command) -> Attempt:
    """What a runner runs for `command`."""
    return Attempt(
        command_id=command.id, workflow_id=command.workflow_id, task=command.task,
        step=command.step, number=command.attempt, plugin=command.plugin,
        input=command.input, timeout=command.timeout,
    )


@attrs.define(eq=False)
class Running:
    """An attempt a worker runs, and what it has said about it so far."""

    command: Command
    attempt: RunningAttempt
    since: float
    accepted: bool
    """`accepted` was sent (the command waited in the queue)."""
    announced: bool = False
    """`started` was sent: heartbeats follow."""


class StartQueue:
    """Claimed commands waiting to start on a worker's thread, from any thread.

    One message in the worker's mailbox stands for all of them, not one each: a
    burst of 10,000 claimed commands had queued the worker's heartbeat timer
    behind 10,000 starts (tens of seconds), and their steps, hearing nothing,
    took workers for lost. The worker takes `START_BATCH` at a time.
    """

    def __init__(self) -> None:
        self._commands: deque[Command] = deque()
        self._posted = False
        self._lock = threading.Lock()

    def put(self, command: Command) -> bool:
        """Queue `command`; True if the worker must be told (no message stands for the
        queue now)."""
        with self._lock:
            self._commands.append(command)
            if self._posted:
                return False
            self._posted = True
            return True

    def take(self, most: int = START_BATCH) -> tuple[list[Command], bool]:
        """Up to `most` commands, and whether some are left (the worker tells itself
        again; else the next `put` does)."""
        with self._lock:
            taken = [self._commands.popleft() for _ in range(min(most, len(self._commands)))]
            more = bool(self._commands)
            self._posted = more
            return taken, more
