"""`Supervisor`: starts children, watches them, restarts them by a strategy.

Everything here runs on the supervisor's own thread, one message at a time:
a child's exit arrives as a `_ChildExit` message, a backoff timer fires as a
`_RestartDue` message, and the dynamic-child verbs arrive as `_Call` asks
(see `SupervisorRef`). Children start synchronously, in order: the
supervisor waits for each child's `on_start` before it starts the next.

A restart is never started from inside the decision that asks for it: the
decision tells the supervisor `_RestartDue` (at once, or after a backoff
timer), as OTP's `try_again_restart` does. So a child that fails to start
again and again is counted against intensity each time, never recursed on.
"""

from __future__ import annotations

import itertools
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import attrs
import pykka
from pykka._envelope import Envelope

from noetl_actors.errors import (
    ChildAlreadyExists,
    ChildError,
    ChildNotFound,
    ChildRunning,
    SupervisionError,
)
from noetl_actors.supervision._actor import Crash, SupervisedActor, drain, tell_if_alive
from noetl_actors.supervision._address import Address
from noetl_actors.supervision._clock import Clock, MonotonicClock, TimerHandle
from noetl_actors.supervision._events import EventKind, LifecycleEvent, Observer
from noetl_actors.supervision._intensity import RestartIntensity
from noetl_actors.supervision._reasons import ExitKind, ExitReason
from noetl_actors.supervision._specs import (
    INFINITY,
    AutoShutdown,
    ChildSpec,
    ChildType,
    Restart,
    Strategy,
    SupervisorFlags,
)
from noetl_actors.supervision._state import ActorState, ChildCounts, ChildInfo

__all__ = ["Supervisor", "TreeContext"]

logger = logging.getLogger("noetl_actors.supervision")

KILL_WAIT = 0.5
"""Seconds to wait for a killed child's thread before reporting it abandoned."""
SNAPSHOT_TIMEOUT = 1.0
LAST_EXITS_KEPT = 5


@attrs.define
class TreeContext:
    """What every supervisor of one tree shares: the clock, the observers, the addresses.

    Addresses live here, by path, so that an address outlives the
    incarnation of the supervisor that made it: a child's address keeps
    working when its supervisor is restarted, until the tree decides that
    the child will not come back (then it is closed).
    """

    clock: Clock = attrs.field(factory=MonotonicClock)
    observers: tuple[Observer, ...] = ()
    rng: random.Random = attrs.field(factory=random.Random)
    _addresses: dict[str, Address] = attrs.field(factory=dict, init=False)
    _under: dict[str, set[str]] = attrs.field(factory=dict, init=False)
    """Paths of the addresses directly under each path: closing a subtree walks
    it, instead of scanning every address of the tree."""
    _lock: threading.Lock = attrs.field(factory=threading.Lock, init=False)

    def address(self, path: str, on_dead_letter: Callable[[Any], None]) -> Address:
        """The open address of `path`, made if there is none."""
        with self._lock:
            address = self._addresses.get(path)
            if address is None or address.closed:
                address = Address(path, on_dead_letter=on_dead_letter)
                self._addresses[path] = address
                self._under.setdefault(path.rsplit("/", 1)[0], set()).add(path)
            return address

    def close_addresses(
        self, path: str, *, include_path: bool = True, keep: Iterable[str] = ()
    ) -> None:
        """Close the addresses of `path` and everything under it, except `keep` subtrees."""
        kept = set(keep)
        closing: list[Address] = []
        with self._lock:
            todo = [path] if include_path else list(self._under.get(path, ()))
            while todo:
                current = todo.pop()
                if current in kept:
                    continue
                todo.extend(self._under.pop(current, ()))
                address = self._addresses.pop(current, None)
                if address is not None:
                    closing.append(address)
                    self._under.get(current.rsplit("/", 1)[0], set()).discard(current)
        for address in closing:
            address._close()

    def emit(self, kind: EventKind, path: str, **fields: Any) -> None:
        """Tell every observer of the tree a `LifecycleEvent`; a failing one is logged."""
        if not self.observers:
            return
        event = LifecycleEvent(kind=kind, path=path, **fields)
        for observer in self.observers:
            try:
                observer(event)
            except Exception:
                logger.exception("observer %r failed on %s (ignored)", observer, event)

    def reopen(self, address: Address) -> None:
        """Open a closed address again (`restart_child` of a terminated child)."""
        with self._lock:
            address._reopen()
            self._addresses[address.path] = address
            self._under.setdefault(address.path.rsplit("/", 1)[0], set()).add(address.path)


