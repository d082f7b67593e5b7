"""`PluginWorker` alone: what it says about an attempt, and when.

A fake bridge keeps what the worker publishes; a fake runner settles
attempts when the test says; a `ManualClock` drives the announce and
heartbeat timers.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from noetl_actors.bridge import Delivery
from noetl_actors.runners import Attempt, Outcome, PluginInfo
from noetl_actors.runners._handle import AttemptHandle
from noetl_actors.runtime import Command
from noetl_actors.services._claims import Claim, LocalClaims, Settled
from noetl_actors.services._worker import (
    ANNOUNCE_AFTER,
    LOOP_STRIKES,
    LOOP_WALL_BUDGET,
    PluginWorker,
)
from noetl_actors.supervision import ManualClock

HEARTBEAT = 1.0
WAIT = 5.0


class FakeBridge:
    """Keeps every publish; subscriptions are ignored (the test tells the worker)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.published: list[tuple[str, dict[str, Any]]] = []
        self.msg_ids: list[str | None] = []
        self.on_loop: dict[str, Callable[[Delivery], bool] | None] = {}

    def subscribe(self, subject: str, *_args: Any, **kwargs: Any) -> None:
        self.on_loop[subject] = kwargs.get("on_loop")

    def publish(self, subject: str, data: dict[str, Any], *, msg_id: str | None = None) -> None:
        with self._lock:
            self.published.append((subject, data))
            self.msg_ids.append(msg_id)

    def statuses(self, command_id: str) -> list[str]:
        with self._lock:
            return [d["status"] for _, d in self.published if d.get("command_id") == command_id]

    def event_msg_ids(self, command_id: str) -> list[str | None]:
        """The message ids of the events of `command_id`, in the order they were sent."""
        with self._lock:
            return [msg_id for (_, d), msg_id in zip(self.published, self.msg_ids, strict=True)
                    if d.get("command_id") == command_id]


class Handle(AttemptHandle):
    def cancel(self) -> None:
        self._settle(Outcome.failed("cancelled", "cancelled", started_at=self.started_at))

    def succeed(self) -> None:
        self._settle(Outcome.succeeded({"ok": True}, started_at=self.started_at))


class FakeRunner:
    """Starts attempts that end when the test calls `succeed()` on them, or at once."""

    name = "inproc"

    def __init__(self, *, instant: bool = False) -> None:
        self.instant = instant
        self.handles: dict[str, Handle] = {}

    def start(self, plugin: PluginInfo, attempt: Attempt) -> Handle:
        handle = Handle(attempt)
        self.handles[attempt.command_id] = handle
        if self.instant:
            handle.succeed()
        return handle

    def run_now(self, plugin: PluginInfo, attempt: Attempt) -> Outcome:
        """The worker runs an instant plugin's commands on the bridge's loop this way."""
        assert self.instant, "run_now() of a plugin that is not instant"
        outcome = self.start(plugin, attempt).wait(0)
        assert outcome is not None
        return outcome

    def statistics(self) -> Any:
        raise NotImplementedError

    def close(self, *, timeout: float = 10.0) -> None:
        pass


def command(n: int) -> Command:
    return Command(workflow_id="wf-1", task="t", step=f"s{n}", attempt=1, plugin="echo",
                   input={"n": n}, heartbeat=HEARTBEAT)


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {WAIT}s for {what}")
        time.sleep(0.005)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


def start_worker(runner: FakeRunner, clock: ManualClock, bridge: FakeBridge,
                 plugin: PluginInfo | None = None, claims: Any = None,
                 **kwargs: Any) -> Any:
    return PluginWorker.start(
        plugin or PluginInfo(name="echo"), bridge=bridge, runners={"inproc": runner},
        claims=claims or LocalClaims(), clock=clock, heartbeat=HEARTBEAT, **kwargs)


def on_loop_of(bridge: FakeBridge) -> Callable[[Delivery], bool] | None:
    """What the worker asked to run on the bridge's loop, once it has subscribed."""
    wait_for(lambda: "command.echo.>" in bridge.on_loop, "the worker's subscription")
    return bridge.on_loop["command.echo.>"]


def send(worker: Any, cmd: Command) -> None:
    worker.tell(Delivery(subject=cmd.subject, data=cmd.to_data()))


