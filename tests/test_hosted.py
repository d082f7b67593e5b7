"""Hosted children: actors that run on their supervisor's thread keep every guarantee.

A class with `hosted = True` gets no thread of its own under a supervisor;
these tests hold that it is supervised exactly as a threaded child is:
exit reasons, restarts, strategies, monitors, stop and kill, start
failures, asks from other threads, addresses across restarts, and no
thread left behind. A hosted supervisor (a workflow's task) runs, with its
hosted children, on its own supervisor's thread, and keeps the same rules;
so does a supervisor run on an asyncio loop's thread (a workflow, on the
bridge's loop), and what a loop hosted is killed when the loop ends.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import attrs
import pykka
import pytest

from noetl_actors.bridge._loop import LoopThread
from noetl_actors.errors import SupervisionError
from noetl_actors.supervision import (
    BRUTAL_KILL,
    ChildSpec,
    ChildType,
    EventKind,
    ExitKind,
    LoopHost,
    Restart,
    Strategy,
    SupervisedActor,
    Supervisor,
    SupervisorFlags,
    monitor,
    start_supervisor,
)
from noetl_actors.supervision._actor import _live_actors
from tests.helpers import Recorder, Worker

WAIT = 5.0


class Hosted(Worker):
    """A `Worker` (ping, crash, exit) that runs on its supervisor's thread."""

    hosted = True

    def on_receive(self, message: Any) -> Any:
        if message == "thread":
            return threading.current_thread().name
        if message == "tell-self":
            for n in range(3):
                self.actor_ref.tell(("n", n))
            return None
        if isinstance(message, tuple) and message[0] == "n" and self.log is not None:
            self.log.append(f"n{message[1]}")
            return None
        return super().on_receive(message)


class FailsToStart(SupervisedActor):
    hosted = True

    def on_start(self) -> None:
        raise RuntimeError("no start")


def _actor(ref: pykka.ActorRef[Any]) -> Any:
    return _live_actors.get(ref.actor_urn)


def test_a_hosted_child_runs_on_its_supervisors_thread_and_starts_none() -> None:
    before = threading.active_count()
    root = start_supervisor(SupervisorFlags(), [ChildSpec(id=f"h{n}", start=Hosted)
                                                for n in range(20)])
    try:
        assert threading.active_count() == before + 1, "only the supervisor's thread"
        names = {root.address(f"h{n}").ask("thread", timeout=WAIT) for n in range(20)}
        assert names == {"noetl/root"}
        assert root.count_children().active == 20
    finally:
        root.stop(timeout=WAIT)


def test_a_threaded_start_of_a_hosted_class_gets_a_thread_of_its_own() -> None:
    ref = Hosted.start()
    try:
        assert ref.ask("thread", timeout=WAIT) != threading.current_thread().name
        assert ref.ask("ping", timeout=WAIT) == ref.actor_urn
    finally:
        ref.stop()


def test_messages_are_handled_in_order_including_those_it_tells_itself() -> None:
    log: list[str] = []
    root = start_supervisor(SupervisorFlags(), [ChildSpec(id="h", start=lambda: Hosted(log))])
    try:
        address = root.address("h")
        address.tell("tell-self")
        address.tell("tell-self")
        address.ask("ping", timeout=WAIT)
        deadline = time.monotonic() + WAIT
        while len(log) < 7 and time.monotonic() < deadline:
            time.sleep(0.005)
        assert log == ["start ", "n0", "n1", "n2", "n0", "n1", "n2"]
    finally:
        root.stop(timeout=WAIT)


def test_a_crash_is_seen_with_its_reason_and_restarted_and_the_ask_gets_the_error() -> None:
    recorder = Recorder()
    root = start_supervisor(SupervisorFlags(max_restarts=3, within=60),
                            [ChildSpec(id="h", start=Hosted)], observers=[recorder])
    try:
        address = root.address("h")
        first = address.ask("ping", timeout=WAIT)
        with pytest.raises(ValueError, match="crashed on purpose"):
            address.ask("crash", timeout=WAIT)
        recorder.wait_for(EventKind.RESTARTED, "/root/h")
        (exit_,) = recorder.of(EventKind.EXITED, "/root/h")
        assert exit_.reason is not None and exit_.reason.kind is ExitKind.CRASH
        assert exit_.reason.error_type == "ValueError"
        assert address.ask("ping", timeout=WAIT) != first
    finally:
        root.stop(timeout=WAIT)


