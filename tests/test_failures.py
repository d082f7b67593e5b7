"""Crashes the kernel must see: asks, proxies, start failures, BaseException, escalation."""

from __future__ import annotations

import functools
import itertools
import threading

import pykka
import pytest

from noetl_actors.errors import ActorDeadError, SupervisionError
from noetl_actors.supervision import (
    ChildSpec,
    EventKind,
    ExitKind,
    SupervisedActor,
    SupervisorFlags,
    start_supervisor,
    supervisor_spec,
)
from tests.helpers import Recorder, Worker


def test_an_ask_that_raises_returns_the_error_to_the_caller_and_restarts_the_child() -> None:
    recorder = Recorder()
    root = start_supervisor(SupervisorFlags(), [ChildSpec(id="w", start=Worker)],
                            observers=[recorder])
    try:
        address = root.address("w")
        first = address.ask("ping", timeout=5)
        with pytest.raises(ValueError, match="crashed on purpose"):
            address.ask("crash", timeout=5)
        recorder.wait_for(EventKind.RESTARTED, "/root/w")
        assert address.ask("ping", timeout=5) != first
        (exited,) = recorder.of(EventKind.EXITED, "/root/w")
        assert exited.reason is not None
        assert (exited.reason.kind, exited.reason.error_type) == (ExitKind.CRASH, "ValueError")
    finally:
        root.stop(timeout=5)


def test_a_proxy_call_that_raises_is_a_crash_the_supervisor_sees() -> None:
    recorder = Recorder()
    root = start_supervisor(SupervisorFlags(), [ChildSpec(id="w", start=Worker)],
                            observers=[recorder])
    try:
        (info,) = root.which_children()
        assert info.ref is not None
        proxy = info.ref.proxy()
        assert proxy.add(2, 3).get(timeout=5) == 5
        with pytest.raises(RuntimeError, match="proxy call failed"):
            proxy.fail().get(timeout=5)
        recorder.wait_for(EventKind.RESTARTED, "/root/w")
        assert not info.ref.is_alive()
    finally:
        root.stop(timeout=5)


@pytest.mark.parametrize("error", [SystemExit(3), KeyboardInterrupt()], ids=repr)
def test_a_base_exception_in_one_actor_stops_only_that_actor(error: BaseException) -> None:
    class Plain(pykka.ThreadingActor):
        def on_receive(self, message: object) -> object:
            return "still here"

    class Fatal(Worker):
        def on_receive(self, message: object) -> object:
            if message == "die":
                raise error
            return super().on_receive(message)

    bystander = Plain.start()
    recorder = Recorder()
    root = start_supervisor(
        SupervisorFlags(),
        [ChildSpec(id="fatal", start=Fatal), ChildSpec(id="sibling", start=Worker)],
        observers=[recorder],
    )
    try:
        sibling = root.address("sibling").ask("ping", timeout=5)
        with pytest.raises(ActorDeadError) as caught:
            root.address("fatal").ask("die", timeout=5)
        assert caught.value.__cause__ is error
        recorder.wait_for(EventKind.RESTARTED, "/root/fatal")
        assert root.address("sibling").ask("ping", timeout=5) == sibling
        assert bystander.ask("hello", timeout=5) == "still here"
        (exited,) = recorder.of(EventKind.EXITED, "/root/fatal")
        assert exited.reason is not None
        assert exited.reason.error_type == type(error).__name__
    finally:
        root.stop(timeout=5)
        bystander.stop()


def test_a_failing_on_start_is_a_start_failure_counted_against_intensity() -> None:
    starts = itertools.count()

    class FailsAfterFirstStart(Worker):
        def on_start(self) -> None:
            if next(starts) > 0:
                raise OSError("disk not mounted")

    recorder = Recorder()
    root = start_supervisor(
        SupervisorFlags(max_restarts=2, within=60),
        [ChildSpec(id="w", start=FailsAfterFirstStart)],
        observers=[recorder],
    )
    root.address("w").tell("crash")
    reason = root.wait(timeout=5)

    assert reason is not None and reason.kind is ExitKind.GAVE_UP
    assert reason.cause is not None
    assert (reason.cause.kind, reason.cause.error_type, reason.cause.message) == (
        ExitKind.START_FAILURE, "OSError", "disk not mounted")
    # The crash uses restart 1 of 2, the first failed attempt restart 2; the
    # second failed attempt is one too many: 1 start + 2 attempts in all.
    assert next(starts) == 3


def test_a_factory_that_raises_is_a_start_failure_too() -> None:
    def broken_factory() -> SupervisedActor:
        raise LookupError("no such plugin")

    root = start_supervisor(
        SupervisorFlags(max_restarts=1, within=60), [ChildSpec(id="w", start=broken_factory)]
    )
    reason = root.wait(timeout=5)
    assert reason is not None and reason.root().error_type == "LookupError"
    assert reason.root().kind is ExitKind.START_FAILURE


def test_a_factory_must_return_a_supervised_actor() -> None:
    with pytest.raises(SupervisionError) as caught:
        start_supervisor(
            SupervisorFlags(max_restarts=0, within=60),
            [ChildSpec(id="w", start=lambda: "not an actor")],  # type: ignore[arg-type,return-value]
        )
    reason = caught.value.reason
    assert reason.kind is ExitKind.GAVE_UP, "a root that gives up while starting does not start"
    assert reason.root().error_type == "TypeError"
    assert "must return a SupervisedActor" in reason.root().message