def test_a_short_attempt_gets_its_final_event_only(clock: ManualClock) -> None:
    bridge = FakeBridge()
    runner = FakeRunner()
    worker = start_worker(runner, clock, bridge)
    try:
        cmd = command(1)
        send(worker, cmd)
        wait_for(lambda: len(clock.pending()) == 2, "the announce and heartbeat timers")
        runner.handles[cmd.id].succeed()
        wait_for(lambda: bridge.statuses(cmd.id) == ["succeeded"], "the final event")
        clock.advance(HEARTBEAT * 3)
        time.sleep(0.05)
        assert bridge.statuses(cmd.id) == ["succeeded"]
    finally:
        worker.stop()


def test_an_attempt_that_ends_in_start_is_finished_at_once(clock: ManualClock) -> None:
    bridge = FakeBridge()
    worker = start_worker(FakeRunner(instant=True), clock, bridge)
    try:
        cmd = command(1)
        send(worker, cmd)
        wait_for(lambda: bridge.statuses(cmd.id) == ["succeeded"], "the final event")
        assert clock.pending() == [], "no timer for an attempt that is over"
    finally:
        worker.stop()


def test_a_long_attempt_is_announced_then_beats(clock: ManualClock) -> None:
    bridge = FakeBridge()
    runner = FakeRunner()
    worker = start_worker(runner, clock, bridge)
    try:
        cmd = command(1)
        send(worker, cmd)
        wait_for(lambda: len(clock.pending()) == 2, "the announce and heartbeat timers")
        assert bridge.statuses(cmd.id) == []
        clock.advance(ANNOUNCE_AFTER)
        wait_for(lambda: bridge.statuses(cmd.id) == ["accepted", "started"], "the announcement")
        clock.advance(HEARTBEAT)
        wait_for(lambda: bridge.statuses(cmd.id) == ["accepted", "started", "heartbeat"],
                 "a heartbeat")
        runner.handles[cmd.id].succeed()
        wait_for(lambda: bridge.statuses(cmd.id)[-1:] == ["succeeded"], "the final event")
        assert bridge.statuses(cmd.id) == ["accepted", "started", "heartbeat", "succeeded"]
    finally:
        worker.stop()


class SlowStartRunner(FakeRunner):
    """Takes 2 ms to start an attempt (a subprocess, a busy process's GIL)."""

    def start(self, plugin: PluginInfo, attempt: Attempt) -> Handle:
        time.sleep(0.002)
        return super().start(plugin, attempt)


def test_a_burst_of_starts_does_not_hold_the_heartbeats_of_running_attempts(
        clock: ManualClock) -> None:
    """300 commands claimed at once take 0.6 s to start: the heartbeat due meanwhile
    goes out between batches of starts, not after all of them (their steps would take
    silence of 3 heartbeats for a lost worker)."""
    bridge = FakeBridge()
    runner = SlowStartRunner()
    worker = start_worker(runner, clock, bridge, max_in_flight=1000)
    try:
        on_loop = on_loop_of(bridge)
        assert on_loop is not None
        first = command(0)
        assert on_loop(delivery(first)) is True
        wait_for(lambda: len(clock.pending()) == 2, "the announce and heartbeat timers")
        clock.advance(ANNOUNCE_AFTER)
        wait_for(lambda: bridge.statuses(first.id) == ["accepted", "started"], "its start")
        burst = [command(n) for n in range(1, 301)]
        for cmd in burst:
            assert on_loop(delivery(cmd)) is True
        clock.advance(HEARTBEAT)
        wait_for(lambda: "heartbeat" in bridge.statuses(first.id), "its heartbeat")
        assert len(runner.handles) < 1 + len(burst), "the heartbeat waited for every start"
        wait_for(lambda: len(runner.handles) == 1 + len(burst), "every start")
    finally:
        worker.stop()


class SharedClaims(LocalClaims):
    """Claims as on a NATS that other workers share (`BucketClaims`), kept in memory."""

    local = False


