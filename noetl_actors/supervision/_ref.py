"""`SupervisorRef`: the thread-safe handle to a running supervisor."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import pykka

from noetl_actors.clock import Clock
from noetl_actors.errors import ActorDeadError, SupervisionError
from noetl_actors.supervision._actor import stop_if_alive
from noetl_actors.supervision._address import Address
from noetl_actors.supervision._child import Call, Refused
from noetl_actors.supervision._events import Observer
from noetl_actors.supervision._reasons import ExitReason
from noetl_actors.supervision._specs import ChildSpec, ChildType, Restart, SupervisorFlags
from noetl_actors.supervision._state import ChildCounts, ChildInfo
from noetl_actors.supervision._supervisor import Supervisor
from noetl_actors.supervision._tree import TreeContext

__all__ = ["SupervisorRef", "start_root", "start_supervisor", "supervisor_spec"]

DEFAULT_TIMEOUT = 30.0


class SupervisorRef:
    """Talk to a supervisor from any thread.

    Every verb is an ask that the supervisor handles between two messages, so
    it sees a consistent tree. Verbs block until answered, at most `timeout`
    seconds (`pykka.Timeout` past that).
    """

    def __init__(self, supervisor: Supervisor) -> None:
        self._supervisor = supervisor
        self.path = supervisor.path

    def __repr__(self) -> str:
        return f"<SupervisorRef {self.path}>"

    @property
    def actor_ref(self) -> pykka.ActorRef[Supervisor]:
        return self._supervisor.actor_ref

    def is_alive(self) -> bool:
        return self._supervisor.exit_reason is None

    @property
    def exit_reason(self) -> ExitReason | None:
        return self._supervisor.exit_reason

    def _call(self, method: Any, *args: Any, timeout: float | None) -> Any:
        for arg in args:
            if method is not Supervisor.start_child and not isinstance(arg, str):
                raise TypeError(f"a child id must be a string (got {arg!r})")
        try:
            result = self.actor_ref.ask(Call(method, args), timeout=timeout)
        except pykka.ActorDeadError as error:
            if isinstance(error, ActorDeadError):
                raise
            raise ActorDeadError(f"{self.path} is not running") from error
        if isinstance(result, Refused):
            raise result.error
        return result

    def start_child(
        self, spec: ChildSpec, *, timeout: float = DEFAULT_TIMEOUT
    ) -> pykka.ActorRef[Any]:
        """Add and start a child; its exits are then supervised like the others.

        Raises:
            ChildAlreadyExists: the id is taken.
            SupervisionError: it failed to start (it is not added).
        """
        if not isinstance(spec, ChildSpec):
            raise TypeError(f"start_child needs a ChildSpec (got {type(spec).__name__})")
        ref: pykka.ActorRef[Any] = self._call(Supervisor.start_child, spec, timeout=timeout)
        return ref

    def terminate_child(self, child_id: str, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Stop a child and keep its spec (temporary children are forgotten)."""
        self._call(Supervisor.terminate_child, child_id, timeout=timeout)

    def restart_child(
        self, child_id: str, *, timeout: float = DEFAULT_TIMEOUT
    ) -> pykka.ActorRef[Any]:
        """Start a terminated child again. Raises ChildRunning if it is not stopped."""
        ref: pykka.ActorRef[Any] = self._call(Supervisor.restart_child, child_id, timeout=timeout)
        return ref

    def crash_child(self, child_id: str, why: str = "killed by request", *,
                    timeout: float = DEFAULT_TIMEOUT) -> None:
        """Make a running child crash as if its code had raised (see `Crash`);
        returns once told. Raises ChildRunning if it is not running."""
        self._call(Supervisor.crash_child, child_id, why, timeout=timeout)

    def delete_child(self, child_id: str, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Forget a terminated child's spec. Raises ChildRunning if it is not stopped."""
        self._call(Supervisor.delete_child, child_id, timeout=timeout)

    def which_children(self, *, timeout: float = DEFAULT_TIMEOUT) -> list[ChildInfo]:
        children: list[ChildInfo] = self._call(Supervisor.which_children, timeout=timeout)
        return children

    def count_children(self, *, timeout: float = DEFAULT_TIMEOUT) -> ChildCounts:
        counts: ChildCounts = self._call(Supervisor.count_children, timeout=timeout)
        return counts

    def address(self, child_id: str, *, timeout: float = DEFAULT_TIMEOUT) -> Address:
        """The child's stable address: messages to it survive its restarts."""
        address: Address = self._call(Supervisor.address, child_id, timeout=timeout)
        return address

    def child_supervisor(self, child_id: str, *, timeout: float = DEFAULT_TIMEOUT) -> SupervisorRef:
        """The `SupervisorRef` of a running child supervisor (its current incarnation)."""
        actor = self._call(Supervisor.child_actor, child_id, timeout=timeout)
        if not isinstance(actor, Supervisor):
            raise TypeError(f"{self.path}/{child_id} is not a running supervisor")
        return SupervisorRef(actor)

    def snapshot(self, *, timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
        """A JSON-ready picture of the subtree (see docs/supervision.md)."""
        picture: dict[str, Any] = self._call(Supervisor.snapshot, timeout=timeout)
        return picture

    def wait(self, timeout: float | None = None) -> ExitReason | None:
        """Block until the supervisor has exited; its reason, or None on timeout."""
        if not self._supervisor._wait_exit(timeout):
            return None
        return self._supervisor.exit_reason

    def stop(self, *, timeout: float | None = None) -> ExitReason | None:
        """Stop the subtree (children in reverse start order) and wait for it.

        Returns the exit reason, or None if it had not exited within `timeout`.
        """
        stop_if_alive(self.actor_ref)
        return self.wait(timeout)


def start_supervisor(
    flags: SupervisorFlags,
    children: Sequence[ChildSpec] = (),
    *,
    id: str = "root",
    clock: Clock | None = None,
    observers: Sequence[Observer] = (),
) -> SupervisorRef:
    """Start a root supervisor and its children; return once they started.

    A root has no parent: when it gives up, `wait()` returns the reason
    chain. It owns the clock it uses and closes it when it exits.

    Raises:
        SupervisionError: the root itself failed to start (it used up its
            intensity while starting its children).
    """
    return start_root(Supervisor(flags, children), id=id, clock=clock, observers=observers)


def start_root(
    supervisor: Supervisor,
    *,
    id: str = "root",
    clock: Clock | None = None,
    observers: Sequence[Observer] = (),
) -> SupervisorRef:
    """Start a supervisor built but not started (any `Supervisor` subclass) as a root.

    See `start_supervisor`.
    """
    context = TreeContext(observers=tuple(observers))
    if clock is not None:
        context.clock = clock
    supervisor._context = context
    path = f"/{id}"

    def close_tree(_reason: ExitReason) -> None:
        context.close_addresses(path)
        context.clock.close()

    supervisor._add_watcher(0, close_tree)
    failure = supervisor._launch(path, None)
    if failure is not None:
        supervisor._wait_exit(None)
        raise SupervisionError(failure)
    return SupervisorRef(supervisor)


def supervisor_spec(
    id: str,
    flags: SupervisorFlags,
    children: Sequence[ChildSpec],
    *,
    restart: Restart = Restart.PERMANENT,
    shutdown: float | None = None,
    significant: bool = False,
) -> ChildSpec:
    """A `ChildSpec` for a nested supervisor with its own flags and children."""
    return ChildSpec(
        id=id,
        start=functools.partial(Supervisor, flags, tuple(children)),
        restart=restart,
        shutdown=shutdown,
        type=ChildType.SUPERVISOR,
        significant=significant,
    )