def test_messages_behind_the_crash_wait_for_the_next_incarnation() -> None:
    log: list[str] = []
    recorder = Recorder()
    root = start_supervisor(SupervisorFlags(), [ChildSpec(id="h", start=lambda: Hosted(log))],
                            observers=[recorder])
    try:
        address = root.address("h")
        address.tell("crash")
        address.tell(("n", 1))
        recorder.wait_for(EventKind.RESTARTED, "/root/h")
        address.ask("ping", timeout=WAIT)
        assert log.count("n1") == 1
        assert log.index("n1") > 1, log  # after the second start
    finally:
        root.stop(timeout=WAIT)


def test_one_for_all_stops_and_restarts_hosted_siblings_in_order() -> None:
    log: list[str] = []
    recorder = Recorder()
    specs = [ChildSpec(id=name, start=lambda name=name: Hosted(log, name)) for name in "abc"]
    root = start_supervisor(SupervisorFlags(strategy=Strategy.ONE_FOR_ALL, max_restarts=3,
                                            within=60), specs, observers=[recorder])
    try:
        log.clear()
        root.address("b").tell("crash")
        recorder.wait_for(EventKind.RESTARTED, "/root/c")
        assert log == ["stop c", "stop a", "start a", "start b", "start c"]
        kinds = {(e.path, e.reason.kind) for e in recorder.of(EventKind.EXITED)
                 if e.reason is not None}
        assert kinds == {("/root/b", ExitKind.CRASH), ("/root/a", ExitKind.SHUTDOWN),
                         ("/root/c", ExitKind.SHUTDOWN)}
    finally:
        root.stop(timeout=WAIT)


def test_a_start_failure_is_a_start_failure() -> None:
    recorder = Recorder()
    root = start_supervisor(SupervisorFlags(max_restarts=1, within=60),
                            [ChildSpec(id="ok", start=Hosted)], observers=[recorder])
    try:
        with pytest.raises(Exception, match="no start"):
            root.start_child(ChildSpec(id="bad", start=FailsToStart,
                                       restart=Restart.TEMPORARY))
        assert [c.id for c in root.which_children()] == ["ok"]
        assert root.is_alive()
    finally:
        root.stop(timeout=WAIT)


def _terminate(cls: type[Worker], shutdown: float) -> tuple[Any, ...]:
    log: list[str] = []
    recorder = Recorder()
    root = start_supervisor(
        SupervisorFlags(), [ChildSpec(id="h", start=lambda: cls(log), shutdown=shutdown)],
        observers=[recorder])
    try:
        (info,) = root.which_children()
        assert info.ref is not None
        downs: list[Any] = []
        monitor(info.ref, downs.append)
        root.terminate_child("h")
        (exit_,) = recorder.of(EventKind.EXITED, "/root/h")
        assert exit_.reason is not None
        assert not info.ref.is_alive()
        return (exit_.reason.kind, [d.reason.kind for d in downs], log,
                recorder.of(EventKind.ABANDONED))
    finally:
        root.stop(timeout=WAIT)


@pytest.mark.parametrize("shutdown", [5.0, BRUTAL_KILL], ids=["graceful", "brutal"])
def test_terminate_child_stops_it_as_it_stops_a_threaded_child(shutdown: float) -> None:
    hosted = _terminate(Hosted, shutdown)
    assert hosted == _terminate(Worker, shutdown)
    kind = ExitKind.SHUTDOWN if shutdown else ExitKind.KILLED
    assert hosted[0] is kind
    assert hosted[1] == [ExitKind.NORMAL if shutdown else ExitKind.KILLED]
    assert hosted[3] == []


def test_a_hosted_child_that_stops_itself_exits_normally_and_transient_stays_down() -> None:
    recorder = Recorder()
    root = start_supervisor(SupervisorFlags(),
                            [ChildSpec(id="h", start=Hosted, restart=Restart.TRANSIENT)],
                            observers=[recorder])
    try:
        root.address("h").tell("exit")
        (exit_,) = recorder.wait_for(EventKind.EXITED, "/root/h")
        assert exit_.reason is not None and exit_.reason.kind is ExitKind.NORMAL
        assert root.count_children().active == 0
    finally:
        root.stop(timeout=WAIT)