def test_an_end_on_a_shared_nats_carries_a_message_id_its_other_events_none(
        clock: ManualClock) -> None:
    """The stream keeps an end once however often it is sent: the bridge sends it again
    after an outage that may have swallowed it (docs/durability.md)."""
    for claims, expected in ((SharedClaims(), "end:wf-1.t=s1.1"), (LocalClaims(), None)):
        bridge = FakeBridge()
        runner = FakeRunner()
        worker = start_worker(runner, clock, bridge, claims=claims)
        try:
            cmd = command(1)
            send(worker, cmd)
            wait_for(lambda: len(clock.pending()) == 2, "the announce and heartbeat timers")
            clock.advance(ANNOUNCE_AFTER)
            wait_for(lambda cmd=cmd, bridge=bridge: bridge.statuses(cmd.id) == [
                "accepted", "started"], "the announcement")
            runner.handles[cmd.id].succeed()
            wait_for(lambda cmd=cmd, bridge=bridge: bridge.statuses(cmd.id)[-1:] == ["succeeded"],
                     "the final event")
            assert bridge.event_msg_ids(cmd.id) == [None, None, expected]
        finally:
            worker.stop()


def test_an_attempt_beats_as_often_as_its_command_asks(clock: ManualClock) -> None:
    """A node with a shorter heartbeat than the worker's takes three missed for a lost
    worker: the worker beats at the command's pace, not its own."""
    bridge = FakeBridge()
    runner = FakeRunner()
    worker = start_worker(runner, clock, bridge)
    try:
        cmd = Command(workflow_id="wf-1", task="t", step="s1", attempt=1, plugin="echo",
                      input={}, heartbeat=HEARTBEAT / 4)
        send(worker, cmd)
        wait_for(lambda: len(clock.pending()) == 2, "the announce and heartbeat timers")
        clock.advance(ANNOUNCE_AFTER)
        wait_for(lambda: bridge.statuses(cmd.id) == ["accepted", "started"], "the announcement")
        for beats in (1, 2, 3):
            clock.advance(HEARTBEAT / 4)
            wait_for(lambda beats=beats: bridge.statuses(cmd.id).count("heartbeat") == beats,
                     f"heartbeat {beats}, a quarter of the worker's own apart")
    finally:
        worker.stop()


def test_a_command_that_waits_in_the_queue_is_accepted_at_once(clock: ManualClock) -> None:
    bridge = FakeBridge()
    runner = FakeRunner()
    worker = start_worker(runner, clock, bridge, max_in_flight=1)
    try:
        first, second = command(1), command(2)
        send(worker, first)
        send(worker, second)
        wait_for(lambda: bridge.statuses(second.id) == ["accepted"], "the queued one's accepted")
        assert bridge.statuses(first.id) == []
        assert second.id not in runner.handles
        runner.handles[first.id].succeed()
        wait_for(lambda: second.id in runner.handles, "the queued one to run")
        runner.handles[second.id].succeed()
        wait_for(lambda: bridge.statuses(second.id) == ["accepted", "succeeded"],
                 "the queued one's final event")
        assert bridge.statuses(first.id) == ["succeeded"]
    finally:
        worker.stop()


def test_a_command_waiting_in_the_queue_gets_heartbeats(clock: ManualClock) -> None:
    """Its step counts silence as a lost worker: a full worker must keep talking."""
    bridge = FakeBridge()
    runner = FakeRunner()
    worker = start_worker(runner, clock, bridge, max_in_flight=1)
    try:
        first, second = command(1), command(2)
        send(worker, first)
        send(worker, second)
        wait_for(lambda: bridge.statuses(second.id) == ["accepted"], "the queued one's accepted")
        for beats in range(1, 4):
            clock.advance(HEARTBEAT)
            wait_for(lambda beats=beats: bridge.statuses(second.id).count("heartbeat") == beats,
                     f"heartbeat {beats} of the queued command")
        runner.handles[first.id].succeed()
        wait_for(lambda: second.id in runner.handles, "the queued one to run")
    finally:
        worker.stop()


def test_records_carry_every_field_and_come_back_equal() -> None:
    import attrs

    from noetl_actors.runtime import Event, EventStatus

    cmd = Command(workflow_id="wf-1", task="t", step="s", attempt=2, plugin="echo",
                  input={"a": {"b": [1]}}, runner="inproc", timeout=2.5, heartbeat=0.5)
    assert cmd.to_data() == {"type": "command", "command_id": cmd.id, **attrs.asdict(
        cmd, filter=lambda a, _v: a.name not in ("kubernetes", "follow"))}  # only when set
    assert Command.from_data(cmd.to_data()) == cmd
    kube = attrs.evolve(cmd, runner="kubernetes", kubernetes={"env": {"A": "1"}}, follow=2)
    assert kube.to_data() == {"type": "command", "command_id": cmd.id, **attrs.asdict(kube)}
    assert Command.from_data(kube.to_data()) == kube
    event = Event(command_id=cmd.id, workflow_id="wf-1", step_id=cmd.step_id, attempt=2,
                  status=EventStatus.FAILED, worker="w", output={"o": 1}, error_type="E",
                  error_message="m")
    assert event.to_data() == {"type": "event",
                               **attrs.asdict(event, value_serializer=lambda _i, _a, v:
                                              v.value if isinstance(v, EventStatus) else v)}
    assert Event.from_data(event.to_data()) == event


