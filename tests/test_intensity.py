"""Restart intensity: at most `max_restarts` restarts within `within` seconds (OTP).

A restart at time t counts together with every earlier restart at a time
>= t - within (inclusive). One more than `max_restarts` and the supervisor gives
up: it stops its children and exits with kind GAVE_UP, the child's reason as
the cause. Failed restart attempts count like any other restart.

Every supervisor here runs on a `ManualClock`, so windows are crossed with
`advance()`, never by sleeping.
"""

from __future__ import annotations

import functools
import itertools
import time
from collections.abc import Callable, Iterator, Sequence

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from noetl_actors.supervision import (
    ActorState,
    ChildSpec,
    EventKind,
    ExitKind,
    LifecycleEvent,
    ManualClock,
    RestartIntensity,
    SupervisedActor,
    SupervisorFlags,
    SupervisorRef,
    start_supervisor,
)
from tests.helpers import WAIT, Recorder, Worker

# -- the reference model ------------------------------------------------------


def model_give_up_index(times: Sequence[float], max_restarts: int, within: float) -> int | None:
    """Index of the restart that is one too many, or None: recounted from scratch.

    Each restart at ``t`` counts with every restart so far at ``>= t - within``.
    """
    seen: list[float] = []
    for index, t in enumerate(times):
        seen.append(t)
        if sum(1 for s in seen if s >= t - within) > max_restarts:
            return index
    return None


def model_in_window(times: Sequence[float], now: float, within: float) -> int:
    return sum(1 for s in times if s >= now - within)


# -- strategies ---------------------------------------------------------------

# Whole and half seconds hit the inclusive window edge exactly; arbitrary floats
# cover the rest.
_exact_steps = st.integers(min_value=0, max_value=16).map(lambda k: k / 2)
_any_steps = st.floats(min_value=0, max_value=10, allow_nan=False, allow_infinity=False)
steps = st.one_of(_exact_steps, _any_steps)
windows = st.one_of(
    st.integers(min_value=1, max_value=10).map(float),
    st.floats(min_value=0.001, max_value=20, allow_nan=False, allow_infinity=False),
)


@st.composite
def crash_times(draw: st.DrawFn, max_size: int = 30) -> list[float]:
    """Non-decreasing times, starting anywhere."""
    start = draw(st.floats(min_value=0, max_value=1000, allow_nan=False))
    times = []
    now = start
    for step in draw(st.lists(steps, min_size=1, max_size=max_size)):
        now += step
        times.append(now)
    return times


# -- RestartIntensity on its own ----------------------------------------------


@given(times=crash_times(), max_restarts=st.integers(min_value=0, max_value=8), within=windows)
def test_restart_intensity_gives_up_at_the_same_restart_as_the_reference_model(
    times: list[float], max_restarts: int, within: float
) -> None:
    intensity = RestartIntensity(max_restarts, within)
    expected = model_give_up_index(times, max_restarts, within)

    gave_up_at = None
    for index, t in enumerate(times):
        if not intensity.record(t):
            gave_up_at = index
            break

    assert gave_up_at == expected


@given(times=crash_times(), within=windows, later=steps)
def test_restart_intensity_counts_in_window_like_the_reference_model(
    times: list[float], within: float, later: float
) -> None:
    intensity = RestartIntensity(max_restarts=len(times), within=within)
    for index, t in enumerate(times):
        assert intensity.record(t), "never over the limit: max_restarts is the total"
        assert intensity.in_window(t) == model_in_window(times[: index + 1], t, within)
    now = times[-1] + later
    assert intensity.in_window(now) == model_in_window(times, now, within)


def test_a_restart_exactly_within_seconds_ago_still_counts() -> None:
    intensity = RestartIntensity(max_restarts=1, within=5.0)
    assert intensity.record(10.0)
    assert not intensity.record(15.0), "10.0 >= 15.0 - 5.0: both count, two > one"


def test_a_restart_just_over_within_seconds_ago_no_longer_counts() -> None:
    intensity = RestartIntensity(max_restarts=1, within=5.0)
    assert intensity.record(10.0)
    assert intensity.record(15.5)
    assert intensity.in_window(15.5) == 1


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"max_restarts": -1}, "max_restarts"),
        ({"max_restarts": 1.5}, "max_restarts"),
        ({"max_restarts": True}, "max_restarts"),
        ({"within": 0}, "within"),
        ({"within": -1.0}, "within"),
        ({"within": float("nan")}, "within"),
    ],
    ids=repr,
)
def test_supervisor_flags_reject_an_impossible_intensity_naming_the_field(
    kwargs: dict[str, object], field: str
) -> None:
    with pytest.raises(ValueError, match=field):
        SupervisorFlags(**kwargs)  # type: ignore[arg-type]


# -- through a real supervisor ------------------------------------------------