def test_stopping_the_tree_stops_hosted_children_in_reverse_order() -> None:
    log: list[str] = []
    root = start_supervisor(SupervisorFlags(),
                            [ChildSpec(id=n, start=lambda n=n: Hosted(log, n)) for n in "abc"])
    refs = [c.ref for c in root.which_children()]
    reason = root.stop(timeout=WAIT)
    assert reason is not None and reason.kind is ExitKind.NORMAL
    assert log[-3:] == ["stop c", "stop b", "stop a"]
    assert all(ref is not None and not ref.is_alive() for ref in refs)


def test_killing_the_supervisor_kills_its_hosted_children() -> None:
    root = start_supervisor(SupervisorFlags(), [ChildSpec(id="h", start=Hosted)])
    (info,) = root.which_children()
    assert info.ref is not None
    actor = _actor(info.ref)
    root._supervisor._kill()
    assert root.wait(WAIT) is not None
    assert actor.exit_reason is not None and actor.exit_reason.kind is ExitKind.KILLED


def test_a_crashed_hosted_incarnation_is_freed_at_once_without_the_garbage_collector() -> None:
    import gc
    import weakref

    recorder = Recorder()
    root = start_supervisor(SupervisorFlags(), [ChildSpec(id="h", start=Hosted)],
                            observers=[recorder])
    gc.disable()
    try:
        (info,) = root.which_children()
        assert info.ref is not None
        dead = weakref.ref(_actor(info.ref))
        root.address("h").tell("crash")
        recorder.wait_for(EventKind.RESTARTED, "/root/h")
        info = None
        root.address("h").ask("ping", timeout=WAIT)
        assert dead() is None, "the crashed incarnation is still referenced"
    finally:
        gc.enable()
        root.stop(timeout=WAIT)


# -- hosted supervisors: a subtree on one thread ---------------------------------


class HostedSupervisor(Supervisor):
    """A supervisor that runs on its own supervisor's thread, as a workflow's tasks do."""

    hosted = True


def _hosted_subtree(log: list[str], strategy: Strategy = Strategy.ONE_FOR_ONE) -> ChildSpec:
    children = [ChildSpec(id=n, start=lambda n=n: Hosted(log, n)) for n in "ab"]
    flags = SupervisorFlags(strategy=strategy, max_restarts=3, within=60)
    return ChildSpec(
        id="sub", start=lambda: HostedSupervisor(flags, children), type=ChildType.SUPERVISOR
    )


def test_a_hosted_supervisor_and_its_hosted_children_all_run_on_the_roots_thread() -> None:
    before = threading.active_count()
    second = attrs.evolve(_hosted_subtree([]), id="sub2")
    root = start_supervisor(SupervisorFlags(), [_hosted_subtree([]), second])
    try:
        assert threading.active_count() == before + 1, "only the root's thread"
        for sub in ("sub", "sub2"):
            names = {
                root.child_supervisor(sub).address(n).ask("thread", timeout=WAIT) for n in "ab"
            }
            assert names == {"noetl/root"}
    finally:
        root.stop(timeout=WAIT)


def test_a_hosted_supervisor_restarts_its_crashed_child_under_its_own_policy() -> None:
    log: list[str] = []
    recorder = Recorder()
    root = start_supervisor(
        SupervisorFlags(), [_hosted_subtree(log, Strategy.ONE_FOR_ALL)], observers=[recorder]
    )
    try:
        sub = root.child_supervisor("sub")
        log.clear()
        sub.address("b").tell("crash")
        recorder.wait_for(EventKind.RESTARTED, "/root/sub/b")
        assert log == ["stop a", "start a", "start b"]
        assert sub.count_children().active == 2
        assert not recorder.of(EventKind.EXITED, "/root/sub"), "the crash stayed under sub"
    finally:
        root.stop(timeout=WAIT)