class RemoteClaims(LocalClaims):
    """Claims as `BucketClaims` makes them: settled later, on another thread (the
    bridge's loop), when the test says; `most_in_flight` is how many waited at once."""

    local = False

    def __init__(self) -> None:
        super().__init__()
        self.pending: list[tuple[Command, Settled]] = []
        self.most_in_flight = 0
        self.calls = 0

    def claim(self, command: Command, settled: Settled) -> None:
        with self._lock:
            self.calls += 1
            self.pending.append((command, settled))
            self.most_in_flight = max(self.most_in_flight, len(self.pending))

    def settle(self, *, error: Exception | None = None) -> None:
        """Settle every pending claim, on a thread of their own (as the loop would)."""
        with self._lock:
            pending, self.pending = self.pending, []

        def run() -> None:
            for command, settled in pending:
                settled(error if error is not None else self.take(command))

        thread = threading.Thread(target=run, name="fake-nats-loop")
        thread.start()
        thread.join(WAIT)


class ThreadsRunner(FakeRunner):
    """An instant runner that notes the thread each attempt ran on."""

    def __init__(self) -> None:
        super().__init__(instant=True)
        self.threads: dict[str, str] = {}

    def start(self, plugin: PluginInfo, attempt: Attempt) -> Handle:
        self.threads[attempt.command_id] = threading.current_thread().name
        return super().start(plugin, attempt)


def delivery(cmd: Command, reply: str | None = None) -> Delivery:
    return Delivery(subject=cmd.subject, data=cmd.to_data(), reply=reply)


def answers(bridge: FakeBridge, reply: str) -> list[str]:
    with bridge._lock:
        return [data["answer"] for subject, data in bridge.published if subject == reply]


def test_an_instant_plugins_commands_run_where_they_arrive_once_each(
    clock: ManualClock,
) -> None:
    bridge = FakeBridge()
    runner = FakeRunner(instant=True)
    process = FakeRunner()
    worker = PluginWorker.start(
        PluginInfo(name="echo", instant=True), bridge=bridge,
        runners={"inproc": runner, "process": process}, claims=LocalClaims(), clock=clock,
        heartbeat=HEARTBEAT)
    try:
        on_loop = on_loop_of(bridge)
        assert on_loop is not None
        cmd = command(1)

        assert on_loop(delivery(cmd)) is True
        assert bridge.statuses(cmd.id) == ["succeeded"], "sent on the caller's thread"
        assert on_loop(delivery(cmd)) is True, "delivered again: taken, and not run again"
        assert bridge.statuses(cmd.id) == ["succeeded"]
        assert list(runner.handles) == [cmd.id]

        other = Command(workflow_id="wf-1", task="t", step="p", attempt=1, plugin="echo",
                        input={}, runner="process", heartbeat=HEARTBEAT)
        assert on_loop(delivery(other)) is True, "taken in (claimed) where it arrives"
        wait_for(lambda: other.id in process.handles, "the worker's thread to start it")
        assert other.id not in runner.handles
        assert on_loop(Delivery(subject=cmd.subject, data={"not": "a command"})) is False
    finally:
        worker.stop()


class BrokenRunner(FakeRunner):
    def start(self, plugin: PluginInfo, attempt: Attempt) -> Handle:
        raise TypeError("a bug in the runner")


