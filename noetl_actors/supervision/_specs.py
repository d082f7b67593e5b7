"""Child specs and supervisor flags: plain data, one field per YAML key.

Later layers (the playbook loader, the node presets) build these records from
YAML; the kernel only ever sees the records. Durations are seconds as floats.
"""

from __future__ import annotations

import enum
import math
import random
from collections.abc import Callable
from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    from noetl_actors.supervision._actor import SupervisedActor

__all__ = [
    "BRUTAL_KILL",
    "INFINITY",
    "AutoShutdown",
    "Backoff",
    "ChildSpec",
    "ChildType",
    "Restart",
    "Strategy",
    "SupervisorFlags",
]

BRUTAL_KILL = 0.0
"""`shutdown=BRUTAL_KILL`: kill the child at once, with no grace period."""
INFINITY = math.inf
"""`shutdown=INFINITY`: wait for the child to stop however long it takes."""


class Restart(enum.Enum):
    """When a child that exited is started again."""

    PERMANENT = "permanent"
    """Always."""
    TRANSIENT = "transient"
    """Only after an abnormal exit (crash, start failure, kill, a subtree that gave up)."""
    TEMPORARY = "temporary"
    """Never; the child is forgotten once it exits."""


class ChildType(enum.Enum):
    WORKER = "worker"
    SUPERVISOR = "supervisor"


class Strategy(enum.Enum):
    """Which children a supervisor restarts when one of them must be restarted."""

    ONE_FOR_ONE = "one_for_one"
    """Only the child that exited."""
    ONE_FOR_ALL = "one_for_all"
    """Every child: the others stop in reverse start order, then all start in order."""
    REST_FOR_ONE = "rest_for_one"
    """The child that exited and every child started after it."""


class AutoShutdown(enum.Enum):
    """When the exit of `significant` children shuts their supervisor down."""

    NEVER = "never"
    ANY_SIGNIFICANT = "any_significant"
    ALL_SIGNIFICANT = "all_significant"


def _non_negative(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not value >= 0:
        raise ValueError(f"{attribute.name} must be >= 0 (got {value!r})")


@attrs.frozen(kw_only=True)
class Backoff:
    """How long a restart waits: ``initial * multiplier**n``, capped at `max`.

    `n` counts the child's restarts since it last ran quietly for
    `reset_after` seconds. `jitter` adds up to that fraction on top
    (Akka's random factor), so a delay lies in ``[d, d * (1 + jitter)]``.
    """

    initial: float = attrs.field(default=0.0, validator=_non_negative)
    max: float = attrs.field(default=30.0, validator=_non_negative)
    multiplier: float = attrs.field(default=2.0)
    jitter: float = attrs.field(default=0.0, validator=_non_negative)
    reset_after: float = attrs.field(default=60.0, validator=_non_negative)

    @multiplier.validator
    def _check_multiplier(self, _attribute: object, value: float) -> None:
        if not value >= 1:
            raise ValueError(f"multiplier must be >= 1 (got {value!r})")

    def base_delay(self, n: int) -> float:
        """The delay before the `n`-th consecutive restart (0-based), without jitter."""
        if self.initial == 0:
            return 0.0
        try:
            delay = self.initial * self.multiplier**n
        except OverflowError:
            delay = math.inf
        return min(delay, self.max)

    def delay(self, n: int, rng: random.Random | None = None) -> float:
        """The delay before the `n`-th consecutive restart, with jitter applied."""
        base = self.base_delay(n)
        if base == 0 or self.jitter == 0:
            return base
        return base * (1 + (rng or random).random() * self.jitter)


NO_BACKOFF = Backoff()


def _shutdown_ok(_instance: object, _attribute: object, value: float) -> None:
    if not value >= 0:
        raise ValueError(
            f"shutdown must be BRUTAL_KILL (0), a grace period in seconds, "
            f"or INFINITY (got {value!r})"
        )


@attrs.frozen(kw_only=True)
class ChildSpec:
    """How a supervisor starts, restarts and stops one child (OTP's child spec).

    `start` is a callable returning a new, not yet started `SupervisedActor`
    (an actor class, or a `functools.partial` of one). The supervisor calls it
    in its own thread for every incarnation, then starts the actor and waits
    for its `on_start` to finish.
    """

    id: str
    start: Callable[[], SupervisedActor]
    restart: Restart = Restart.PERMANENT
    shutdown: float | None = attrs.field(default=None)
    """Grace period in seconds; BRUTAL_KILL, INFINITY, or None for the default:
    5 s for a worker, INFINITY for a supervisor (as OTP)."""
    type: ChildType = ChildType.WORKER
    significant: bool = False

    def __attrs_post_init__(self) -> None:
        if not self.id or not isinstance(self.id, str):
            raise ValueError(f"child id must be a non-empty string (got {self.id!r})")
        if "/" in self.id:
            raise ValueError(f"child id must not contain '/' (got {self.id!r})")
        if not callable(self.start):
            raise TypeError(f"start must be callable (got {self.start!r})")
        if self.shutdown is not None:
            _shutdown_ok(self, None, self.shutdown)
        if self.significant and self.restart is Restart.PERMANENT:
            raise ValueError(
                f"child {self.id!r}: a significant child must be transient or temporary"
            )

    @property
    def shutdown_grace(self) -> float:
        if self.shutdown is not None:
            return self.shutdown
        return INFINITY if self.type is ChildType.SUPERVISOR else 5.0


@attrs.frozen(kw_only=True)
class SupervisorFlags:
    """How a supervisor treats its children as a group (OTP's sup_flags).

    At most `max_restarts` restarts within `within` seconds; one more and the
    supervisor stops its children and exits with kind GAVE_UP (escalation).
    """

    strategy: Strategy = Strategy.ONE_FOR_ONE
    max_restarts: int = attrs.field(default=3)
    within: float = attrs.field(default=5.0)
    auto_shutdown: AutoShutdown = AutoShutdown.NEVER
    backoff: Backoff = NO_BACKOFF

    @max_restarts.validator
    def _check_max_restarts(self, _attribute: object, value: int) -> None:
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"max_restarts must be an integer >= 0 (got {value!r})")

    @within.validator
    def _check_within(self, _attribute: object, value: float) -> None:
        if not value > 0:
            raise ValueError(f"within must be > 0 seconds (got {value!r})")