def test_a_hosted_supervisor_that_gives_up_is_restarted_with_its_children() -> None:
    log: list[str] = []
    recorder = Recorder()
    children = [ChildSpec(id="a", start=lambda: Hosted(log, "a"))]
    flags = SupervisorFlags(max_restarts=0, within=60)
    spec = ChildSpec(
        id="sub", start=lambda: HostedSupervisor(flags, children), type=ChildType.SUPERVISOR
    )
    root = start_supervisor(
        SupervisorFlags(max_restarts=3, within=60), [spec], observers=[recorder]
    )
    try:
        root.child_supervisor("sub").address("a").tell("crash")
        recorder.wait_for(EventKind.RESTARTED, "/root/sub")
        (gave_up,) = recorder.of(EventKind.EXITED, "/root/sub")
        assert gave_up.reason is not None and gave_up.reason.kind is ExitKind.GAVE_UP
        assert root.child_supervisor("sub").address("a").ask("ping", timeout=WAIT)
        assert log == ["start a", "start a"]
    finally:
        root.stop(timeout=WAIT)


def test_a_snapshot_shows_a_hosted_supervisors_children_without_waiting_for_it() -> None:
    root = start_supervisor(SupervisorFlags(), [_hosted_subtree([])])
    try:
        began = time.monotonic()
        picture = root.snapshot()
        assert time.monotonic() - began < 1.0, "the root waited for its own thread"
        (sub,) = picture["children"]
        assert "unresponsive" not in sub
        assert [child["id"] for child in sub["children"]] == ["a", "b"]
        assert {child["state"] for child in sub["children"]} == {"running"}
    finally:
        root.stop(timeout=WAIT)


def test_stopping_and_killing_reach_the_children_of_a_hosted_supervisor() -> None:
    log: list[str] = []
    root = start_supervisor(SupervisorFlags(), [_hosted_subtree(log)])
    reason = root.stop(timeout=WAIT)
    assert reason is not None and reason.kind is ExitKind.NORMAL
    assert log[-2:] == ["stop b", "stop a"]

    root = start_supervisor(SupervisorFlags(), [_hosted_subtree([])])
    sub = root.child_supervisor("sub")
    (info, _) = sub.which_children()
    assert info.ref is not None
    grandchild = _actor(info.ref)
    root._supervisor._kill()
    assert root.wait(WAIT) is not None
    assert grandchild.exit_reason is not None and grandchild.exit_reason.kind is ExitKind.KILLED


# -- on a loop: a subtree run by an asyncio loop's thread -----------------------