def test_a_claimed_command_that_cannot_start_on_the_loop_fails_its_step_at_once(
    clock: ManualClock,
) -> None:
    # Claimed, it would be dropped by the worker's thread (claimed already): say so.
    bridge = FakeBridge()
    worker = start_worker(BrokenRunner(instant=True), clock, bridge,
                          plugin=PluginInfo(name="echo", instant=True))
    try:
        on_loop = on_loop_of(bridge)
        assert on_loop is not None
        cmd = command(1)
        assert on_loop(Delivery(subject=cmd.subject, data=cmd.to_data())) is True
        assert bridge.statuses(cmd.id) == ["failed"]
        (_, event), = [p for p in bridge.published if p[1].get("command_id") == cmd.id]
        assert event["error_type"] == "crash" and "a bug in the runner" in event["error_message"]
    finally:
        worker.stop()


class SlowRunner(FakeRunner):
    """An 'instant' plugin that is not: it computes for 30 ms, or sleeps for 260."""

    def __init__(self, *, sleeps: bool) -> None:
        super().__init__(instant=True)
        self.sleeps = sleeps
        self.threads: dict[str, str] = {}

    def start(self, plugin: PluginInfo, attempt: Attempt) -> Handle:
        self.threads[attempt.command_id] = threading.current_thread().name
        if self.sleeps:
            time.sleep(LOOP_WALL_BUDGET + 0.01)
        else:
            until = time.thread_time() + 0.03
            while time.thread_time() < until:
                pass
        return super().start(plugin, attempt)


@pytest.mark.parametrize("sleeps", [False, True])
def test_an_instant_plugin_too_slow_for_the_loop_runs_on_the_workers_thread_after(
    clock: ManualClock, caplog: pytest.LogCaptureFixture, sleeps: bool
) -> None:
    bridge = FakeBridge()
    runner = SlowRunner(sleeps=sleeps)
    worker = start_worker(runner, clock, bridge, plugin=PluginInfo(name="echo", instant=True))
    try:
        on_loop = on_loop_of(bridge)
        assert on_loop is not None
        # One slow run may be a garbage collection: it takes LOOP_STRIKES in a row.
        slow = [command(n) for n in range(LOOP_STRIKES)]
        for cmd in slow:
            assert "marked instant" not in caplog.text
            assert on_loop(delivery(cmd)) is True
        assert all(bridge.statuses(cmd.id) == ["succeeded"] for cmd in slow)
        assert "marked instant but took" in caplog.text

        later = command(LOOP_STRIKES)
        assert on_loop(delivery(later)) is True, "taken in (claimed) where it arrives"
        wait_for(lambda: bridge.statuses(later.id) == ["succeeded"], "the later one's event")
        here = threading.current_thread().name
        assert runner.threads[slow[0].id] == here
        assert runner.threads[later.id] != here, "the next one runs on the worker's thread"
    finally:
        worker.stop()


def test_a_plugin_that_is_not_instant_runs_on_the_workers_thread(clock: ManualClock) -> None:
    bridge = FakeBridge()
    runner = ThreadsRunner()
    worker = start_worker(runner, clock, bridge)  # instant runner, plugin not marked so
    try:
        on_loop = on_loop_of(bridge)
        assert on_loop is not None
        cmd = command(1)
        assert on_loop(delivery(cmd)) is True
        wait_for(lambda: bridge.statuses(cmd.id) == ["succeeded"], "the final event")
        assert runner.threads[cmd.id] != threading.current_thread().name
    finally:
        worker.stop()


def test_a_burst_of_commands_is_claimed_all_at_once_not_one_round_trip_after_another(
    clock: ManualClock,
) -> None:
    """The overload of issue 7: a worker that waited out each claim's round trip on its
    own thread fell behind a burst, and the steps, hearing nothing, took their commands
    for lost. Claims go out as commands arrive; each runs where its claim settles."""
    bridge = FakeBridge()
    claims = RemoteClaims()
    runner = ThreadsRunner()
    worker = start_worker(runner, clock, bridge, plugin=PluginInfo(name="echo", instant=True),
                          claims=claims)
    try:
        on_loop = on_loop_of(bridge)
        assert on_loop is not None
        burst = [command(n) for n in range(200)]
        for cmd in burst:
            assert on_loop(delivery(cmd)) is True
        assert claims.most_in_flight == len(burst), "a claim waited for another's answer"
        assert all(bridge.statuses(cmd.id) == [] for cmd in burst)

        claims.settle()

        wait_for(lambda: all(bridge.statuses(cmd.id) == ["succeeded"] for cmd in burst),
                 "every command's final event")
        assert set(runner.threads.values()) == {"fake-nats-loop"}, "run where claims settle"
    finally:
        worker.stop()


