"""Backoff: a restart waits before it happens (Akka's BackoffSupervisor, per child).

The delay before the n-th consecutive restart is
``min(initial * multiplier**n, max) * (1 + U[0, jitter])``; n goes back to 0
when the last failure was at least `reset_after` seconds ago. While a child
backs off, messages to its address wait for the next incarnation.

Every supervisor here runs on a `ManualClock`: a backoff timer fires only in
`advance()`, so "not restarted yet" is a fact, not a race.
"""

from __future__ import annotations

import functools
import random
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pykka
import pytest
from hypothesis import given
from hypothesis import strategies as st

from noetl_actors.errors import ActorDeadError
from noetl_actors.supervision import (
    ActorState,
    Backoff,
    ChildSpec,
    EventKind,
    ExitKind,
    ManualClock,
    SupervisedActor,
    SupervisorFlags,
    SupervisorRef,
    start_supervisor,
)
from tests.helpers import WAIT, Recorder

# -- Backoff on its own ---------------------------------------------------------

finite = functools.partial(st.floats, allow_nan=False, allow_infinity=False)


@st.composite
def backoffs(draw: st.DrawFn) -> Backoff:
    return Backoff(
        initial=draw(st.one_of(st.just(0.0), finite(min_value=0, max_value=100))),
        max=draw(finite(min_value=0, max_value=1000)),
        multiplier=draw(finite(min_value=1, max_value=10)),
        jitter=draw(st.one_of(st.just(0.0), finite(min_value=0, max_value=2))),
    )


@given(backoff=backoffs(), n=st.integers(min_value=0, max_value=400))
def test_base_delay_is_initial_times_multiplier_to_the_n_capped_at_max(
    backoff: Backoff, n: int
) -> None:
    grown = backoff.initial
    for _ in range(n):  # repeated multiplication, as a person would compute it
        grown = min(grown * backoff.multiplier, 2 * backoff.max + 1)
    expected = min(grown, backoff.max)

    base = backoff.base_delay(n)

    assert base == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert 0 <= base <= backoff.max
    assert base >= backoff.base_delay(max(n - 1, 0)), "never shrinks as n grows"


def test_base_delay_schedule_for_the_usual_settings() -> None:
    backoff = Backoff(initial=0.5, multiplier=2, max=5)
    assert [backoff.base_delay(n) for n in range(7)] == [0.5, 1, 2, 4, 5, 5, 5]


def test_base_delay_does_not_overflow_for_huge_n() -> None:
    assert Backoff(initial=1, multiplier=10, max=30).base_delay(10_000) == 30


def test_no_initial_delay_means_no_backoff_at_all() -> None:
    assert Backoff().base_delay(0) == 0
    assert Backoff(initial=0, jitter=1, multiplier=3).delay(12) == 0


@given(backoff=backoffs(), n=st.integers(min_value=0, max_value=60), seed=st.integers())
def test_jittered_delay_lies_between_base_and_base_times_one_plus_jitter(
    backoff: Backoff, n: int, seed: int
) -> None:
    base = backoff.base_delay(n)
    delay = backoff.delay(n, random.Random(seed))
    assert base <= delay <= base * (1 + backoff.jitter)
    if backoff.jitter == 0:
        assert delay == base


def test_jitter_spreads_delays_across_the_allowed_range() -> None:
    backoff = Backoff(initial=1, multiplier=1, jitter=0.5)
    rng = random.Random(7)
    delays = [backoff.delay(0, rng) for _ in range(200)]
    assert all(1 <= d <= 1.5 for d in delays)
    assert min(delays) < 1.1 and max(delays) > 1.4, "jitter covers its range"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"initial": -1.0}, "initial"),
        ({"initial": float("nan")}, "initial"),
        ({"multiplier": 0.5}, "multiplier"),
        ({"multiplier": 0}, "multiplier"),
        ({"multiplier": float("nan")}, "multiplier"),
        ({"max": -0.1}, "max"),
        ({"jitter": -0.5}, "jitter"),
        ({"reset_after": -60}, "reset_after"),
    ],
    ids=repr,
)
def test_backoff_rejects_bad_values_with_a_value_error_naming_the_field(
    kwargs: dict[str, float], field: str
) -> None:
    with pytest.raises(ValueError, match=rf"^{field} must be"):
        Backoff(**kwargs)


# -- through a real supervisor --------------------------------------------------


class Collector(SupervisedActor):
    """Records every message it handles into a list shared by all incarnations."""

    def __init__(self, seen: list[Any]) -> None:
        super().__init__()
        self.seen = seen

    def on_receive(self, message: Any) -> Any:
        if message == "crash":
            raise ValueError("collector crashed on purpose")
        if isinstance(message, tuple) and message[0] == "crash-when":
            message[1].wait(WAIT)
            raise ValueError("collector crashed when told to")
        self.seen.append(message)
        return message


