"""Dynamic children, auto_shutdown, monitors, addresses and the tree snapshot."""

from __future__ import annotations

import json
import queue
from typing import Any

import pykka
import pytest

from noetl_actors.errors import (
    ActorDeadError,
    ChildAlreadyExists,
    ChildNotFound,
    ChildRunning,
    SupervisionError,
)
from noetl_actors.supervision import (
    ActorState,
    AutoShutdown,
    ChildSpec,
    ChildType,
    Down,
    EventKind,
    ExitKind,
    Restart,
    Strategy,
    SupervisedActor,
    SupervisorFlags,
    monitor,
    start_supervisor,
    supervisor_spec,
)
from tests.helpers import Recorder, Worker


@pytest.fixture
def root() -> Any:
    tree = start_supervisor(SupervisorFlags(max_restarts=5, within=60))
    yield tree
    tree.stop(timeout=5)


class TestDynamicChildren:
    def test_start_child_adds_a_supervised_child(self, root: Any) -> None:
        ref = root.start_child(ChildSpec(id="w", start=Worker))
        assert ref.ask("ping", timeout=5) == ref.actor_urn
        assert [(c.id, c.state) for c in root.which_children()] == [("w", ActorState.RUNNING)]

    def test_start_child_refuses_an_id_in_use(self, root: Any) -> None:
        root.start_child(ChildSpec(id="w", start=Worker))
        with pytest.raises(ChildAlreadyExists, match="already has a child 'w'"):
            root.start_child(ChildSpec(id="w", start=Worker))

    def test_a_child_that_fails_to_start_is_not_added(self, root: Any) -> None:
        class Broken(Worker):
            def on_start(self) -> None:
                raise ValueError("nope")

        with pytest.raises(SupervisionError):
            root.start_child(ChildSpec(id="w", start=Broken))
        assert root.which_children() == []

    def test_terminate_keeps_the_spec_and_restart_child_brings_it_back(self, root: Any) -> None:
        root.start_child(ChildSpec(id="w", start=Worker))
        address = root.address("w")
        root.terminate_child("w")
        assert [(c.id, c.state, c.ref) for c in root.which_children()] == [
            ("w", ActorState.STOPPED, None)]
        with pytest.raises(ActorDeadError):
            address.ask("ping", timeout=5)

        ref = root.restart_child("w")

        assert address.ask("ping", timeout=5) == ref.actor_urn

    def test_restart_and_delete_refuse_a_running_child(self, root: Any) -> None:
        root.start_child(ChildSpec(id="w", start=Worker))
        with pytest.raises(ChildRunning):
            root.restart_child("w")
        with pytest.raises(ChildRunning):
            root.delete_child("w")

    def test_delete_child_forgets_a_terminated_child(self, root: Any) -> None:
        root.start_child(ChildSpec(id="w", start=Worker))
        root.terminate_child("w")
        root.delete_child("w")
        assert root.which_children() == []

    def test_a_terminated_temporary_child_is_forgotten_at_once(self, root: Any) -> None:
        root.start_child(ChildSpec(id="t", start=Worker, restart=Restart.TEMPORARY))
        root.terminate_child("t")
        assert root.which_children() == []

    def test_verbs_on_an_unknown_child_raise_child_not_found(self, root: Any) -> None:
        for verb in (root.terminate_child, root.restart_child, root.delete_child, root.address):
            with pytest.raises(ChildNotFound, match="has no child 'ghost'"):
                verb("ghost")

    def test_count_children_counts_specs_active_supervisors_and_workers(self, root: Any) -> None:
        root.start_child(ChildSpec(id="w1", start=Worker))
        root.start_child(ChildSpec(id="w2", start=Worker))
        root.start_child(supervisor_spec("sub", SupervisorFlags(), []))
        root.terminate_child("w2")
        counts = root.count_children()
        assert (counts.specs, counts.active, counts.supervisors, counts.workers) == (3, 2, 1, 2)

    def test_dynamic_children_are_restarted_like_static_ones(self, root: Any) -> None:
        recorder = Recorder()
        tree = start_supervisor(SupervisorFlags(strategy=Strategy.REST_FOR_ONE),
                                observers=[recorder])
        try:
            tree.start_child(ChildSpec(id="a", start=Worker))
            tree.start_child(ChildSpec(id="b", start=Worker))
            tree.address("a").tell("crash")
            recorder.wait_for(EventKind.RESTARTED, "/root/b")
            assert {c.id: c.state for c in tree.which_children()} == {
                "a": ActorState.RUNNING, "b": ActorState.RUNNING}
        finally:
            tree.stop(timeout=5)