def test_a_command_sent_again_is_answered_and_claimed_once(clock: ManualClock) -> None:
    """Its step heard nothing yet: the worker says it holds it, with no second claim
    (once its claim is settled: it may not be this worker's)."""
    bridge = FakeBridge()
    claims = RemoteClaims()
    runner = FakeRunner()
    worker = start_worker(runner, clock, bridge, claims=claims)
    try:
        on_loop = on_loop_of(bridge)
        assert on_loop is not None
        cmd = command(1)
        assert on_loop(delivery(cmd)) is True
        assert on_loop(delivery(cmd, reply="_INBOX.again.1")) is True
        assert answers(bridge, "_INBOX.again.1") == [], "answered before its claim settled"
        claims.settle()
        assert answers(bridge, "_INBOX.again.1") == ["held"]
        wait_for(lambda: cmd.id in runner.handles, "the attempt to start")
        assert on_loop(delivery(cmd, reply="_INBOX.again.2")) is True
        assert answers(bridge, "_INBOX.again.2") == ["held"]
        assert claims.calls == 1
        assert list(runner.handles) == [cmd.id]
    finally:
        worker.stop()


class OwnedHereClaims(RemoteClaims):
    """Remote claims of workflows whose owner is in this process (`owner_here`)."""

    def owner_here(self, command: Command) -> bool:
        return True


@contextlib.contextmanager
def worker_on_loop(clock: ManualClock, runner: FakeRunner, claims: Any,
                   plugin: PluginInfo) -> Iterator[tuple[FakeBridge, Callable[[Delivery], bool]]]:
    """A worker of `plugin` with `claims`: its bridge, and what it runs on the loop."""
    bridge = FakeBridge()
    worker = start_worker(runner, clock, bridge, claims=claims, plugin=plugin)
    try:
        on_loop = on_loop_of(bridge)
        assert on_loop is not None
        yield bridge, on_loop
    finally:
        worker.stop()


@pytest.mark.parametrize("idempotent", [True, False])
def test_an_idempotent_instant_plugin_of_a_workflow_owned_here_runs_with_no_claim(
    clock: ManualClock, idempotent: bool,
) -> None:
    """Its owner is in this process and allows: running it twice would do no harm, so
    it runs where it arrives, at once, with no claim in NATS; a resend is told `held`.
    Not idempotent, it waits for its claim as any command does."""
    claims = OwnedHereClaims()
    runner = FakeRunner(instant=True)
    plugin = PluginInfo(name="echo", instant=True, idempotent=idempotent)
    with worker_on_loop(clock, runner, claims, plugin) as (bridge, on_loop):
        cmd = command(1)
        assert on_loop(delivery(cmd)) is True
        if idempotent:
            assert bridge.statuses(cmd.id) == ["succeeded"]
            assert claims.calls == 0
        else:
            assert bridge.statuses(cmd.id) == [] and claims.calls == 1
            claims.settle()
            wait_for(lambda: bridge.statuses(cmd.id) == ["succeeded"], "its event")
        assert on_loop(delivery(cmd, reply="_INBOX.again.1")) is True
        assert answers(bridge, "_INBOX.again.1") == ["held"]
        assert list(runner.handles) == [cmd.id], "run once"
        assert claims.calls == (0 if idempotent else 1)


@pytest.mark.parametrize("idempotent", [True, False])
def test_an_idempotent_waiting_plugin_of_a_workflow_owned_here_starts_with_no_claim(
    clock: ManualClock, idempotent: bool,
) -> None:
    """`waits` (sleep): it only waits, so a second run does no harm either if it says
    it is idempotent: started on the worker's thread with no claim; else claimed."""
    claims = OwnedHereClaims()
    runner = FakeRunner()
    plugin = PluginInfo(name="echo", waits=True, idempotent=idempotent)
    with worker_on_loop(clock, runner, claims, plugin) as (bridge, on_loop):
        cmd = command(1)
        assert on_loop(delivery(cmd)) is True
        if not idempotent:
            assert claims.calls == 1
            claims.settle()
        wait_for(lambda: cmd.id in runner.handles, "the attempt to start")
        runner.handles[cmd.id].succeed()
        wait_for(lambda: bridge.statuses(cmd.id) == ["succeeded"], "its event")
        assert claims.calls == (0 if idempotent else 1)