class BackoffTree:
    """A root on a ManualClock with one `Collector` child 'w'."""

    def __init__(self, backoff: Backoff) -> None:
        self.clock = ManualClock()
        self.events = Recorder()
        self.seen: list[Any] = []
        self.root: SupervisorRef = start_supervisor(
            SupervisorFlags(max_restarts=100, within=1000.0, backoff=backoff),
            [ChildSpec(id="w", start=functools.partial(Collector, self.seen))],
            clock=self.clock,
            observers=[self.events],
        )
        self.w = self.root.address("w")

    def crash(self) -> float:
        """Crash 'w'; return the delay its BACKING_OFF event announces."""
        before = len(self.events.of(EventKind.BACKING_OFF, "/root/w"))
        self.w.tell("crash")
        event = self.events.wait_for(EventKind.BACKING_OFF, "/root/w", count=before + 1)[before]
        assert event.delay is not None
        return event.delay

    def restarts(self) -> int:
        return len(self.events.of(EventKind.RESTARTED, "/root/w"))

    def advance_until_restarted(self, delay: float) -> None:
        before = self.restarts()
        self.clock.advance(delay)
        self.events.wait_for(EventKind.RESTARTED, "/root/w", count=before + 1)

    def state(self) -> ActorState:
        (info,) = self.root.which_children()
        return info.state


@pytest.fixture
def make_tree() -> Iterator[Callable[[Backoff], BackoffTree]]:
    trees: list[BackoffTree] = []

    def make(backoff: Backoff) -> BackoffTree:
        tree = BackoffTree(backoff)
        trees.append(tree)
        return tree

    yield make
    for tree in trees:
        tree.root.stop(timeout=5)


def test_a_crashed_child_backs_off_and_restarts_only_once_the_delay_has_passed(
    make_tree: Callable[[Backoff], BackoffTree],
) -> None:
    tree = make_tree(Backoff(initial=1.0))

    delay = tree.crash()

    assert delay == 1.0
    (info,) = tree.root.which_children()
    assert (info.state, info.ref) == (ActorState.BACKING_OFF, None)
    assert tree.root.snapshot()["children"][0]["state"] == "backing_off"
    assert tree.clock.pending() == [1.0], "one restart timer, due after the delay"

    tree.clock.advance(0.5)
    assert tree.state() is ActorState.BACKING_OFF, "not restarted before the delay"
    assert tree.restarts() == 0

    tree.advance_until_restarted(0.5)
    assert tree.state() is ActorState.RUNNING
    assert tree.w.ask("hello", timeout=5) == "hello"
    (exited,) = tree.events.of(EventKind.EXITED, "/root/w")
    assert exited.reason is not None and exited.reason.kind is ExitKind.CRASH
    assert tree.events.sequence(EventKind.EXITED, EventKind.BACKING_OFF, EventKind.RESTARTED) == [
        ("exited", "/root/w"),
        ("backing_off", "/root/w"),
        ("restarted", "/root/w"),
    ]


def test_successive_crashes_double_the_delay_up_to_max(
    make_tree: Callable[[Backoff], BackoffTree],
) -> None:
    tree = make_tree(Backoff(initial=1.0, multiplier=2.0, max=8.0, reset_after=1000.0))
    delays = []
    for _ in range(6):
        delay = tree.crash()
        delays.append(delay)
        tree.clock.advance(delay / 2)
        assert tree.state() is ActorState.BACKING_OFF
        tree.advance_until_restarted(delay / 2)

    assert delays == [1, 2, 4, 8, 8, 8]
    assert tree.root.snapshot()["children"][0]["total_restarts"] == 6


@pytest.mark.parametrize(
    ("quiet", "next_delay"),
    [(9.5, 8.0), (10.0, 1.0), (25.0, 1.0)],
    ids=["shorter-than-reset_after-keeps-growing", "exactly-reset_after-resets", "longer-resets"],
)
def test_running_quietly_for_reset_after_since_the_last_restart_brings_the_delay_back_to_initial(
    make_tree: Callable[[Backoff], BackoffTree], quiet: float, next_delay: float
) -> None:
    tree = make_tree(Backoff(initial=1.0, multiplier=2.0, max=8.0, reset_after=10.0))
    for expected in (1.0, 2.0, 4.0):  # failures at t = 0, 1, 3
        delay = tree.crash()
        assert delay == expected
        tree.advance_until_restarted(delay)  # running again from t = 7
    tree.clock.advance(quiet)  # running quietly for `quiet` seconds since t = 7

    assert tree.crash() == next_delay


def test_with_jitter_the_restart_happens_after_the_delay_the_event_announced(
    make_tree: Callable[[Backoff], BackoffTree],
) -> None:
    tree = make_tree(Backoff(initial=2.0, jitter=0.5))

    delay = tree.crash()

    assert 2.0 <= delay <= 3.0
    assert tree.clock.pending() == [delay]
    tree.clock.advance(delay * 0.99)
    assert tree.state() is ActorState.BACKING_OFF
    tree.advance_until_restarted(delay * 0.01 + 1e-9)
    assert tree.state() is ActorState.RUNNING


