"""`noetl demo`: a supervision tree that crashes, restarts and escalates, live.

It builds a small tree shaped like a workflow, prints it, crashes children
under each strategy, shows every lifecycle event as it happens, lets one
subtree exhaust its restart intensity so that its parent restarts it
(escalation), and prints the tree again with its restart counts.
"""

from __future__ import annotations

import functools
import threading
from typing import Any

from rich.console import Console
from rich.rule import Rule

from noetl_actors.console._tree import event_line, snapshot_tree
from noetl_actors.supervision import (
    Backoff,
    ChildSpec,
    EventKind,
    LifecycleEvent,
    Strategy,
    SupervisedActor,
    SupervisorFlags,
    SupervisorRef,
    start_supervisor,
    supervisor_spec,
)

__all__ = ["run_demo"]

WAIT = 10.0


class DemoStep(SupervisedActor):
    """A step that answers 'ping' and crashes on 'crash'."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name

    def on_receive(self, message: Any) -> Any:
        if message == "crash":
            raise RuntimeError(f"{self.name}: simulated failure")
        return "pong"


class _LiveLog:
    """Prints each event as it happens and lets the demo wait for one."""

    def __init__(self, console: Console) -> None:
        self._console = console
        self._condition = threading.Condition()
        self._seen: list[LifecycleEvent] = []

    def __call__(self, event: LifecycleEvent) -> None:
        self._console.print(event_line(event))
        with self._condition:
            self._seen.append(event)
            self._condition.notify_all()

    def wait_for(self, *wanted: tuple[EventKind, str]) -> EventKind:
        """Wait for the first of the wanted (kind, path) events; return its kind."""

        def seen_up_to() -> int:
            """How many events up to the first wanted one (0: none seen yet)."""
            return next((n for n, e in enumerate(self._seen, 1) if (e.kind, e.path) in wanted),
                        0)

        with self._condition:
            count = self._condition.wait_for(seen_up_to, timeout=WAIT)
            if not count:
                raise TimeoutError(f"none of {wanted} happened within {WAIT}s")
            kind = self._seen[count - 1].kind
            # Forget it and what came before, not what came after: the next wait may
            # be for an event that followed this one closely (a give-up, then a restart).
            del self._seen[:count]
            return kind


def _steps(*names: str) -> list[ChildSpec]:
    return [ChildSpec(id=name, start=functools.partial(DemoStep, name)) for name in names]


def _build(log: _LiveLog) -> SupervisorRef:
    extract = supervisor_spec(
        "extract",
        SupervisorFlags(strategy=Strategy.ONE_FOR_ALL, max_restarts=2, within=10,
                        backoff=Backoff(initial=0.05, max=0.5, jitter=0.2)),
        _steps("download", "parse"),
    )
    transform = supervisor_spec(
        "transform",
        SupervisorFlags(strategy=Strategy.REST_FOR_ONE, max_restarts=3, within=10),
        _steps("clean", "join", "aggregate"),
    )
    return start_supervisor(
        SupervisorFlags(strategy=Strategy.ONE_FOR_ONE, max_restarts=5, within=10),
        [extract, transform, *_steps("notify")],
        id="demo",
        observers=[log],
    )


def run_demo(console: Console | None = None) -> None:
    """Run the demo on `console` (a fresh stdout console by default)."""
    console = console or Console()
    log = _LiveLog(console)
    console.print(Rule("starting a supervision tree"))
    root = _build(log)
    try:
        console.print(snapshot_tree(root.snapshot()))

        console.print(Rule("one_for_all: parse crashes, extract restarts download and parse"))
        root.child_supervisor("extract").address("parse").tell("crash")
        log.wait_for((EventKind.RESTARTED, "/demo/extract/parse"))

        console.print(Rule("rest_for_one: join crashes, transform restarts join and aggregate"))
        root.child_supervisor("transform").address("join").tell("crash")
        log.wait_for((EventKind.RESTARTED, "/demo/transform/aggregate"))

        console.print(Rule("escalation: download keeps crashing, extract gives up"))
        outcome = EventKind.RESTARTED
        while outcome is EventKind.RESTARTED:
            download = root.child_supervisor("extract").address("download")
            download.ask("ping", timeout=WAIT)  # the latest incarnation is up
            download.tell("crash")
            outcome = log.wait_for(
                (EventKind.RESTARTED, "/demo/extract/parse"), (EventKind.GAVE_UP, "/demo/extract")
            )
        console.print(Rule("/demo restarts the extract subtree it gave up on"))
        log.wait_for((EventKind.RESTARTED, "/demo/extract"))
        console.print(Rule("the tree now"))
        console.print(snapshot_tree(root.snapshot()))
    finally:
        console.print(Rule("stopping: children stop in reverse start order"))
        reason = root.stop(timeout=WAIT)
        console.print(f"tree stopped: {reason.describe() if reason else 'still running?'}")
