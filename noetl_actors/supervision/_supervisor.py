"""`Supervisor`: starts children, watches them, restarts them by a strategy.

`SupervisorCore` (`_core.py`) is the engine and holds the hooks a subclass
may change; this adds the verbs of `SupervisorRef` (dynamic children, the
snapshot), each run on the supervisor's thread between two messages.
"""

from __future__ import annotations

import time
from typing import Any

import pykka

from noetl_actors.errors import ChildAlreadyExists, ChildNotFound, ChildRunning, SupervisionError
from noetl_actors.supervision._actor import Crash, SupervisedActor
from noetl_actors.supervision._address import Address
from noetl_actors.supervision._child import Call, Child, subtree
from noetl_actors.supervision._core import SupervisorCore
from noetl_actors.supervision._events import EventKind
from noetl_actors.supervision._specs import ChildSpec, ChildType, Restart
from noetl_actors.supervision._state import ActorState, ChildCounts, ChildInfo

__all__ = ["Supervisor"]

SNAPSHOT_TIMEOUT = 1.0


class Supervisor(SupervisorCore):
    """An actor whose job is to start, watch and restart its children.

    Build it with `start_supervisor()` (a root) or put it under another
    supervisor with `supervisor_spec()`; talk to it through `SupervisorRef`.
    It runs its `hosted` children on its own thread (docs/supervision.md);
    a hosted supervisor runs, with them, on its own supervisor's thread.
    Subclass it through its hooks only (docs/supervision.md, "Extending a
    supervisor: the hooks").
    """

    # -- dynamic children (called through SupervisorRef) ---------------------

    def start_child(self, spec: ChildSpec) -> pykka.ActorRef[Any]:
        if spec.id in self._children:
            raise ChildAlreadyExists(f"{self.path} already has a child {spec.id!r}")
        child = self._new_child(spec)
        self._children[spec.id] = child
        failure = self._start(child)
        if failure is not None:
            del self._children[spec.id]
            self._close(child, [])
            raise SupervisionError(failure)
        self._emit(EventKind.STARTED, child)
        assert child.actor is not None
        return child.actor.actor_ref

    def terminate_child(self, child_id: str) -> None:
        child = self._child(child_id)
        child.cancel_timer()
        if child.actor is not None:
            self._stop_child(child, closing=True)
        else:
            self._close(child, [])
        if child.spec.restart is Restart.TEMPORARY:
            del self._children[child_id]

    def restart_child(self, child_id: str) -> pykka.ActorRef[Any]:
        child = self._child(child_id)
        if child.state is not ActorState.STOPPED:
            raise ChildRunning(f"{child.address.path} is {child.state.value}, not stopped")
        self.context.reopen(child.address)
        child.state = ActorState.STARTING
        failure = self._start(child)
        if failure is not None:
            self._close(child, [])
            raise SupervisionError(failure)
        self._emit(EventKind.STARTED, child)
        assert child.actor is not None
        return child.actor.actor_ref

    def crash_child(self, child_id: str, why: str) -> None:
        child = self._child(child_id)
        if child.actor is None:
            raise ChildRunning(f"{child.address.path} is {child.state.value}, not running")
        child.actor.actor_ref.tell(Crash(why))

    def delete_child(self, child_id: str) -> None:
        child = self._child(child_id)
        if child.state is not ActorState.STOPPED:
            raise ChildRunning(f"{child.address.path} is {child.state.value}; terminate it first")
        del self._children[child_id]

    def which_children(self) -> list[ChildInfo]:
        return [
            ChildInfo(
                id=c.id,
                ref=c.actor.actor_ref if c.actor is not None else None,
                type=c.spec.type,
                state=c.state,
                restart=c.spec.restart,
            )
            for c in self._children.values()
        ]

    def count_children(self) -> ChildCounts:
        children = list(self._children.values())
        return ChildCounts(
            specs=len(children),
            active=sum(c.actor is not None for c in children),
            supervisors=sum(c.spec.type is ChildType.SUPERVISOR for c in children),
            workers=sum(c.spec.type is ChildType.WORKER for c in children),
        )

    def address(self, child_id: str) -> Address:
        return self._child(child_id).address

    def child_actor(self, child_id: str) -> SupervisedActor | None:
        return self._child(child_id).actor

    def _child(self, child_id: str) -> Child:
        try:
            return self._children[child_id]
        except KeyError:
            raise ChildNotFound(f"{self.path} has no child {child_id!r}") from None

    # -- observing -----------------------------------------------------------

    def snapshot(self, budget: float = SNAPSHOT_TIMEOUT) -> dict[str, Any]:
        """A JSON-ready picture of this supervisor and everything under it.

        Child supervisors are asked all at once, each given half of what is
        left of `budget` for their own children, so one stuck supervisor
        shows as ``unresponsive`` without hiding its healthy parents.
        """
        deadline = time.monotonic() + budget
        asks: dict[str, pykka.Future[Any] | dict[str, Any]] = {}
        for child in self._children.values():
            actor = child.actor
            if not isinstance(actor, Supervisor):
                continue
            if actor._on_host_thread():  # hosted here: asking it would wait for this thread
                asks[child.id] = actor.snapshot(budget / 2)
            else:
                asks[child.id] = actor.actor_ref.ask(
                    Call(Supervisor.snapshot, (budget / 2,)), block=False)
        now = self.context.clock.now()
        within = self.flags.within
        children: list[dict[str, Any]] = []
        for child in self._children.values():
            entry = child.picture(self.flags, now)
            if child.id in asks:
                entry.update(subtree(asks[child.id], deadline))
            children.append(entry)
        return {
            "id": self.path.rsplit("/", 1)[-1],
            "path": self.path,
            "kind": ChildType.SUPERVISOR.value,
            "strategy": self.flags.strategy.value,
            "state": ActorState.RUNNING.value,
            "intensity": {
                "restarts_in_window": self._intensity.in_window(now),
                "max_restarts": self.flags.max_restarts,
                "within": within,
            },
            "started_at": self.started_at,
            "children": children,
        }