def test_messages_sent_while_a_child_backs_off_reach_its_next_incarnation_in_order(
    make_tree: Callable[[Backoff], BackoffTree],
) -> None:
    tree = make_tree(Backoff(initial=1.0))
    delay = tree.crash()

    for n in range(5):
        tree.w.tell(f"m{n}")
    answer = tree.w.ask_future("question")

    assert tree.state() is ActorState.BACKING_OFF
    with pytest.raises(pykka.Timeout):
        answer.get(timeout=0)  # nothing runs to answer it yet
    assert tree.seen == []

    tree.clock.advance(delay)

    assert answer.get(timeout=5) == "question", "the ask is answered after the restart"
    assert tree.seen == ["m0", "m1", "m2", "m3", "m4", "question"]


def test_messages_queued_behind_the_crash_come_before_those_sent_during_backoff(
    make_tree: Callable[[Backoff], BackoffTree],
) -> None:
    tree = make_tree(Backoff(initial=1.0))
    gate = threading.Event()

    tree.w.tell(("crash-when", gate))
    tree.w.tell("queued-1")  # in the crashing incarnation's inbox
    tree.w.tell("queued-2")
    gate.set()
    delay = tree.events.wait_for(EventKind.BACKING_OFF, "/root/w")[0].delay
    assert delay == 1.0
    tree.w.tell("while-backing-off")

    tree.clock.advance(delay)

    assert tree.w.ask("sync", timeout=5) == "sync"
    assert tree.seen == ["queued-1", "queued-2", "while-backing-off", "sync"]


def test_terminating_a_child_that_backs_off_cancels_its_restart_and_its_waiting_messages(
    make_tree: Callable[[Backoff], BackoffTree],
) -> None:
    tree = make_tree(Backoff(initial=1.0))
    delay = tree.crash()
    tree.w.tell("told-1")
    tree.w.tell("told-2")
    asked = tree.w.ask_future("asked")

    tree.root.terminate_child("w")

    with pytest.raises(ActorDeadError):
        asked.get(timeout=5)
    dead = tree.events.wait_for(EventKind.DEAD_LETTER, "/root/w", count=2)
    assert [e.detail for e in dead] == ["'told-1'", "'told-2'"]
    assert tree.clock.pending() == [], "the restart timer is cancelled"

    tree.clock.advance(delay * 3)

    assert tree.state() is ActorState.STOPPED, "never restarted"
    assert tree.restarts() == 0
    assert tree.seen == []
    with pytest.raises(ActorDeadError):
        tree.w.tell("too late")


def test_stopping_the_tree_while_a_child_backs_off_fails_its_waiting_asks() -> None:
    tree = BackoffTree(Backoff(initial=1.0))
    try:
        tree.crash()
        asked = tree.w.ask_future("asked")
    finally:
        reason = tree.root.stop(timeout=5)
    assert reason is not None and reason.kind is ExitKind.NORMAL
    with pytest.raises(ActorDeadError):
        asked.get(timeout=5)
    assert tree.restarts() == 0


# -- a message sent at the moment the child crashes ----------------------------


class _ContendedLock:
    """A lock that records when a second thread has to wait for it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.contended = threading.Event()

    def __enter__(self) -> None:
        if not self._lock.acquire(blocking=False):
            self.contended.set()
            self._lock.acquire()

    def __exit__(self, *exc: object) -> None:
        self._lock.release()


def test_a_tell_racing_with_the_crash_is_not_lost_in_the_dead_incarnations_inbox(
    make_tree: Callable[[Backoff], BackoffTree],
) -> None:
    """`Address._send` checks `is_alive()` and then puts into the inbox.

    This test stretches that moment deterministically: the sender has seen
    the incarnation alive, then the incarnation crashes and the supervisor
    handles the exit (up to wanting the address's lock), and only then does
    the sender's put land. The message must still reach the next incarnation
    (or be dead-lettered), never vanish.
    """
    tree = make_tree(Backoff(initial=1.0))
    gate = threading.Event()
    lock = _ContendedLock()
    tree.w._lock = lock  # type: ignore[assignment]
    (info,) = tree.root.which_children()
    assert info.ref is not None
    inbox = info.ref.actor_inbox
    real_put = inbox.put

    def put_after_the_supervisor_handled_the_crash(envelope: Any, *args: Any, **kw: Any) -> None:
        if envelope.message == "racing":
            gate.set()  # let the incarnation crash now...
            assert lock.contended.wait(WAIT), "the supervisor never reached the address"
        real_put(envelope, *args, **kw)  # ...and deliver once it has been handled

    inbox.put = put_after_the_supervisor_handled_the_crash
    tree.w.tell(("crash-when", gate))
    tree.w.tell("racing")
    delay = tree.events.wait_for(EventKind.BACKING_OFF, "/root/w")[0].delay
    assert delay is not None

    tree.clock.advance(delay)

    assert tree.w.ask("sync", timeout=5) == "sync"
    dead = [e.detail for e in tree.events.of(EventKind.DEAD_LETTER)]
    assert tree.seen == ["racing", "sync"] or "'racing'" in dead, (
        f"'racing' was neither delivered nor dead-lettered: seen={tree.seen}, dead letters={dead}"
    )