@pytest.fixture
def loop_host() -> Iterator[LoopHost]:
    """An asyncio loop on a thread of its own, as the bridge's is."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="test-loop", daemon=True)
    thread.start()
    host = LoopHost(loop, thread)
    yield host
    host.kill_guests()
    loop.call_soon_threadsafe(loop.stop)
    thread.join(WAIT)
    loop.close()


def _subtree_on(host: LoopHost, log: list[str], restart: Restart = Restart.PERMANENT,
                strategy: Strategy = Strategy.ONE_FOR_ALL) -> ChildSpec:
    children = [ChildSpec(id=n, start=lambda n=n: Hosted(log, n)) for n in "ab"]
    flags = SupervisorFlags(strategy=strategy, max_restarts=3, within=60)

    def start() -> Supervisor:
        supervisor = Supervisor(flags, children)
        supervisor.run_on(host)
        return supervisor

    return ChildSpec(id="sub", start=start, type=ChildType.SUPERVISOR, restart=restart)


def test_a_supervisor_run_on_a_loop_runs_there_with_its_children_under_its_policy(
        loop_host: LoopHost) -> None:
    log: list[str] = []
    recorder = Recorder()
    before = threading.active_count()
    root = start_supervisor(SupervisorFlags(), [_subtree_on(loop_host, log)],
                            observers=[recorder])
    try:
        assert threading.active_count() == before + 1, "only the root's thread"
        sub = root.child_supervisor("sub")
        assert {sub.address(n).ask("thread", timeout=WAIT) for n in "ab"} == {"test-loop"}
        assert root.snapshot()["children"][0]["children"][1]["state"] == "running"

        log.clear()
        sub.address("b").tell("crash")
        recorder.wait_for(EventKind.RESTARTED, "/root/sub/b")
        assert log == ["stop a", "start a", "start b"]
        assert not recorder.of(EventKind.EXITED, "/root/sub"), "the crash stayed under sub"
    finally:
        reason = root.stop(timeout=WAIT)
    assert reason is not None and reason.kind is ExitKind.NORMAL
    assert log[-2:] == ["stop b", "stop a"]


def test_a_loop_whose_owner_stops_it_kills_what_it_hosts_and_their_supervisor_hears(
        loop_host: LoopHost) -> None:
    recorder = Recorder()
    root = start_supervisor(SupervisorFlags(),
                            [_subtree_on(loop_host, [], restart=Restart.TEMPORARY)],
                            observers=[recorder])
    try:
        assert loop_host.hosting()
        loop_host.kill_guests()
        (exited,) = recorder.wait_for(EventKind.EXITED, "/root/sub")
        assert exited.reason is not None and exited.reason.kind is ExitKind.KILLED
        assert root.which_children() == []
        assert not loop_host.hosting()
    finally:
        root.stop(timeout=WAIT)


def test_a_supervisor_cannot_start_on_a_loop_that_has_stopped(loop_host: LoopHost) -> None:
    loop_host.loop.call_soon_threadsafe(loop_host.loop.stop)
    loop_host.thread.join(WAIT)
    root = start_supervisor(SupervisorFlags(), [])
    try:
        with pytest.raises(SupervisionError, match=r"its loop \(test-loop\) is not running"):
            root.start_child(_subtree_on(loop_host, []))
    finally:
        root.stop(timeout=WAIT)


def test_what_a_dying_loop_hosted_is_killed_on_its_thread_and_its_supervisor_decides() -> None:
    loop = LoopThread(name="test-loop").start()
    recorder = Recorder()
    root = start_supervisor(SupervisorFlags(),
                            [_subtree_on(loop.host, [], restart=Restart.TEMPORARY)],
                            observers=[recorder])
    try:
        def die() -> None:
            raise SystemExit("the test killed the loop")

        loop.loop.call_soon_threadsafe(die)
        (exited,) = recorder.wait_for(EventKind.EXITED, "/root/sub")
        assert exited.reason is not None and exited.reason.kind is ExitKind.KILLED
        assert root.which_children() == []
    finally:
        root.stop(timeout=WAIT)
        loop.stop()


def test_a_supervisor_on_a_loop_starts_a_child_on_the_same_loop_without_waiting_for_itself(
        loop_host: LoopHost) -> None:
    root = start_supervisor(SupervisorFlags(), [_subtree_on(loop_host, [])])
    try:
        sub = root.child_supervisor("sub")
        nested = attrs.evolve(_subtree_on(loop_host, []), id="nested")
        sub.start_child(nested, timeout=WAIT)
        address = sub.child_supervisor("nested").address("a")
        assert address.ask("thread", timeout=WAIT) == "test-loop"
    finally:
        root.stop(timeout=WAIT)


def test_a_supervisor_killed_while_its_start_waits_on_the_loop_exits_killed(
        loop_host: LoopHost) -> None:
    recorder = Recorder()
    root = start_supervisor(SupervisorFlags(), [], observers=[recorder])
    busy, release = threading.Event(), threading.Event()
    loop_host.call_soon(lambda: (busy.set(), release.wait(WAIT)))
    assert busy.wait(WAIT)
    try:
        starting = threading.Thread(target=lambda: root.start_child(
            _subtree_on(loop_host, [], restart=Restart.TEMPORARY), timeout=WAIT))
        starting.start()
        deadline = time.monotonic() + WAIT
        while not loop_host.hosting() and time.monotonic() < deadline:
            time.sleep(0.005)  # until the start is posted, behind the busy callback
        loop_host.kill_guests()  # before the start runs: it must not come up alive
        loop_host.loop.call_soon_threadsafe(loop_host.loop.stop)  # no turn after its start
        release.set()
        starting.join(WAIT)
        (exited,) = recorder.wait_for(EventKind.EXITED, "/root/sub")
        assert exited.reason is not None and exited.reason.kind is ExitKind.KILLED
        assert not loop_host.hosting()
    finally:
        release.set()
        root.stop(timeout=WAIT)