class Outcomes(Recorder):
    """A Recorder that can wait for the supervisor's decision on the n-th crash.

    Each crash of /root/w ends in exactly one of: RESTARTED of /root/w, or
    GAVE_UP of /root. Waiting for either keeps a wrong guess from costing the
    whole timeout.
    """

    def decisions(self) -> list[LifecycleEvent]:
        with self._condition:
            return [e for e in self.events if _is_decision(e)]

    def wait_for_decisions(self, count: int, timeout: float = WAIT) -> list[LifecycleEvent]:
        deadline = time.monotonic() + timeout
        with self._condition:
            while True:
                found = [e for e in self.events if _is_decision(e)]
                if len(found) >= count:
                    return found
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"waited {timeout}s for decision {count}; "
                        f"saw {[(e.kind.value, e.path) for e in self.events]}"
                    )
                self._condition.wait(remaining)


def _is_decision(event: LifecycleEvent) -> bool:
    return (event.kind, event.path) in {
        (EventKind.RESTARTED, "/root/w"),
        (EventKind.GAVE_UP, "/root"),
    }


class Tree:
    """One root on a ManualClock with a crashing worker 'w' (and a bystander)."""

    def __init__(self, max_restarts: int, within: float, *, log: list[str] | None = None) -> None:
        self.clock = ManualClock()
        self.events = Outcomes()
        self.log = log if log is not None else []
        self.root: SupervisorRef = start_supervisor(
            SupervisorFlags(max_restarts=max_restarts, within=within),
            [
                ChildSpec(id="w", start=functools.partial(Worker, self.log, "w")),
                ChildSpec(id="bystander", start=functools.partial(Worker, self.log, "bystander")),
            ],
            clock=self.clock,
            observers=[self.events],
        )
        self.w = self.root.address("w")

    def crash(self) -> LifecycleEvent:
        """Crash 'w' once and return the supervisor's decision about it."""
        before = len(self.events.decisions())
        self.w.tell("crash")
        return self.events.wait_for_decisions(before + 1)[before]

    def state_of(self, child_id: str) -> ActorState:
        (info,) = [c for c in self.root.which_children() if c.id == child_id]
        return info.state


@pytest.fixture
def make_tree() -> Iterator[Callable[..., Tree]]:
    trees: list[Tree] = []

    def make(max_restarts: int, within: float, **kwargs: object) -> Tree:
        tree = Tree(max_restarts, within, **kwargs)  # type: ignore[arg-type]
        trees.append(tree)
        return tree

    yield make
    for tree in trees:
        tree.root.stop(timeout=5)


def test_exactly_max_restarts_crashes_inside_the_window_keep_the_supervisor_running(
    make_tree: Callable[..., Tree],
) -> None:
    tree = make_tree(max_restarts=3, within=10.0)
    for _ in range(3):
        tree.clock.advance(1.0)
        decision = tree.crash()
        assert decision.kind is EventKind.RESTARTED

    assert tree.root.is_alive()
    assert tree.state_of("w") is ActorState.RUNNING
    assert tree.root.snapshot()["intensity"]["restarts_in_window"] == 3
    assert tree.w.ask("ping", timeout=5), "the third incarnation answers"


def test_one_crash_over_max_restarts_inside_the_window_makes_the_supervisor_give_up(
    make_tree: Callable[..., Tree],
) -> None:
    tree = make_tree(max_restarts=3, within=10.0)
    for _ in range(3):
        tree.clock.advance(1.0)
        assert tree.crash().kind is EventKind.RESTARTED

    tree.clock.advance(1.0)
    decision = tree.crash()

    assert decision.kind is EventKind.GAVE_UP
    reason = tree.root.wait(timeout=5)
    assert reason is not None
    assert (reason.kind, reason.path) == (ExitKind.GAVE_UP, "/root")
    assert "more than 3 restarts within 10s" in reason.message
    assert reason.cause is not None
    assert (reason.cause.kind, reason.cause.path) == (ExitKind.CRASH, "/root/w")
    assert reason.cause.error_type == "ValueError"
    assert reason.cause.message == "w crashed on purpose"
    assert decision.reason == reason, "the GAVE_UP event carries the same chain"
    # It stops its other children on the way out.
    assert "stop bystander" in tree.log
    (stopped,) = tree.events.of(EventKind.EXITED, "/root/bystander")
    assert stopped.reason is not None and stopped.reason.kind is ExitKind.SHUTDOWN


def test_crashes_spread_further_apart_than_within_never_make_the_supervisor_give_up(
    make_tree: Callable[..., Tree],
) -> None:
    tree = make_tree(max_restarts=2, within=5.0)
    for _ in range(8):
        tree.clock.advance(5.5)
        assert tree.crash().kind is EventKind.RESTARTED
        assert tree.root.snapshot()["intensity"]["restarts_in_window"] == 1

    assert tree.root.is_alive()
    assert tree.w.ask("ping", timeout=5)


def test_a_restart_exactly_within_seconds_after_another_still_counts_against_the_limit(
    make_tree: Callable[..., Tree],
) -> None:
    tree = make_tree(max_restarts=1, within=5.0)
    assert tree.crash().kind is EventKind.RESTARTED
    tree.clock.advance(5.0)

    assert tree.crash().kind is EventKind.GAVE_UP
    reason = tree.root.wait(timeout=5)
    assert reason is not None and reason.kind is ExitKind.GAVE_UP