class TestAutoShutdown:
    def test_any_significant_shuts_the_supervisor_down_when_one_exits(self) -> None:
        root = start_supervisor(
            SupervisorFlags(auto_shutdown=AutoShutdown.ANY_SIGNIFICANT),
            [ChildSpec(id="job", start=Worker, restart=Restart.TRANSIENT, significant=True),
             ChildSpec(id="helper", start=Worker)],
        )
        root.address("job").tell("exit")
        reason = root.wait(timeout=5)
        assert reason is not None and reason.kind is ExitKind.SHUTDOWN
        assert "significant child 'job'" in reason.message

    def test_all_significant_waits_for_the_last_significant_child(self) -> None:
        specs = [ChildSpec(id=n, start=Worker, restart=Restart.TEMPORARY, significant=True)
                 for n in ("one", "two")]
        root = start_supervisor(SupervisorFlags(auto_shutdown=AutoShutdown.ALL_SIGNIFICANT),
                                specs)
        root.address("one").tell("exit")
        assert root.wait(timeout=0.3) is None, "one significant child is still running"
        root.address("two").tell("exit")
        reason = root.wait(timeout=5)
        assert reason is not None and reason.kind is ExitKind.SHUTDOWN

    def test_a_crashed_significant_transient_child_is_restarted_not_shut_down(self) -> None:
        recorder = Recorder()
        root = start_supervisor(
            SupervisorFlags(auto_shutdown=AutoShutdown.ANY_SIGNIFICANT),
            [ChildSpec(id="job", start=Worker, restart=Restart.TRANSIENT, significant=True)],
            observers=[recorder],
        )
        try:
            root.address("job").tell("crash")
            recorder.wait_for(EventKind.RESTARTED, "/root/job")
            assert root.is_alive()
        finally:
            root.stop(timeout=5)

    def test_a_transient_subtree_that_auto_shuts_down_is_not_restarted(self) -> None:
        recorder = Recorder()
        sub = supervisor_spec(
            "batch", SupervisorFlags(auto_shutdown=AutoShutdown.ANY_SIGNIFICANT),
            [ChildSpec(id="job", start=Worker, restart=Restart.TRANSIENT, significant=True)],
            restart=Restart.TRANSIENT,
        )
        root = start_supervisor(SupervisorFlags(), [sub], observers=[recorder])
        try:
            root.child_supervisor("batch").address("job").tell("exit")
            recorder.wait_for(EventKind.EXITED, "/root/batch")
            assert [(c.id, c.state) for c in root.which_children()] == [
                ("batch", ActorState.STOPPED)]
        finally:
            root.stop(timeout=5)

    def test_a_permanent_child_cannot_be_significant(self) -> None:
        with pytest.raises(ValueError, match="significant child must be transient or temporary"):
            ChildSpec(id="w", start=Worker, significant=True)


class TestMonitors:
    def test_a_monitor_is_told_why_the_actor_exited(self) -> None:
        downs: queue.Queue[Down] = queue.Queue()
        target = Worker.start()
        monitor(target, downs.put)
        with pytest.raises(ValueError):
            target.ask("crash", timeout=5)
        down = downs.get(timeout=5)
        assert down.actor_urn == target.actor_urn
        assert (down.reason.kind, down.reason.error_type) == (ExitKind.CRASH, "ValueError")

    def test_an_actor_can_monitor_another_actor(self) -> None:
        received: queue.Queue[object] = queue.Queue()

        class Watcher(SupervisedActor):
            def on_receive(self, message: object) -> None:
                received.put(message)

        watcher = Watcher.start()
        target = Worker.start()
        try:
            monitor(target, watcher)
            target.stop()
            down = received.get(timeout=5)
            assert isinstance(down, Down) and down.reason.kind is ExitKind.NORMAL
        finally:
            watcher.stop()

    def test_monitoring_an_actor_that_already_exited_reports_at_once(self) -> None:
        downs: queue.Queue[Down] = queue.Queue()
        target = Worker.start()
        target.stop()
        monitor(target, downs.put)
        assert downs.get(timeout=5).reason.kind is ExitKind.NORMAL

    def test_a_cancelled_monitor_hears_nothing(self) -> None:
        downs: queue.Queue[Down] = queue.Queue()
        target = Worker.start()
        watch = monitor(target, downs.put)
        watch.cancel()
        target.stop()
        with pytest.raises(queue.Empty):
            downs.get(timeout=0.2)

    def test_monitor_refuses_a_plain_pykka_actor(self) -> None:
        plain = pykka.ThreadingActor.start()
        try:
            with pytest.raises(TypeError, match="needs a SupervisedActor"):
                monitor(plain, print)
        finally:
            plain.stop()


def test_an_unsupervised_actors_pending_asks_fail_when_it_crashes() -> None:
    import threading

    gate = threading.Event()

    class Slow(Worker):
        def on_receive(self, message: object) -> object:
            gate.wait(5)
            return super().on_receive(message)

    ref = Slow.start()
    crash = ref.ask("crash", block=False)
    pending = ref.ask("ping", block=False)
    gate.set()
    with pytest.raises(ValueError):
        crash.get(timeout=5)
    with pytest.raises(pykka.ActorDeadError, match="stopped before handling"):
        pending.get(timeout=5)


def test_the_snapshot_is_json_and_shows_the_whole_tree() -> None:
    recorder = Recorder()
    inner = supervisor_spec("inner", SupervisorFlags(strategy=Strategy.ONE_FOR_ALL),
                            [ChildSpec(id="leaf", start=Worker)])
    root = start_supervisor(
        SupervisorFlags(max_restarts=4, within=30),
        [ChildSpec(id="w", start=Worker), inner],
        observers=[recorder],
    )
    try:
        root.address("w").tell("crash")
        recorder.wait_for(EventKind.RESTARTED, "/root/w")

        picture = json.loads(json.dumps(root.snapshot()))

        assert picture["path"] == "/root"
        assert picture["intensity"] == {"restarts_in_window": 1, "max_restarts": 4, "within": 30}
        worker, sub = picture["children"]
        assert (worker["kind"], worker["state"], worker["total_restarts"]) == (
            "worker", "running", 1)
        assert worker["restarts_in_window"] == 1
        assert worker["last_exits"][0]["error_type"] == "ValueError"
        assert worker["started_at"] > 0
        assert (sub["kind"], sub["strategy"]) == (ChildType.SUPERVISOR.value, "one_for_all")
        assert [c["path"] for c in sub["children"]] == ["/root/inner/leaf"]
    finally:
        root.stop(timeout=5)
