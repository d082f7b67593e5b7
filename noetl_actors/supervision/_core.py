"""`SupervisorCore`: how a supervisor starts, watches and restarts its children.

The engine and the hooks of `Supervisor` (which adds the verbs others ask
of it, `_supervisor.py`).

Everything here runs on the supervisor's own thread, one message at a time:
a child's exit arrives as a `ChildExit` message, a backoff timer fires as a
`RestartDue` message, and the dynamic-child verbs arrive as `Call` asks
(see `SupervisorRef`). Subclasses change what it does only through the hooks
of "Extending a supervisor" in docs/supervision.md. Children start synchronously, in order: the
supervisor waits for each child's `on_start` before it starts the next.

A restart is never started from inside the decision that asks for it: the
decision tells the supervisor `RestartDue` (at once, or after a backoff
timer), as OTP's `try_again_restart` does. So a child that fails to start
again and again is counted against intensity each time, never recursed on.
"""

from __future__ import annotations

import collections
import itertools
import logging
import time
import types
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from noetl_actors.errors import ChildError, SupervisionError
from noetl_actors.supervision._actor import SupervisedActor, stop_if_alive, tell_if_alive
from noetl_actors.supervision._child import Call, Child, ChildExit, Refused, RestartDue
from noetl_actors.supervision._events import EventKind
from noetl_actors.supervision._inbox import drain
from noetl_actors.supervision._intensity import RestartIntensity
from noetl_actors.supervision._pykka import Entry
from noetl_actors.supervision._reasons import ExitKind, ExitReason
from noetl_actors.supervision._specs import (
    AutoShutdown,
    ChildSpec,
    Restart,
    Strategy,
    SupervisorFlags,
)
from noetl_actors.supervision._state import ActorState
from noetl_actors.supervision._tree import TreeContext

__all__ = ["SupervisorCore"]

logger = logging.getLogger("noetl_actors.supervision")

KILL_WAIT = 0.5
"""Seconds to wait for a killed child's thread before reporting it abandoned."""


