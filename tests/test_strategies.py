"""Every strategy against every restart type, plus start order and stop order."""

from __future__ import annotations

import functools

import pytest

from noetl_actors.supervision import (
    ActorState,
    ChildSpec,
    EventKind,
    Restart,
    Strategy,
    SupervisorFlags,
    start_supervisor,
)
from tests.helpers import Recorder, Worker

NAMES = ("a", "b", "c")


def _restarted_with(strategy: Strategy) -> set[str]:
    """Who restarts when b (the middle child) must be restarted."""
    return {
        Strategy.ONE_FOR_ONE: {"b"},
        Strategy.ONE_FOR_ALL: {"a", "b", "c"},
        Strategy.REST_FOR_ONE: {"b", "c"},
    }[strategy]


def _is_restarted(restart: Restart, crash: bool) -> bool:
    return restart is Restart.PERMANENT or (restart is Restart.TRANSIENT and crash)


@pytest.mark.parametrize("strategy", list(Strategy), ids=lambda s: s.value)
@pytest.mark.parametrize("restart", list(Restart), ids=lambda r: r.value)
@pytest.mark.parametrize("crash", [True, False], ids=["crash", "normal_exit"])
def test_each_strategy_restarts_the_right_children_for_each_restart_type(
    strategy: Strategy, restart: Restart, crash: bool
) -> None:
    recorder = Recorder()
    specs = [
        ChildSpec(id=n, start=functools.partial(Worker, name=n),
                  restart=restart if n == "b" else Restart.PERMANENT)
        for n in NAMES
    ]
    root = start_supervisor(
        SupervisorFlags(strategy=strategy, max_restarts=5, within=10),
        specs,
        observers=[recorder],
    )
    try:
        addresses = {n: root.address(n) for n in NAMES}
        before = {n: addresses[n].ask("ping", timeout=5) for n in NAMES}

        addresses["b"].tell("crash" if crash else "exit")

        recorder.wait_for(EventKind.EXITED, "/root/b")
        if _is_restarted(restart, crash):
            expected = _restarted_with(strategy)
            for name in expected:
                recorder.wait_for(EventKind.RESTARTED, f"/root/{name}")
            after = {n: addresses[n].ask("ping", timeout=5) for n in NAMES}
            changed = {n for n in NAMES if after[n] != before[n]}
            assert changed == expected
        else:
            states = {info.id: info.state for info in root.which_children()}
            if restart is Restart.TEMPORARY:
                assert "b" not in states
            else:
                assert states["b"] is ActorState.STOPPED
            for name in ("a", "c"):
                assert addresses[name].ask("ping", timeout=5) == before[name]
            assert recorder.of(EventKind.RESTARTED) == []
    finally:
        root.stop(timeout=5)


def test_one_for_all_stops_siblings_in_reverse_order_then_starts_all_in_order() -> None:
    log: list[str] = []
    recorder = Recorder()
    specs = [ChildSpec(id=n, start=functools.partial(Worker, log, n)) for n in "abcd"]
    root = start_supervisor(
        SupervisorFlags(strategy=Strategy.ONE_FOR_ALL), specs, observers=[recorder]
    )
    try:
        log.clear()
        root.address("b").tell("crash")
        recorder.wait_for(EventKind.RESTARTED, "/root/d")
        assert log == ["stop d", "stop c", "stop a", "start a", "start b", "start c", "start d"]
    finally:
        root.stop(timeout=5)


def test_rest_for_one_stops_later_siblings_in_reverse_order_and_keeps_earlier_ones() -> None:
    log: list[str] = []
    recorder = Recorder()
    specs = [ChildSpec(id=n, start=functools.partial(Worker, log, n)) for n in "abcd"]
    root = start_supervisor(
        SupervisorFlags(strategy=Strategy.REST_FOR_ONE), specs, observers=[recorder]
    )
    try:
        log.clear()
        root.address("b").tell("crash")
        recorder.wait_for(EventKind.RESTARTED, "/root/d")
        assert log == ["stop d", "stop c", "start b", "start c", "start d"]
    finally:
        root.stop(timeout=5)


def test_stopping_a_tree_stops_children_in_reverse_start_order() -> None:
    log: list[str] = []
    specs = [ChildSpec(id=n, start=functools.partial(Worker, log, n)) for n in "abc"]
    root = start_supervisor(SupervisorFlags(), specs)
    assert log == ["start a", "start b", "start c"]

    reason = root.stop(timeout=5)

    assert log[3:] == ["stop c", "stop b", "stop a"]
    assert reason is not None and not reason.is_abnormal


def test_a_crashed_childs_unhandled_messages_go_to_its_next_incarnation() -> None:
    import threading

    release = threading.Event()
    handled: list[tuple[str, str]] = []

    class Slow(Worker):
        def on_receive(self, message: object) -> object:
            if message == "crash-later":
                release.wait(5)
                raise ValueError("crash after the queue filled up")
            handled.append((self.actor_urn, str(message)))
            return None

    recorder = Recorder()
    root = start_supervisor(SupervisorFlags(), [ChildSpec(id="w", start=Slow)],
                            observers=[recorder])
    try:
        address = root.address("w")
        address.tell("crash-later")
        for n in range(5):
            address.tell(f"m{n}")
        release.set()
        recorder.wait_for(EventKind.RESTARTED, "/root/w")
        address.ask("sync", timeout=5)
        assert [m for _, m in handled] == ["m0", "m1", "m2", "m3", "m4", "sync"]
        assert len({urn for urn, _ in handled}) == 1, "all handled by the new incarnation"
    finally:
        root.stop(timeout=5)
