"""Small actors and recorders that the supervision tests share."""

from __future__ import annotations

import threading
import time
from typing import Any

from noetl_actors.supervision import EventKind, LifecycleEvent, SupervisedActor

WAIT = 5.0


class Recorder:
    """An observer that keeps every lifecycle event and lets a test wait for one."""

    def __init__(self) -> None:
        self.events: list[LifecycleEvent] = []
        self._condition = threading.Condition()

    def __call__(self, event: LifecycleEvent) -> None:
        with self._condition:
            self.events.append(event)
            self._condition.notify_all()

    def of(self, kind: EventKind, path: str | None = None) -> list[LifecycleEvent]:
        with self._condition:
            return [e for e in self.events if e.kind is kind and (path is None or e.path == path)]

    def wait_for(
        self, kind: EventKind, path: str | None = None, *, count: int = 1, timeout: float = WAIT
    ) -> list[LifecycleEvent]:
        deadline = time.monotonic() + timeout
        with self._condition:
            while True:
                found = [
                    e for e in self.events
                    if e.kind is kind and (path is None or e.path == path)
                ]
                if len(found) >= count:
                    return found
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"waited {timeout}s for {count} x {kind.value} {path or ''}; "
                        f"saw {[(e.kind.value, e.path) for e in self.events]}"
                    )
                self._condition.wait(remaining)

    def sequence(self, *kinds: EventKind) -> list[tuple[str, str]]:
        with self._condition:
            return [(e.kind.value, e.path) for e in self.events if not kinds or e.kind in kinds]


class Worker(SupervisedActor):
    """Answers 'ping' with its URN; 'crash' raises; 'exit' stops itself normally."""

    def __init__(self, log: list[str] | None = None, name: str = "") -> None:
        super().__init__()
        self.log = log
        self.name = name

    def on_start(self) -> None:
        if self.log is not None:
            self.log.append(f"start {self.name}")

    def on_stop(self) -> None:
        if self.log is not None:
            self.log.append(f"stop {self.name}")

    def on_receive(self, message: Any) -> Any:
        if message == "crash":
            raise ValueError(f"{self.name or 'worker'} crashed on purpose")
        if message == "exit":
            self.stop()
            return None
        if message == "ping":
            return self.actor_urn
        return message

    def add(self, a: int, b: int) -> int:
        return a + b

    def fail(self) -> None:
        raise RuntimeError("proxy call failed")