class SupervisorCore(SupervisedActor):
    """The engine of `Supervisor`: life cycle, starts, exits, restarts, stops.

    Subclass `Supervisor`, not this; its hooks are documented here.
    """

    def __init__(
        self,
        flags: SupervisorFlags,
        children: Sequence[ChildSpec] = (),
        *,
        context: TreeContext | None = None,
        recent_restarts: Sequence[float] = (),
    ) -> None:
        """`recent_restarts`: how many seconds ago each restart of the supervisor this one
        continues was made (a workflow taken over from a dead node): they count in its
        intensity window, so a child that crashes across takeovers still reaches the limit."""
        super().__init__()
        counts = collections.Counter(spec.id for spec in children)  # not ids.count: quadratic
        duplicates = sorted(i for i, n in counts.items() if n > 1)
        if duplicates:
            raise ValueError(f"duplicate child ids: {', '.join(duplicates)}")
        self.flags = flags
        self._context = context
        self._initial_specs = tuple(children)
        self._children: dict[str, Child] = {}
        self._intensity = RestartIntensity(flags.max_restarts, flags.within)
        self._stopping: SupervisedActor | None = None
        self._recent_restarts = tuple(recent_restarts)
        self.started_at: float | None = None

    @property
    def context(self) -> TreeContext:
        if self._context is None:
            self._context = TreeContext()
        return self._context

    # -- life cycle ----------------------------------------------------------

    def on_start(self) -> None:
        self.started_at = time.time()
        now = self.context.clock.now()
        self._intensity.carry_over([now - age for age in self._recent_restarts])
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
            child.cancel_timer()
            if child.actor is not None:
                self._stop_child(child, closing=False)
        super()._before_exit(reason, exc_info)
        # Its specs' `start`s are often its own bound methods: a cycle through
        # every child's record that only a full GC pass would free. An exited
        # supervisor is never started again (a restart makes a new one).
        self._children.clear()  # in place: see `reset_children`
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
        if isinstance(message, ChildExit):
            self._on_child_exit(message)
        elif isinstance(message, RestartDue):
            self._start_children(list(message.child_ids), token=message.token)
        elif isinstance(message, Call):
            try:
                return message.method(self, *message.args)
            except (ChildError, SupervisionError) as error:
                return Refused(error)
        else:
            return super().on_receive(message)
        return None

    # -- the hooks: what a subclass may change (docs/supervision.md) ------------
    #
    # Each runs on the supervisor's own thread (its host's, if it is hosted),
    # between two of its messages, or inside its `on_start` for the first
    # children; never on a child's thread. An exception raised by one is a
    # crash of the supervisor (a start failure in `on_start`): its own
    # supervisor decides.

    def may_start(self, child: Child) -> bool:
        """Whether `child`, waiting to start (or restart), may start now.

        True by default: every child starts at once, in order. A subclass
        whose children take turns (a task's steps, a workflow's tasks) says
        False until a child's turn has come, then calls `start_waiting()`.
        """
        return True

    def should_retire(self, child: Child, reason: ExitReason) -> bool:
        """Whether this exit of `child` ends it for good, whatever its restart type.

        Called first for each exit the supervisor did not cause, and when its
        own start or restart of a child fails; not for `terminate_child`, the
        stops of a group restart or of its exit, nor a failed `start_child` or
        `restart_child` (docs/supervision.md). False by default:
        the restart type, strategy, intensity and backoff decide. True: the
        child is not restarted, as a `transient` child after a normal exit
        (its address closes, a `temporary` child is forgotten, then
        `after_retire`). It may change the subclass's own state first, or
        call `exit_with()` to make the supervisor exit after this message
        (`after_retire` is then not called).
        """
        return False

    def restart_group(self, child: Child) -> list[Child]:
        """The children that restart with `child`, in start order, `child` among them.

        By default the strategy's: `child` alone (one_for_one), every child
        not stopped (one_for_all), or `child` and those started after it
        (rest_for_one). The kernel stops the running ones in reverse order
        and starts them all again. See `reset_children()`.
        """
        strategy = self.flags.strategy
        if strategy is Strategy.ONE_FOR_ONE:
            return [child]
        children = list(self._children.values())
        if strategy is Strategy.REST_FOR_ONE:
            children = children[children.index(child):]
        return [c for c in children if c is child or c.state is not ActorState.STOPPED]

    def after_retire(self, child: Child, reason: ExitReason) -> None:
        """`child` exited for good (it finished, or will not be restarted), with `reason`.

        Nothing by default. A subclass starts what waited for it
        (`start_waiting()`) or exits (`exit_with()`). Called only after an exit
        `should_retire` saw (not after `terminate_child`), and not once the
        supervisor is exiting.
        """

    # -- what the hooks may use ---------------------------------------------------

    @property
    def children(self) -> Mapping[str, Child]:
        """Every child by id, in start order: a read-only live view, for the hooks.

        A view kept (from `on_start`, say) stays true as children come and go."""
        return types.MappingProxyType(self._children)

    def start_waiting(self, among: Iterable[Child] | None = None) -> None:
        """Start, in order, each waiting child (of `among`, or of all) that `may_start`."""
        for child in list(self._children.values() if among is None else among):
            if child.waiting:
                self._start_children([child.id], token=child.token)

    def reset_children(self) -> list[Child]:
        """Make the children those it was built with, in order, and return them.

        Each keeps its record (its restart history) if it has one; a child
        forgotten since (a `temporary` one) comes back with a new one;
        children added by `start_child` are stopped (if running) and forgotten:
        they do not come back. For a `restart_group` that starts everything
        again from the first child.
        """
        built_with = {spec.id for spec in self._initial_specs}
        for child in reversed(list(self._children.values())):
            if child.id not in built_with:
                child.cancel_timer()
                if child.actor is not None:
                    self._stop_child(child, closing=True)
                else:
                    self._close(child, [])
        kept = {
            spec.id: self._children.get(spec.id) or self._new_child(spec)
            for spec in self._initial_specs
        }
        self._children.clear()  # in place: a `children` view a hook kept stays true
        self._children.update(kept)
        return list(self._children.values())

    # -- starting ------------------------------------------------------------

    def _new_child(self, spec: ChildSpec) -> Child:
        path = f"{self.path}/{spec.id}"
        context = self.context  # not `self`: an address outlives this incarnation
        address = self.context.address(
            path, lambda m: context.emit(EventKind.DEAD_LETTER, path, detail=repr(m)[:200]))
        return Child(spec=spec, address=address)

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
            if not self.may_start(child):
                continue
            restarting = child.started_at is not None
            failure = self._start(child)
            if failure is not None:
                self._handle_exit(child, failure, [])
            elif restarting:
                child.count_restart(self.context.clock.now(), self.flags.within)
                self._emit(EventKind.RESTARTED, child, restarts=child.total_restarts,
                           strategy=self.flags.strategy.value)
            else:
                self._emit(EventKind.STARTED, child)

    def _start(self, child: Child) -> ExitReason | None:
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
            if isinstance(actor, SupervisorCore) and actor._context is None:
                actor._context = self.context
        except Exception as error:
            logger.debug("%s: factory raised", path, exc_info=True)
            return ExitReason.from_exception(ExitKind.START_FAILURE, error, path=path)
        supervisor = self.actor_ref

        def tell_parent(reason: ExitReason) -> None:
            # If the supervisor is gone, it stopped this child on its way out.
            tell_if_alive(supervisor, ChildExit(child.id, actor, reason))

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

    def _on_child_exit(self, message: ChildExit) -> None:
        child = self._children.get(message.child_id)
        if child is None or child.actor is not message.actor:
            return  # an incarnation we stopped ourselves, or already replaced
        child.actor = None
        # Detach first: a send that saw the incarnation alive finishes before
        # the drain, and later sends wait in the address.
        child.address._detach()
        self._handle_exit(child, message.reason, drain(message.actor.actor_inbox))

    def _handle_exit(
        self, child: Child, reason: ExitReason, leftovers: list[Entry]
    ) -> None:
        """Decide what a child's exit means: forget it, restart, or give up."""
        now = self.context.clock.now()
        retire = self.should_retire(child, reason)
        self._note_exit(child, reason)
        restart = child.spec.restart
        if retire or restart is Restart.TEMPORARY or (
            restart is Restart.TRANSIENT and not reason.is_abnormal
        ):
            self._retire(child, leftovers, reason)
            return
        child.address._detach(leftovers)
        if not self._intensity.record(now):
            self._give_up(reason)
            return
        group = self.restart_group(child)
        for other in reversed(group):
            if other is not child and other.actor is not None:
                temporary = other.spec.restart is Restart.TEMPORARY
                self._stop_child(other, closing=temporary)
                if temporary:  # stopped with its siblings, but never restarted (OTP)
                    del self._children[other.id]
        group = [member for member in group if member.id in self._children]
        delay = child.backoff_delay(self.flags.backoff, now, self.context.rng)
        token = next(_restart_tokens)
        for member in group:
            member.cancel_timer()
            member.token = token
            member.state = ActorState.BACKING_OFF if delay else ActorState.RESTARTING
        due = RestartDue(tuple(member.id for member in group), token)
        if delay:
            child.restart_due = now + delay
            self._emit(EventKind.BACKING_OFF, child, delay=delay)
            ref = self.actor_ref
            child.timer = self.context.clock.call_later(delay, lambda: tell_if_alive(ref, due))
        else:
            self.actor_ref.tell(due)

    def _note_exit(self, child: Child, reason: ExitReason) -> None:
        """Keep the exit in the child's history and tell the observers."""
        child.last_exits.append((reason, time.time()))
        self._emit(EventKind.EXITED, child, reason=reason)

    def _retire(self, child: Child, leftovers: list[Entry], reason: ExitReason) -> None:
        """A child that is not restarted: temporary ones are forgotten (as OTP)."""
        self._close(child, leftovers)
        if child.spec.restart is Restart.TEMPORARY:
            del self._children[child.id]
        if self._requested_exit is not None:
            return  # `should_retire` asked it to exit: that reason stands
        if child.spec.significant:
            self._check_auto_shutdown(child)
        if self._requested_exit is None:
            self.after_retire(child, reason)

    def _check_auto_shutdown(self, child: Child) -> None:
        mode = self.flags.auto_shutdown
        if mode is AutoShutdown.NEVER:
            return
        if mode is AutoShutdown.ALL_SIGNIFICANT and any(
            c.spec.significant and c.state is not ActorState.STOPPED
            for c in self._children.values()
        ):
            return
        self.exit_with(
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
        self.exit_with(gave_up)

    # -- stopping ------------------------------------------------------------

    def _stop_child(self, child: Child, *, closing: bool) -> None:
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
            stop_if_alive(actor.actor_ref)  # or on its way out
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

    def _close(self, child: Child, leftovers: list[Entry]) -> None:
        """The child will not come back: close its address and every one under it."""
        child.state = ActorState.STOPPED
        child.address._close(leftovers)
        self.context.close_addresses(child.address.path)

    def _emit(self, kind: EventKind, child: Child, **fields: Any) -> None:
        self._emit_path(kind, child.address.path, **fields)

    def _emit_path(self, kind: EventKind, path: str, **fields: Any) -> None:
        self.context.emit(kind, path, **fields)


_restart_tokens = itertools.count(1)
"""Tokens of restart orders, unique across every supervisor and incarnation,
so that an order left over from an earlier incarnation never matches."""


def _restarts(count: int) -> str:
    return f"{count} restart" if count == 1 else f"{count} restarts"