def test_a_resend_first_seen_by_a_worker_of_the_owners_process_is_run_and_answered(
    clock: ManualClock,
) -> None:
    """A command sent again that this worker never saw (its first send went to another
    worker, or this worker was started again): run here with no claim, and its step is
    told `held`, as a claimed resend is, not left to wait out its request."""
    claims = OwnedHereClaims()
    runner = FakeRunner(instant=True)
    plugin = PluginInfo(name="echo", instant=True, idempotent=True)
    with worker_on_loop(clock, runner, claims, plugin) as (bridge, on_loop):
        cmd = command(1)
        assert on_loop(delivery(cmd, reply="_INBOX.first.1")) is True
        assert bridge.statuses(cmd.id) == ["succeeded"]
        assert answers(bridge, "_INBOX.first.1") == ["held"]
        assert claims.calls == 0 and list(runner.handles) == [cmd.id]


class FenceComesBackClaims(OwnedHereClaims):
    """The owner's fence did not allow when the command came (its claim was made), and
    allows again when it is sent again (`allowing`)."""

    allowing = False

    def owner_here(self, command: Command) -> bool:
        return self.allowing


def test_a_resend_while_its_claim_is_in_flight_is_told_what_the_claim_found(
    clock: ManualClock,
) -> None:
    """Claimed when it came (the fence did not allow then), sent again once the fence
    allows, while the claim is still in flight: the step is told what the claim found
    (another worker's: `taken`), once, and this worker does not run it."""
    claims = FenceComesBackClaims()
    runner = FakeRunner(instant=True)
    plugin = PluginInfo(name="echo", instant=True, idempotent=True)
    with worker_on_loop(clock, runner, claims, plugin) as (bridge, on_loop):
        cmd = command(1)
        assert on_loop(delivery(cmd)) is True
        assert claims.calls == 1
        claims.take(cmd)  # another worker got a resend of it first, and claimed it
        claims.allowing = True
        assert on_loop(delivery(cmd, reply="_INBOX.again.1")) is True
        claims.settle()
        assert answers(bridge, "_INBOX.again.1") == ["taken"]
        assert bridge.statuses(cmd.id) == [] and list(runner.handles) == []
        assert claims.calls == 1


def test_a_command_another_worker_claimed_is_answered_taken_and_not_run(
    clock: ManualClock,
) -> None:
    bridge = FakeBridge()
    claims = LocalClaims()
    runner = FakeRunner()
    cmd = command(1)
    assert claims.take(cmd) is Claim.MINE  # another worker's (since gone)
    worker = start_worker(runner, clock, bridge, claims=claims)
    try:
        on_loop = on_loop_of(bridge)
        assert on_loop is not None
        assert on_loop(delivery(cmd, reply="_INBOX.again.1")) is True
        assert answers(bridge, "_INBOX.again.1") == ["taken"]
        time.sleep(0.05)
        assert runner.handles == {} and bridge.statuses(cmd.id) == []
    finally:
        worker.stop()


def test_a_claim_nats_did_not_answer_is_made_again_when_the_command_comes_again(
    clock: ManualClock, caplog: pytest.LogCaptureFixture,
) -> None:
    from noetl_actors.errors import BridgeTimeout

    bridge = FakeBridge()
    claims = RemoteClaims()
    runner = FakeRunner()
    worker = start_worker(runner, clock, bridge, claims=claims)
    try:
        on_loop = on_loop_of(bridge)
        assert on_loop is not None
        cmd = command(1)
        assert on_loop(delivery(cmd)) is True
        claims.settle(error=BridgeTimeout("no answer from NATS within 5s"))
        assert "could not claim" in caplog.text
        assert on_loop(delivery(cmd)) is True
        assert claims.calls == 2
        claims.settle()
        wait_for(lambda: cmd.id in runner.handles, "the attempt to start")
    finally:
        worker.stop()


def test_a_worker_says_it_started_so_steps_waiting_for_one_send_again(
    clock: ManualClock,
) -> None:
    bridge = FakeBridge()
    worker = start_worker(FakeRunner(), clock, bridge)
    try:
        wait_for(lambda: any(subject == "noetl.ready.echo" for subject, _ in bridge.published),
                 "the worker's announcement")
        assert "command.echo.>" in bridge.on_loop, "announced once it listens"
    finally:
        worker.stop()