def test_max_restarts_zero_gives_up_on_the_first_crash(make_tree: Callable[..., Tree]) -> None:
    tree = make_tree(max_restarts=0, within=5.0)

    assert tree.crash().kind is EventKind.GAVE_UP

    reason = tree.root.wait(timeout=5)
    assert reason is not None and reason.kind is ExitKind.GAVE_UP
    assert reason.cause is not None
    assert (reason.cause.kind, reason.cause.error_type) == (ExitKind.CRASH, "ValueError")
    assert tree.events.of(EventKind.RESTARTED) == []


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    # Small half-second steps and windows: crashes often land on the window edge.
    schedule=st.lists(
        st.integers(min_value=0, max_value=5).map(lambda k: k / 2), min_size=1, max_size=8
    ),
    max_restarts=st.integers(min_value=0, max_value=3),
    within=st.integers(min_value=1, max_value=4).map(lambda k: k / 2),
)
@example(schedule=[0.0, 1.0, 1.0], max_restarts=2, within=2.0)  # third crash on the edge
@example(schedule=[0.0, 1.5, 1.0], max_restarts=1, within=1.0)  # out, then in again
def test_a_real_supervisor_gives_up_at_the_crash_the_reference_model_predicts(
    schedule: list[float], max_restarts: int, within: float
) -> None:
    times = list(itertools.accumulate(schedule))
    expected = model_give_up_index(times, max_restarts, within)
    tree = Tree(max_restarts, within)
    try:
        for index, step in enumerate(schedule):
            tree.clock.advance(step)
            decision = tree.crash()
            if index == expected:
                assert decision.kind is EventKind.GAVE_UP, f"crash {index} at {times[index]}"
                reason = tree.root.wait(timeout=5)
                assert reason is not None and reason.kind is ExitKind.GAVE_UP
                break
            assert decision.kind is EventKind.RESTARTED, f"crash {index} at {times[index]}"
        else:
            assert expected is None
            assert tree.root.is_alive()
    finally:
        tree.root.stop(timeout=5)


# -- failed restart attempts ----------------------------------------------------


class StartsOnlyOnce(Worker):
    """Starts the first time; every later incarnation fails in `on_start`."""

    def __init__(self, starts: Iterator[int]) -> None:
        super().__init__(name="w")
        self.incarnation = next(starts)

    def on_start(self) -> None:
        if self.incarnation > 1:
            raise RuntimeError(f"cannot start incarnation {self.incarnation}")


@pytest.mark.parametrize("max_restarts", [1, 3])
def test_failed_restart_attempts_count_against_intensity_until_the_supervisor_gives_up(
    max_restarts: int,
) -> None:
    starts = itertools.count(1)
    events = Recorder()
    root = start_supervisor(
        SupervisorFlags(max_restarts=max_restarts, within=60.0),
        [ChildSpec(id="w", start=functools.partial(StartsOnlyOnce, starts))],
        clock=ManualClock(),
        observers=[events],
    )
    try:
        root.address("w").tell("crash")
        reason = root.wait(timeout=5)

        assert reason is not None and reason.kind is ExitKind.GAVE_UP
        # The crash uses restart 1; failed attempts 1..max_restarts-1 use the
        # rest; failed attempt max_restarts is one too many.
        incarnations = 1 + max_restarts
        assert next(starts) == incarnations + 1, "no attempt after giving up"
        assert reason.cause is not None
        assert (reason.cause.kind, reason.cause.path) == (ExitKind.START_FAILURE, "/root/w")
        assert reason.cause.error_type == "RuntimeError"
        assert reason.cause.message == f"cannot start incarnation {incarnations}"
        exits = [e.reason.kind for e in events.of(EventKind.EXITED, "/root/w") if e.reason]
        assert exits == [ExitKind.CRASH] + [ExitKind.START_FAILURE] * max_restarts
        assert events.of(EventKind.RESTARTED) == []
    finally:
        root.stop(timeout=5)


def test_a_factory_that_raises_on_restart_counts_against_intensity_too() -> None:
    calls = itertools.count(1)

    def factory() -> SupervisedActor:
        if next(calls) > 1:
            raise LookupError("plugin vanished")
        return Worker(name="w")

    root = start_supervisor(
        SupervisorFlags(max_restarts=2, within=60.0),
        [ChildSpec(id="w", start=factory)],
        clock=ManualClock(),
    )
    try:
        root.address("w").tell("crash")
        reason = root.wait(timeout=5)

        assert reason is not None and reason.kind is ExitKind.GAVE_UP
        assert reason.cause is not None
        assert (reason.cause.kind, reason.cause.error_type, reason.cause.message) == (
            ExitKind.START_FAILURE,
            "LookupError",
            "plugin vanished",
        )
        assert next(calls) == 4, "1 start + 2 failed attempts, then no more"
    finally:
        root.stop(timeout=5)