@attrs.frozen
class _ChildExit:
    child_id: str
    actor: SupervisedActor
    reason: ExitReason


@attrs.frozen
class _RestartDue:
    child_ids: tuple[str, ...]
    token: int


@attrs.frozen
class _Call:
    method: Callable[..., Any]
    args: tuple[Any, ...] = ()


@attrs.frozen
class _Refused:
    """A verb the supervisor refused: the caller's mistake, not the supervisor's crash."""

    error: ChildError | SupervisionError


@attrs.define(eq=False)
class _Child:
    spec: ChildSpec
    address: Address
    state: ActorState = ActorState.STARTING
    actor: SupervisedActor | None = None
    token: int = 0
    total_restarts: int = 0
    restart_times: deque[float] = attrs.field(factory=deque)
    consecutive: int = 0
    last_exits: deque[tuple[ExitReason, float]] = attrs.field(
        factory=lambda: deque(maxlen=LAST_EXITS_KEPT)
    )
    started_at: float | None = None
    running_since: float | None = None
    """Clock time of the last successful start; None after a failure."""
    timer: TimerHandle | None = None
    restart_due: float = 0.0
    """Clock time its backoff ends, while it is `BACKING_OFF`."""

    @property
    def id(self) -> str:
        return self.spec.id


class Supervisor(SupervisedActor):
    """An actor whose job is to start, watch and restart its children.

    Build it with `start_supervisor()` (a root) or put it under another
    supervisor with `supervisor_spec()`; talk to it through `SupervisorRef`.
    It runs its `hosted` children on its own thread (docs/supervision.md);
    a hosted supervisor runs, with them, on its own supervisor's thread.
    """

    def __init__(
        self,
        flags: SupervisorFlags,
        children: Sequence[ChildSpec] = (),
        *,
        context: TreeContext | None = None,
    ) -> None:
        super().__init__()
        ids = [spec.id for spec in children]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"duplicate child ids: {', '.join(duplicates)}")
        self.flags = flags
        self._context = context
        self._initial_specs = tuple(children)
        self._children: dict[str, _Child] = {}
        self._intensity = RestartIntensity(flags.max_restarts, flags.within)
        self._stopping: SupervisedActor | None = None
        self.started_at: float | None = None

    @property
    def context(self) -> TreeContext:
        if self._context is None:
            self._context = TreeContext()
        return self._context

    # -- life cycle ----------------------------------------------------------

    def on_start(self) -> None:
        self.started_at = time.time()
        for spec in self._initial_specs:
            self._children[spec.id] = self._new_child(spec)
        # Dynamic children of an earlier incarnation do not come back.
        self.context.close_addresses(
            self.path, include_path=False, keep=[c.address.path for c in self._children.values()]
        )
        self._start_children(list(self._children), token=0)

    def _before_exit(self, reason: ExitReason, exc_info: Any) -> None:
        # Children's addresses stay open (messages wait): whoever supervises
        # this supervisor decides whether they come back, and closes them if not.
        for child in reversed(list(self._children.values())):
            self._cancel_timer(child)
            if child.actor is not None:
                self._stop_child(child, closing=False)
        super()._before_exit(reason, exc_info)
        # Its specs' `start`s are often its own bound methods: a cycle through
        # every child's record that only a full GC pass would free. An exited
        # supervisor is never started again (a restart makes a new one).
        self._children = {}
        self._initial_specs = ()

    def _kill(self) -> None:
        """Kill this supervisor and, at once, every actor under it.

        Runs on the killer's thread. `tuple()` of a dict view is one C call
        that holds the GIL, so reading the children here is safe.
        """
        super()._kill()
        for child in tuple(self._children.values()):
            if child.actor is not None:
                child.actor._kill()
        stopping = self._stopping
        if stopping is not None:
            stopping._kill()

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, _ChildExit):
            self._on_child_exit(message)
        elif isinstance(message, _RestartDue):
            self._start_children(list(message.child_ids), token=message.token)
        elif isinstance(message, _Call):
            try:
                return message.method(self, *message.args)
            except (ChildError, SupervisionError) as error:
                return _Refused(error)
        else:
            return super().on_receive(message)
        return None

    # -- starting ------------------------------------------------------------

    def _new_child(self, spec: ChildSpec) -> _Child:
        path = f"{self.path}/{spec.id}"
        context = self.context  # not `self`: an address outlives this incarnation
        address = self.context.address(
            path, lambda m: context.emit(EventKind.DEAD_LETTER, path, detail=repr(m)[:200]))
        return _Child(spec=spec, address=address)

    def _start_children(self, child_ids: Iterable[str], *, token: int) -> None:
        """Start, in order, each listed child still waiting for this token."""
        waiting = []
        for child_id in child_ids:
            child = self._children.get(child_id)
            if child is not None and child.actor is None and child.token == token:
                if child.state is ActorState.BACKING_OFF:
                    child.state = ActorState.RESTARTING  # its wait is over
                waiting.append(child)
        for child in waiting:
            if self._requested_exit is not None:
                return
            if child.actor is not None or child.token != token:
                continue  # started, or ordered again, while an earlier one started
            if child.state not in (ActorState.STARTING, ActorState.RESTARTING):
                continue
            if not self._may_start(child):
                continue
            restarting = child.started_at is not None
            failure = self._start(child)
            if failure is not None:
                self._handle_exit(child, failure, [])
            elif restarting:
                self._count_restart(child)
                self._emit(EventKind.RESTARTED, child, restarts=child.total_restarts)
            else:
                self._emit(EventKind.STARTED, child)

    def _may_start(self, child: _Child) -> bool:
        """Whether a child waiting to start may start now (True: all start at once).

        Supervisors whose children run one after another (a task's steps) or
        after others (a workflow's tasks) say no until its turn, then call
        `_start_waiting()`.
        """
        return True

    def _start_waiting(self) -> None:
        """Start, in order, every waiting child whose turn `_may_start` says has come."""
        for child in list(self._children.values()):
            if child.actor is None and child.state in (ActorState.STARTING,
                                                       ActorState.RESTARTING):
                self._start_children([child.id], token=child.token)

    def _after_retire(self, child: _Child, reason: ExitReason) -> None:
        """Called once a child exited for good (stopped or forgotten), with why."""

    def _start(self, child: _Child) -> ExitReason | None:
        """Start one incarnation and wait for its `on_start`; return a failure."""
        path = child.address.path
        child.timer = None
        if child.address.closed:  # a child that had finished is started again
            self.context.reopen(child.address)
        try:
            actor = child.spec.start()
            if not isinstance(actor, SupervisedActor):
                raise TypeError(
                    f"start of child {child.id!r} must return a SupervisedActor, "
                    f"got {type(actor).__name__}"
                )
            if isinstance(actor, Supervisor) and actor._context is None:
                actor._context = self.context
        except Exception as error:
            logger.debug("%s: factory raised", path, exc_info=True)
            return ExitReason.from_exception(ExitKind.START_FAILURE, error, path=path)
        supervisor = self.actor_ref

        def tell_parent(reason: ExitReason) -> None:
            # If the supervisor is gone, it stopped this child on its way out.
            tell_if_alive(supervisor, _ChildExit(child.id, actor, reason))

        # Attach before the loop starts, so what waited is handled first.
        child.address._attach(actor.actor_ref)
        failure = actor._launch(path, tell_parent, host=self)
        if failure is not None:
            child.address._detach(drain(actor.actor_inbox))
            return failure
        child.actor = actor
        child.state = ActorState.RUNNING
        child.started_at = time.time()
        child.running_since = self.context.clock.now()
        return None

    # -- exits and decisions -------------------------------------------------

    def _on_child_exit(self, message: _ChildExit) -> None:
        child = self._children.get(message.child_id)
        if child is None or child.actor is not message.actor:
            return  # an incarnation we stopped ourselves, or already replaced
        child.actor = None
        # Detach first: a send that saw the incarnation alive finishes before
        # the drain, and later sends wait in the address.
        child.address._detach()
        self._handle_exit(child, message.reason, drain(message.actor.actor_inbox))

    def _handle_exit(
        self, child: _Child, reason: ExitReason, leftovers: list[Envelope[Any]]
    ) -> None:
        """Decide what a child's exit means: forget it, restart, or give up."""
        now = self.context.clock.now()
        self._note_exit(child, reason)
        restart = child.spec.restart
        if restart is Restart.TEMPORARY or (
            restart is Restart.TRANSIENT and not reason.is_abnormal
        ):
            self._retire(child, leftovers, reason)
            return
        child.address._detach(leftovers)
        if not self._intensity.record(now):
            self._give_up(reason)
            return
        group = self._restart_group(child)
        for other in reversed(group):
            if other is not child and other.actor is not None:
                temporary = other.spec.restart is Restart.TEMPORARY
                self._stop_child(other, closing=temporary)
                if temporary:  # stopped with its siblings, but never restarted (OTP)
                    del self._children[other.id]
        group = [member for member in group if member.id in self._children]
        delay = self._backoff_delay(child, now)
        token = next(_restart_tokens)
        for member in group:
            self._cancel_timer(member)
            member.token = token
            member.state = ActorState.BACKING_OFF if delay else ActorState.RESTARTING
        due = _RestartDue(tuple(member.id for member in group), token)
        if delay:
            child.restart_due = now + delay
            self._emit(EventKind.BACKING_OFF, child, delay=delay)
            ref = self.actor_ref
            child.timer = self.context.clock.call_later(delay, lambda: tell_if_alive(ref, due))
        else:
            self.actor_ref.tell(due)

    def _note_exit(self, child: _Child, reason: ExitReason) -> None:
        """Keep the exit in the child's history and tell the observers."""
        child.last_exits.append((reason, time.time()))
        self._emit(EventKind.EXITED, child, reason=reason)

    def _count_restart(self, child: _Child) -> None:
        now = self.context.clock.now()
        child.total_restarts += 1
        child.restart_times.append(now)
        while child.restart_times[0] < now - self.flags.within:
            child.restart_times.popleft()

    def _restart_group(self, child: _Child) -> list[_Child]:
        """The failed child and the siblings its strategy restarts with it, in start order."""
        strategy = self.flags.strategy
        if strategy is Strategy.ONE_FOR_ONE:
            return [child]
        children = list(self._children.values())
        if strategy is Strategy.REST_FOR_ONE:
            children = children[children.index(child):]
        return [c for c in children if c is child or c.state is not ActorState.STOPPED]

    def _backoff_delay(self, child: _Child, now: float) -> float:
        """The wait before this restart; the count resets once a child ran quietly."""
        backoff = self.flags.backoff
        since = child.running_since
        if since is not None and now - since >= backoff.reset_after:
            child.consecutive = 0
        child.running_since = None
        delay = backoff.delay(child.consecutive, self.context.rng)
        child.consecutive += 1
        return delay

    def _retire(self, child: _Child, leftovers: list[Envelope[Any]], reason: ExitReason) -> None:
        """A child that is not restarted: temporary ones are forgotten (as OTP)."""
        self._close(child, leftovers)
        if child.spec.restart is Restart.TEMPORARY:
            del self._children[child.id]
        if child.spec.significant:
            self._check_auto_shutdown(child)
        if self._requested_exit is None:
            self._after_retire(child, reason)

    def _check_auto_shutdown(self, child: _Child) -> None:
        mode = self.flags.auto_shutdown
        if mode is AutoShutdown.NEVER:
            return
        if mode is AutoShutdown.ALL_SIGNIFICANT and any(
            c.spec.significant and c.state is not ActorState.STOPPED
            for c in self._children.values()
        ):
            return
        self._exit(
            ExitReason(
                ExitKind.SHUTDOWN,
                path=self.path,
                message=f"auto_shutdown ({mode.value}): significant child {child.id!r} exited",
            )
        )

    def _give_up(self, reason: ExitReason) -> None:
        flags = self.flags
        gave_up = ExitReason(
            ExitKind.GAVE_UP,
            path=self.path,
            message=f"more than {_restarts(flags.max_restarts)} within {flags.within:g}s",
            cause=reason,
        )
        self._emit_path(EventKind.GAVE_UP, self.path, reason=gave_up)
        self._exit(gave_up)

    # -- stopping ------------------------------------------------------------

    def _stop_child(self, child: _Child, *, closing: bool) -> None:
        """Stop a running child: graceful, then killed after its grace period.

        Its unhandled messages wait in its address for the next incarnation,
        or are dead-lettered when `closing` (it will not come back).
        """
        actor = child.actor
        assert actor is not None
        child.actor = None
        child.address._detach()
        # Once this supervisor is killed, what is left under it is killed too.
        grace = 0.0 if self._killed else child.spec.shutdown_grace
        kind = ExitKind.SHUTDOWN
        stopped = False
        self._stopping = actor
        if grace > 0:
            tell_if_alive(actor.actor_ref, pykka.messages._ActorStop())  # or on its way out
            stopped = actor._wait_exit(None if grace == float("inf") else grace)
        if not stopped:
            kind = ExitKind.KILLED
            actor._kill()
            if not actor._wait_exit(KILL_WAIT):
                self._emit(EventKind.ABANDONED, child, detail=f"ignored stop for {grace:g}s")
        self._stopping = None
        leftovers = drain(actor.actor_inbox)
        self._note_exit(child, ExitReason(kind, path=child.address.path))
        if closing:
            self._close(child, leftovers)
        else:
            child.address._detach(leftovers)

    def _close(self, child: _Child, leftovers: list[Envelope[Any]]) -> None:
        """The child will not come back: close its address and every one under it."""
        child.state = ActorState.STOPPED
        child.address._close(leftovers)
        self.context.close_addresses(child.address.path)

    def _cancel_timer(self, child: _Child) -> None:
        if child.timer is not None:
            child.timer.cancel()
            child.timer = None

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
        self._cancel_timer(child)
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

    def _child(self, child_id: str) -> _Child:
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
                    _Call(Supervisor.snapshot, (budget / 2,)), block=False)
        now = self.context.clock.now()
        within = self.flags.within
        children: list[dict[str, Any]] = []
        for child in self._children.values():
            entry: dict[str, Any] = {
                "id": child.id,
                "path": child.address.path,
                "kind": child.spec.type.value,
                "state": child.state.value,
                "restart": child.spec.restart.value,
                "restarts_in_window": sum(t >= now - within for t in child.restart_times),
                "max_restarts": self.flags.max_restarts,
                "within": within,
                "total_restarts": child.total_restarts,
                "last_exits": [
                    {**reason.to_dict(), "at": at} for reason, at in child.last_exits
                ],
                "started_at": child.started_at,
                "shutdown": "infinity" if child.spec.shutdown == INFINITY
                else child.spec.shutdown,
                "mailbox": child.actor.mailbox_depth() if child.actor is not None else 0,
                "backoff_remaining": max(child.restart_due - now, 0.0)
                if child.state is ActorState.BACKING_OFF else None,
            }
            if child.id in asks:
                entry.update(_subtree(asks[child.id], deadline))
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

    def _emit(self, kind: EventKind, child: _Child, **fields: Any) -> None:
        self._emit_path(kind, child.address.path, **fields)

    def _emit_path(self, kind: EventKind, path: str, **fields: Any) -> None:
        self.context.emit(kind, path, **fields)


_restart_tokens = itertools.count(1)
"""Tokens of restart orders, unique across every supervisor and incarnation,
so that an order left over from an earlier incarnation never matches."""


def _restarts(count: int) -> str:
    return f"{count} restart" if count == 1 else f"{count} restarts"


def _subtree(answer: pykka.Future[Any] | dict[str, Any], deadline: float) -> dict[str, Any]:
    """A child supervisor's strategy, intensity and children, or `unresponsive`."""
    try:
        picture = answer if isinstance(answer, dict) else answer.get(
            timeout=max(deadline - time.monotonic(), 0))
    except (pykka.Timeout, pykka.ActorDeadError):
        return {"unresponsive": True, "children": []}
    if isinstance(picture, _Refused):
        return {"unresponsive": True, "children": []}
    return {key: picture[key] for key in ("strategy", "intensity", "children")}