def test_escalation_three_levels_deep_keeps_the_whole_reason_chain() -> None:
    recorder = Recorder()
    leaf = supervisor_spec("leaf", SupervisorFlags(max_restarts=0, within=60),
                           [ChildSpec(id="worker", start=Worker)])
    mid = supervisor_spec("mid", SupervisorFlags(max_restarts=0, within=60), [leaf])
    root = start_supervisor(SupervisorFlags(max_restarts=0, within=60), [mid],
                            observers=[recorder])
    worker = root.child_supervisor("mid").child_supervisor("leaf").address("worker")

    worker.tell("crash")
    reason = root.wait(timeout=5)

    assert reason is not None
    assert [(link.kind, link.path) for link in reason.chain()] == [
        (ExitKind.GAVE_UP, "/root"),
        (ExitKind.GAVE_UP, "/root/mid"),
        (ExitKind.GAVE_UP, "/root/mid/leaf"),
        (ExitKind.CRASH, "/root/mid/leaf/worker"),
    ]
    assert reason.root().error_type == "ValueError"
    assert "/root/mid/leaf/worker crashed: ValueError" in reason.describe()
    assert [e.path for e in recorder.of(EventKind.GAVE_UP)] == [
        "/root/mid/leaf", "/root/mid", "/root"]
    with pytest.raises(ActorDeadError):
        worker.tell("anything")


def test_a_subtree_that_gives_up_is_restarted_by_its_parent_within_the_parents_limit() -> None:
    recorder = Recorder()
    leaf = supervisor_spec("leaf", SupervisorFlags(max_restarts=0, within=60),
                           [ChildSpec(id="worker", start=Worker)])
    root = start_supervisor(SupervisorFlags(max_restarts=3, within=60), [leaf],
                            observers=[recorder])
    try:
        root.child_supervisor("leaf").address("worker").tell("crash")
        recorder.wait_for(EventKind.RESTARTED, "/root/leaf")
        fresh = root.child_supervisor("leaf").address("worker")
        assert fresh.ask(41, timeout=5) == 41
        assert root.is_alive()
    finally:
        root.stop(timeout=5)


def test_a_root_that_fails_to_start_raises_supervision_error() -> None:
    class Root(SupervisedActor):
        pass

    with pytest.raises(ValueError, match="duplicate child ids: w"):
        start_supervisor(SupervisorFlags(), [ChildSpec(id="w", start=Worker)] * 2)


def test_a_child_that_ignores_stop_is_killed_after_its_grace_period_and_reported() -> None:
    release = threading.Event()
    busy = threading.Event()

    class Stubborn(Worker):
        def on_receive(self, message: object) -> object:
            busy.set()
            release.wait(10)
            return None

    recorder = Recorder()
    root = start_supervisor(
        SupervisorFlags(),
        [ChildSpec(id="stubborn", start=Stubborn, shutdown=0.2),
         ChildSpec(id="fine", start=functools.partial(Worker))],
        observers=[recorder],
    )
    try:
        root.address("stubborn").tell("block")
        assert busy.wait(5)
        reason = root.stop(timeout=5)
        assert reason is not None
        (abandoned,) = recorder.of(EventKind.ABANDONED, "/root/stubborn")
        assert "0.2" in abandoned.detail
        exits = recorder.of(EventKind.EXITED, "/root/stubborn")
        assert exits[-1].reason is not None and exits[-1].reason.kind is ExitKind.KILLED
    finally:
        release.set()


def test_brutal_kill_does_not_wait_for_queued_messages() -> None:
    handled: list[object] = []
    gate = threading.Event()
    in_hand = threading.Event()
    finished = threading.Event()

    class Busy(Worker):
        def on_receive(self, message: object) -> object:
            in_hand.set()
            gate.wait(5)
            handled.append(message)
            finished.set()
            return None

    recorder = Recorder()
    root = start_supervisor(
        SupervisorFlags(), [ChildSpec(id="w", start=Busy, shutdown=0.0)], observers=[recorder]
    )
    for n in range(3):
        root.address("w").tell(n)
    assert in_hand.wait(5)
    stopping = threading.Thread(target=root.stop, kwargs={"timeout": 5})
    stopping.start()
    recorder.wait_for(EventKind.EXITED, "/root/w")
    stopping.join(5)
    gate.set()
    assert finished.wait(5)
    assert handled == [0], "only the message in hand is finished; the queue is not"
    dead = recorder.of(EventKind.DEAD_LETTER, "/root/w")
    assert [e.detail for e in dead] == ["1", "2"], "queued tells are reported, not lost"


def test_root_wait_raises_nothing_and_reports_a_clean_stop() -> None:
    root = start_supervisor(SupervisorFlags(), [ChildSpec(id="w", start=Worker)])
    reason = root.stop(timeout=5)
    assert reason is not None and reason.kind is ExitKind.NORMAL
    assert root.wait(timeout=0) == reason
    with pytest.raises(ActorDeadError):
        root.which_children(timeout=1)


def test_supervision_error_carries_the_reason_chain() -> None:
    class NeverStarts(Worker):
        def on_start(self) -> None:
            raise RuntimeError("bad config")

    root = start_supervisor(SupervisorFlags(), [])
    try:
        with pytest.raises(SupervisionError) as caught:
            root.start_child(ChildSpec(id="w", start=NeverStarts))
        assert caught.value.reason.error_type == "RuntimeError"
        assert "/root/w failed to start: RuntimeError: bad config" in str(caught.value)
    finally:
        root.stop(timeout=5)
