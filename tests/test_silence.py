"""A step takes its worker for lost only after its node has read all NATS sent it.

On a manual clock: 3 heartbeats of silence start a round trip to NATS
(`Bridge.read_up_soon`); the judgement waits for its answer, by which time
any event of the worker that was waiting in the node's socket has reached the
step. Without it, a node too busy to read its socket in time (10,000 `sleep`
steps at once) took workers for lost whose heartbeats waited there. A worker
really killed is still found out within a few heartbeats
(tests/test_run.py, `test_a_worker_killed_mid_attempt_is_found_out_by_its_missed_heartbeats`).
"""

from __future__ import annotations

import concurrent.futures
from typing import Any

import pytest

from noetl_actors.errors import BridgeTimeout, WorkerLost
from noetl_actors.playbook import Step
from noetl_actors.runtime import Event, EventStatus, StepAttempt
from noetl_actors.runtime._remote import RemoteStepActor, _ReadUp
from noetl_actors.runtime._router import EventRouter, _Tick
from noetl_actors.supervision import ManualClock


class ReadUpBridge:
    """Keeps what a step publishes and the round trips it asks for (settled by the test)."""

    def __init__(self) -> None:
        self.published: list[str] = []
        self.read_ups: list[concurrent.futures.Future[None]] = []

    def publish(self, subject: str, data: dict[str, Any], **_: Any) -> None:
        self.published.append(subject)

    def read_up_soon(self, *, timeout: float) -> concurrent.futures.Future[None]:
        future: concurrent.futures.Future[None] = concurrent.futures.Future()
        self.read_ups.append(future)
        return future


class Mailbox:
    def tell(self, message: Any) -> None:
        pass


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


def started_step(clock: ManualClock, bridge: ReadUpBridge) -> RemoteStepActor:
    """A step whose worker said `started` at 0 s (heartbeat 1 s: silent after 3 s)."""
    router = EventRouter(clock=clock, heartbeat=1.0)
    attempt = StepAttempt(step=Step(name="s", plugin="sleep", with_={"seconds": 60}),
                          task=Mailbox(), task_name="t", context={}, number=1,  # type: ignore[arg-type]
                          clock=clock)
    step = RemoteStepActor(attempt, bridge=bridge, router=router,  # type: ignore[arg-type]
                           workflow_id="wf-1")
    step.on_start()
    assert bridge.published == ["command.sleep.wf-1.t=s"]
    step.on_receive(event(EventStatus.STARTED))
    return step


def event(status: EventStatus) -> Event:
    return Event(command_id="wf-1.t=s.1", workflow_id="wf-1", step_id="t=s", attempt=1,
                 status=status, worker="w")


def tick(clock: ManualClock, step: RemoteStepActor, seconds: float) -> None:
    for _ in range(int(seconds * 2)):
        clock.advance(0.5)
        step.on_receive(_Tick())


def test_a_heartbeat_read_before_the_round_trip_answers_keeps_the_worker(
        clock: ManualClock) -> None:
    bridge = ReadUpBridge()
    step = started_step(clock, bridge)
    tick(clock, step, 3.5)
    assert len(bridge.read_ups) == 1, "silent for 3 heartbeats: read up first, judge after"
    tick(clock, step, 1.0)
    assert len(bridge.read_ups) == 1, "one round trip at a time"

    step.on_receive(event(EventStatus.HEARTBEAT))  # it was waiting in the socket
    bridge.read_ups[0].set_result(None)
    step.on_receive(_ReadUp(ok=True))
    tick(clock, step, 2.5)
    assert len(bridge.read_ups) == 1, "heard 2.5 s ago: not silent"


def test_a_worker_still_silent_once_the_node_has_read_up_is_lost(clock: ManualClock) -> None:
    bridge = ReadUpBridge()
    step = started_step(clock, bridge)
    tick(clock, step, 3.5)
    bridge.read_ups[0].set_result(None)
    with pytest.raises(WorkerLost, match=r"sent nothing for 3\.5s \(heartbeat 1s\)"):
        step.on_receive(_ReadUp(ok=True))


def test_a_round_trip_that_fails_judges_nothing_and_is_tried_again(clock: ManualClock) -> None:
    bridge = ReadUpBridge()
    step = started_step(clock, bridge)
    tick(clock, step, 3.5)
    bridge.read_ups[0].set_exception(BridgeTimeout("no PONG"))
    step.on_receive(_ReadUp(ok=False))
    tick(clock, step, 0.5)
    assert len(bridge.read_ups) == 2, "asked again at the next tick"
    with pytest.raises(WorkerLost):
        step.on_receive(_ReadUp(ok=True))
