"""Edge cases of the kernel found by a second, adversarial read.

Each test once failed on the kernel: it pins one point of docs/supervision.md
or of the OTP contract it cites. Interleavings are forced with events and a
ManualClock, never with sleeps; every tree is stopped, also on failure.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from noetl_actors.errors import ActorDeadError, SupervisionError
from noetl_actors.supervision import (
    INFINITY,
    ActorState,
    Backoff,
    Child,
    ChildSpec,
    EventKind,
    ManualClock,
    Restart,
    Strategy,
    Supervisor,
    SupervisorFlags,
    SupervisorRef,
    start_root,
    start_supervisor,
    supervisor_spec,
)
from tests.helpers import WAIT, Recorder, Worker


class _FailsToStart(Worker):
    def on_start(self) -> None:
        raise ValueError("cannot start")


@pytest.fixture
def trees() -> Iterator[list[SupervisorRef]]:
    """Roots registered here are stopped at the end of the test, pass or fail."""
    started: list[SupervisorRef] = []
    yield started
    for tree in started:
        tree.stop(timeout=WAIT)


# -- 1. a subtree that gives up while starting is not a start failure ----------


def test_start_child_of_a_subtree_that_gives_up_while_starting_raises_and_is_not_added(
    trees: list[SupervisorRef],
) -> None:
    """docs: 'a child that fails to start from start_child raises SupervisionError
    and is not added. The supervisor itself keeps running.'

    A nested supervisor whose own children use up its intensity inside its
    `on_start` exits GAVE_UP, but `_launch` only reports `_start_failure`, so
    the parent treats it as started, adds it, and then restarts it (permanent)
    until the *root* gives up: one bad `start_child` kills the whole tree.
    """
    root = start_supervisor(SupervisorFlags(max_restarts=3, within=60))
    trees.append(root)
    bad_subtree = supervisor_spec(
        "sub", SupervisorFlags(max_restarts=0), [ChildSpec(id="bad", start=_FailsToStart)]
    )

    with pytest.raises(SupervisionError):
        root.start_child(bad_subtree)

    assert root.wait(timeout=0.5) is None, f"the root died: {root.exit_reason}"
    assert root.which_children() == []


def test_start_supervisor_whose_children_use_up_intensity_while_starting_raises(
    trees: list[SupervisorRef],
) -> None:
    """`start_supervisor` promises SupervisionError when the root fails to
    start; a root that gives up inside `on_start` is returned as a dead ref."""
    try:
        root = start_supervisor(
            SupervisorFlags(max_restarts=0), [ChildSpec(id="bad", start=_FailsToStart)]
        )
    except SupervisionError:
        return
    trees.append(root)
    pytest.fail(f"start_supervisor returned a root that had already exited: {root.exit_reason}")


# -- 2. temporary siblings must not be restarted by one_for_all/rest_for_one ----


@pytest.mark.parametrize("strategy", [Strategy.ONE_FOR_ALL, Strategy.REST_FOR_ONE],
                         ids=lambda s: s.value)
def test_a_temporary_sibling_stopped_by_a_group_restart_is_not_restarted(
    strategy: Strategy, trees: list[SupervisorRef]
) -> None:
    """OTP: 'A temporary child process is never restarted (even when the
    supervisor's restart strategy is rest_for_one or one_for_all and a
    sibling's death causes the temporary process to be terminated).'
    docs: temporary children are 'never' restarted and 'forgotten once they exit'.
    """
    recorder = Recorder()
    root = start_supervisor(
        SupervisorFlags(strategy=strategy, max_restarts=5, within=60),
        [ChildSpec(id="a", start=Worker),
         ChildSpec(id="t", start=Worker, restart=Restart.TEMPORARY),
         ChildSpec(id="c", start=Worker)],
        observers=[recorder],
    )
    trees.append(root)

    root.address("a").tell("crash")
    recorder.wait_for(EventKind.RESTARTED, "/root/c")

    assert recorder.of(EventKind.RESTARTED, "/root/t") == []
    assert [c.id for c in root.which_children()] == ["a", "c"]


# -- 3. a misused verb must not crash the supervisor ---------------------------


def test_a_verb_called_with_a_wrong_argument_does_not_crash_the_supervisor(
    trees: list[SupervisorRef],
) -> None:
    """docs: misuse raises an error and 'The supervisor itself keeps running';
    errors.py: wrong types raise TypeError. Today any exception other than
    ChildError/SupervisionError inside a `_Call` is a crash of the supervisor
    itself: its whole subtree is stopped (and a parent restarts it)."""
    root = start_supervisor(SupervisorFlags(), [ChildSpec(id="w", start=Worker)])
    trees.append(root)

    with pytest.raises((TypeError, AttributeError)):
        root.start_child("w")  # type: ignore[arg-type]

    assert root.wait(timeout=0.5) is None, f"the supervisor crashed: {root.exit_reason}"
    assert [c.id for c in root.which_children()] == ["w"]


# -- 4. a supervisor killed past its grace period leaves its subtree running ----


def test_after_the_tree_stopped_no_grandchild_of_a_killed_child_supervisor_still_runs(
    trees: list[SupervisorRef],
) -> None:
    """docs: 'A stopped tree leaves no thread behind'; a killed child 'takes no
    further message'.

    `sub` has a 0.2 s grace. While it stops its children gracefully (here
    `slow`, whose on_stop takes long) the root kills it, but `_kill` on a
    Supervisor only sets a flag nobody reads in `_before_exit`: `sub` goes on
    with full grace periods, and its child `a` has not even been asked to stop
    when `root.stop()` returns. `a` still answers messages.
    """
    release = threading.Event()

    class SlowStop(Worker):
        def on_stop(self) -> None:
            release.wait(WAIT)

    sub = supervisor_spec(
        "sub", SupervisorFlags(),
        [ChildSpec(id="a", start=Worker), ChildSpec(id="slow", start=SlowStop)],
        shutdown=0.2,
    )
    root = start_supervisor(SupervisorFlags(), [sub])
    a = root.child_supervisor("sub").address("a")
    a_ref = a.ref
    assert a_ref is not None
    try:
        reason = root.stop(timeout=WAIT)
        assert reason is not None, "the root did not stop"

        assert not a_ref.is_alive(), (
            "root.stop() returned but /root/sub/a is still running and takes messages"
        )
    finally:
        release.set()


# -- 5. a restarted supervisor replays its predecessor's restart orders ---------


def test_a_restarted_supervisor_does_not_run_its_predecessors_stale_restart_order(
    trees: list[SupervisorRef],
) -> None:
    """Leftovers of a dead child supervisor's inbox (internal `_RestartDue`,
    `_ChildExit`) are carried by its Address to the next incarnation, and
    restart tokens restart at 1 in every incarnation. So a stale
    `_RestartDue(("l2",), token=2)` of the old `mid` matches the new `mid`'s
    token for l2 and restarts l2 at once, skipping its backoff.

    Forced interleaving (ManualClock): l1 and l2 crash (tokens 1 and 2, 5 s
    backoff each); advance 5 s fires both timers; old mid handles l1's restart,
    whose on_start blocks and then fails, so mid gives up with l2's restart
    order still queued. In the new mid, l1 and l2 both fail their first start
    (tokens 1 and 2 again) and back off for 5 s.
    """
    gate = threading.Event()
    starts = {"l1": 0, "l2": 0}

    class Leaf(Worker):
        def on_start(self) -> None:
            starts[self.name] += 1
            n = starts[self.name]
            if self.name == "l1" and n == 2:  # old mid's restart of l1
                assert gate.wait(WAIT)
                raise RuntimeError("l1 restart fails: old mid gives up")
            if (self.name, n) in (("l1", 3), ("l2", 2)):  # first starts in the new mid
                raise RuntimeError(f"{self.name} fails once in the new mid")

    clock = ManualClock()
    recorder = Recorder()
    mid = supervisor_spec(
        "mid",
        SupervisorFlags(max_restarts=2, within=100, backoff=Backoff(initial=5)),
        [ChildSpec(id=n, start=functools.partial(Leaf, name=n)) for n in ("l1", "l2")],
    )
    root = start_supervisor(SupervisorFlags(), [mid], clock=clock, observers=[recorder])
    trees.append(root)
    old_mid = root.child_supervisor("mid")
    old_mid.address("l1").tell("crash")
    recorder.wait_for(EventKind.BACKING_OFF, "/root/mid/l1")
    old_mid.address("l2").tell("crash")
    recorder.wait_for(EventKind.BACKING_OFF, "/root/mid/l2")

    clock.advance(5)  # both restart orders are now in old mid's inbox
    gate.set()
    recorder.wait_for(EventKind.RESTARTED, "/root/mid")
    new_mid = root.child_supervisor("mid")

    states = {c.id: c.state for c in new_mid.which_children()}
    assert states["l2"] is ActorState.BACKING_OFF, (
        f"l2 was restarted without waiting for its backoff (clock never advanced): {states}"
    )


# -- 6. snapshot: a healthy middle supervisor is shown unresponsive -------------


def test_the_snapshot_shows_only_the_stuck_supervisor_unresponsive_not_its_healthy_parent(
    trees: list[SupervisorRef],
) -> None:
    """docs: 'A child supervisor that does not answer within a second is shown
    unresponsive.' Every level asks its child supervisors one after another
    with its own 1 s timeout, so a parent always times out before (or while)
    its child waits for a stuck grandchild: the idle `mid` is reported
    unresponsive and the whole (healthy) subtree under it disappears.

    l1 and l2 are made busy (each terminating a child whose on_stop blocks):
    mid needs 2 s to hear both time out, the root gives up on mid after 1 s.
    """
    release = threading.Event()
    stopping = threading.Semaphore(0)

    class Stuck(Worker):
        def on_stop(self) -> None:
            stopping.release()
            release.wait(WAIT * 2)

    def leaf(name: str) -> ChildSpec:
        return supervisor_spec(name, SupervisorFlags(),
                               [ChildSpec(id="w", start=Stuck, shutdown=INFINITY)])

    root = start_supervisor(SupervisorFlags(),
                            [supervisor_spec("mid", SupervisorFlags(), [leaf("l1"), leaf("l2")])])
    trees.append(root)
    mid = root.child_supervisor("mid")
    busy = [
        threading.Thread(target=mid.child_supervisor(n).terminate_child, args=("w",),
                         kwargs={"timeout": WAIT * 3})
        for n in ("l1", "l2")
    ]
    for thread in busy:
        thread.start()
    try:
        assert stopping.acquire(timeout=WAIT) and stopping.acquire(timeout=WAIT)

        (mid_entry,) = root.snapshot()["children"]

        assert not mid_entry.get("unresponsive"), (
            "the idle /root/mid is shown unresponsive because its own children are"
        )
        assert [c["id"] for c in mid_entry["children"]] == ["l1", "l2"]
    finally:
        release.set()
        for thread in busy:
            thread.join(WAIT)


# -- 7. an address of a grandchild dies with its supervisor's incarnation -------


def test_an_address_of_a_grandchild_reaches_it_after_its_supervisor_restarted(
    trees: list[SupervisorRef],
) -> None:
    """docs: '`SupervisorRef.address(id)` returns an Address that always reaches
    the current incarnation.' Addresses live in the `_Child` records of one
    supervisor incarnation: when `mid` gives up and is restarted, every
    address obtained from it is closed for good, although `leaf` is back."""
    recorder = Recorder()
    mid = supervisor_spec("mid", SupervisorFlags(max_restarts=0),
                          [ChildSpec(id="leaf", start=Worker)])
    root = start_supervisor(SupervisorFlags(), [mid], observers=[recorder])
    trees.append(root)
    leaf = root.child_supervisor("mid").address("leaf")

    leaf.tell("crash")  # mid gives up at once; root restarts mid (and leaf)
    recorder.wait_for(EventKind.RESTARTED, "/root/mid")

    try:
        urn = leaf.ask("ping", timeout=WAIT)
    except ActorDeadError as error:
        pytest.fail(f"the address of /root/mid/leaf is dead although leaf runs again: {error}")
    assert urn == root.child_supervisor("mid").address("leaf").ref.actor_urn  # type: ignore[union-attr]


# -- 8. backoff resets although the child never ran quietly ---------------------


def test_backoff_keeps_growing_for_a_child_that_crashes_as_soon_as_it_restarts(
    trees: list[SupervisorRef],
) -> None:
    """Backoff's docstring: n counts restarts 'since it last ran quietly for
    `reset_after` seconds' (Akka: reset after the child *ran* that long).
    `_backoff_delay` measures from the last failure, which includes the
    backoff wait itself: once a delay reaches `reset_after`, the next
    immediate crash resets n to 0, so delays between `reset_after` and `max`
    are never used and a crash-looping child cycles 4, 8, 16, 4, 8, 16..."""
    clock = ManualClock()
    recorder = Recorder()
    root = start_supervisor(
        SupervisorFlags(max_restarts=100, within=1000,
                        backoff=Backoff(initial=4, multiplier=2, max=64, reset_after=10)),
        [ChildSpec(id="w", start=Worker)],
        clock=clock, observers=[recorder],
    )
    trees.append(root)
    w = root.address("w")
    delays: list[float] = []
    for n in range(1, 5):
        w.tell("crash")  # crashes immediately after every restart: never quiet
        (event,) = recorder.wait_for(EventKind.BACKING_OFF, "/root/w", count=n)[n - 1:]
        assert event.delay is not None
        delays.append(event.delay)
        clock.advance(event.delay)
        recorder.wait_for(EventKind.RESTARTED, "/root/w", count=n)

    assert delays == [4, 8, 16, 32]


def test_a_crashed_incarnation_is_freed_at_once_without_the_garbage_collector() -> None:
    """A dead incarnation in a reference cycle waits for a full GC pass: a long pause."""
    import gc
    import weakref

    recorder = Recorder()
    root = start_supervisor(SupervisorFlags(), [ChildSpec(id="w", start=Worker)],
                            observers=[recorder])
    gc.disable()
    try:
        (info,) = root.which_children()
        assert info.ref is not None
        dead = weakref.ref(_actor_behind(info.ref))
        root.address("w").tell("crash")
        recorder.wait_for(EventKind.RESTARTED, "/root/w")
        info = None
        root.address("w").ask("ping", timeout=5)
        assert dead() is None, "the crashed incarnation is still referenced"
    finally:
        gc.enable()
        root.stop(timeout=5)


class _ResetOnFailure(Supervisor):
    """The documented recipe: a group restart from the first child it was built with."""

    def restart_group(self, child: Child) -> list[Child]:
        return self.reset_children()


def _stops(ref: Any) -> bool:
    deadline = time.monotonic() + WAIT
    while ref.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    return not ref.is_alive()


def test_reset_children_stops_a_running_start_child_child(trees: list[SupervisorRef]) -> None:
    """`reset_children` forgot a running dynamic child without stopping it: it ran on
    under no supervisor, even after the tree stopped."""
    recorder = Recorder()
    root = start_root(
        _ResetOnFailure(SupervisorFlags(strategy=Strategy.ONE_FOR_ALL, max_restarts=5),
                        [ChildSpec(id="a", start=functools.partial(Worker, name="a"))]),
        id="root", observers=[recorder])
    trees.append(root)
    dyn = root.start_child(ChildSpec(id="dyn", start=Worker))

    root.address("a").tell("crash")
    recorder.wait_for(EventKind.RESTARTED, "/root/a")

    assert [c.id for c in root.which_children()] == ["a"]
    assert _stops(dyn), "the forgotten dynamic child still runs"
    recorder.wait_for(EventKind.EXITED, "/root/dyn")


class _KeepsItsChildrenView(_ResetOnFailure):
    """Keeps the `children` view it got in `on_start`, as a hook's helper may."""

    def on_start(self) -> None:
        super().on_start()
        self.kept = self.children


def test_a_kept_children_view_stays_true_after_reset_children_and_exit(
    trees: list[SupervisorRef],
) -> None:
    """`reset_children` and the exit replaced the dict a kept view showed: it went stale."""
    recorder = Recorder()
    supervisor = _KeepsItsChildrenView(
        SupervisorFlags(strategy=Strategy.ONE_FOR_ALL, max_restarts=5),
        [ChildSpec(id="a", start=Worker)])
    root = start_root(supervisor, id="root", observers=[recorder])
    trees.append(root)
    root.start_child(ChildSpec(id="t", start=Worker, restart=Restart.TEMPORARY))
    assert list(supervisor.kept) == ["a", "t"]

    root.address("a").tell("crash")
    recorder.wait_for(EventKind.RESTARTED, "/root/a")

    assert list(supervisor.kept) == ["a"]
    root.stop(timeout=WAIT)
    assert list(supervisor.kept) == []


def _actor_behind(ref: Any) -> Any:
    from noetl_actors.supervision._actor import _live_actors

    return _live_actors.get(ref.actor_urn)
