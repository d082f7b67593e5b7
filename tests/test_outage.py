"""Judgements an outage of NATS must not fool, on manual clocks: a step's silence check
(runtime/_outage.py, through the `EventRouter`), what a workflow reads back after an
outage, and a taker's look at the leases (`LeaseKeeper`).

The link to NATS is a `LinkState` the test sets; the stream a workflow reads back
from is a function that returns a future the test settles.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Callable
from typing import Any

import attrs
import pytest

from noetl_actors.bridge import Delivery, Entry, LinkState
from noetl_actors.errors import ConnectError
from noetl_actors.runtime import Event, EventStatus
from noetl_actors.runtime._outage import Outages, latest_events, reconnect_margin
from noetl_actors.runtime._router import EventRouter, _Tick
from noetl_actors.services._lease import HeldLease, LeaseRecord, Leases
from noetl_actors.services._takeover import LeaseKeeper
from noetl_actors.supervision import ManualClock
from tests.kv_double import MemoryKeyValue

HEARTBEAT = 1.0
SILENT = 3 * HEARTBEAT
MARGIN = 5.5
WAIT = 5.0


class Link:
    """The node's link to NATS as the test says it is."""

    def __init__(self) -> None:
        self.state = LinkState(up=True, changes=1)

    def __call__(self) -> LinkState:
        return self.state

    def down(self) -> None:
        self.state = LinkState(up=False, changes=self.state.changes + 1)

    def up(self) -> None:
        self.state = LinkState(up=True, changes=self.state.changes + 1)


class Mailbox:
    """Stands for a step actor's ref: keeps what it is told."""

    def __init__(self) -> None:
        self.told: list[Any] = []

    def tell(self, message: Any) -> None:
        self.told.append(message)

    def events(self) -> list[Event]:
        return [message for message in self.told if isinstance(message, Event)]


def event(step: str, attempt: int, status: EventStatus) -> Event:
    return Event(command_id=f"wf-1.t={step}.{attempt}", workflow_id="wf-1",
                 step_id=f"t={step}", attempt=attempt, status=status, worker="w")


def delivery(of: Event) -> Delivery:
    return Delivery(f"event.shell.wf-1.{of.step_id}", of.to_data())


# -- a step's silence ------------------------------------------------------------------


def test_the_margin_covers_a_worker_reconnecting_one_attempt_later() -> None:
    assert reconnect_margin(connect_timeout=5.0, reconnect_wait=0.5) == MARGIN


def test_silence_counts_from_the_last_word_while_nats_stays_up() -> None:
    outages = Outages(Link(), margin=MARGIN)
    assert outages.silence_start(10.0) == 10.0


def test_silence_while_nats_is_away_does_not_count() -> None:
    link = Link()
    outages = Outages(link, margin=MARGIN)
    link.down()
    outages.watch(12.0)
    assert outages.silence_start(10.0) is None  # the step judges nothing
    assert not outages.up


def test_silence_counts_again_a_margin_after_nats_is_back() -> None:
    # heard at 10, NATS away 12..20: the worker is silent only from 20 + margin on,
    # and taken for lost three heartbeats after that, not at 13 (the bug).
    link = Link()
    outages = Outages(link, margin=MARGIN)
    link.down()
    outages.watch(12.0)
    link.up()
    assert outages.watch(20.0), "the link came back"
    start = outages.silence_start(10.0)
    assert start == 20.0 + MARGIN
    assert 20.0 + MARGIN + SILENT - start == SILENT
    assert outages.silence_start(30.0) == 30.0, "a word heard after the margin counts as is"


def test_an_outage_between_two_looks_counts_as_one() -> None:
    link = Link()
    outages = Outages(link, margin=MARGIN)
    link.down()
    link.up()  # down and back before the router's next tick
    assert outages.watch(15.0)
    assert outages.silence_start(10.0) == 15.0 + MARGIN
    assert not outages.watch(16.0), "nothing changed since"


def test_the_router_gives_its_steps_the_outage_view() -> None:
    clock = ManualClock()
    link = Link()
    router = EventRouter(clock=clock, heartbeat=HEARTBEAT,
                         outages=Outages(link, margin=MARGIN))
    step = Mailbox()
    router.register("t=a", step)  # type: ignore[arg-type]
    link.down()
    clock.advance(HEARTBEAT / 2)
    assert router.silence_start(0.0) is None
    assert any(isinstance(message, _Tick) for message in step.told), "ticks go on"
    link.up()
    clock.advance(HEARTBEAT / 2)
    assert router.silence_start(0.0) == clock.now() + MARGIN
    assert EventRouter(clock=clock, heartbeat=HEARTBEAT).silence_start(3.0) == 3.0


# -- what a workflow reads back after an outage ----------------------------------------


class Reads:
    """`read_missed`: records the step ids asked for; the test settles each future."""

    def __init__(self) -> None:
        self.asked: list[list[str]] = []
        self.futures: list[concurrent.futures.Future[list[Delivery]]] = []
        self.refuse = False

    def __call__(self, step_ids: list[str]) -> concurrent.futures.Future[list[Delivery]]:
        if self.refuse:
            raise ConnectError("no connection now")
        self.asked.append(sorted(step_ids))
        future: concurrent.futures.Future[list[Delivery]] = concurrent.futures.Future()
        self.futures.append(future)
        return future


def reading_router(clock: ManualClock, link: Link, reads: Reads,
                   listener: Callable[[Event], object] | None = None) -> EventRouter:
    return EventRouter(clock=clock, heartbeat=HEARTBEAT, listener=listener,
                       outages=Outages(link, margin=MARGIN), read_missed=reads)


def test_after_an_outage_the_steps_get_what_the_stream_kept_for_them() -> None:
    clock, link, reads = ManualClock(), Link(), Reads()
    heard: list[Event] = []
    router = reading_router(clock, link, reads, heard.append)
    a, b = Mailbox(), Mailbox()
    router.register("t=a", a)  # type: ignore[arg-type]
    router.register("t=b", b)  # type: ignore[arg-type]
    clock.advance(HEARTBEAT / 2)
    assert reads.asked == [], "no outage, nothing to read"

    link.down()
    clock.advance(HEARTBEAT / 2)
    assert reads.asked == [], "nothing to read while NATS is away"
    link.up()
    clock.advance(HEARTBEAT / 2)
    assert reads.asked == [["t=a", "t=b"]]
    a_end = event("a", 1, EventStatus.SUCCEEDED)
    b_end, b_word = event("b", 1, EventStatus.FAILED), event("b", 2, EventStatus.HEARTBEAT)
    reads.futures[0].set_result([
        delivery(event("a", 1, EventStatus.STARTED)), delivery(a_end),
        delivery(event("a", 1, EventStatus.HEARTBEAT)),  # a late word after the end
        delivery(b_end), delivery(event("b", 2, EventStatus.STARTED)), delivery(b_word)])
    assert a.events() == [a_end]
    assert b.events() == [b_end, b_word]
    assert heard == [a_end, b_end, b_word]
    clock.advance(HEARTBEAT / 2)
    assert len(reads.asked) == 1, "read once per outage"


def test_a_read_back_that_fails_is_tried_again_at_the_next_tick() -> None:
    clock, link, reads = ManualClock(), Link(), Reads()
    router = reading_router(clock, link, reads)
    step = Mailbox()
    router.register("t=a", step)  # type: ignore[arg-type]
    link.down()
    link.up()
    reads.refuse = True
    clock.advance(HEARTBEAT / 2)
    reads.refuse = False
    clock.advance(HEARTBEAT / 2)
    assert reads.asked == [["t=a"]]
    reads.futures[0].set_exception(ConnectError("JetStream not ready yet"))
    clock.advance(HEARTBEAT / 2)
    assert reads.asked == [["t=a"], ["t=a"]]
    end = event("a", 1, EventStatus.SUCCEEDED)
    reads.futures[1].set_result([delivery(end)])
    assert step.events() == [end]


def test_an_end_read_back_for_a_step_not_registered_yet_waits_for_it() -> None:
    clock, link, reads = ManualClock(), Link(), Reads()
    router = reading_router(clock, link, reads)
    router.register("t=a", Mailbox())  # type: ignore[arg-type]
    link.down()
    link.up()
    clock.advance(HEARTBEAT / 2)
    end = event("b", 1, EventStatus.SUCCEEDED)
    reads.futures[0].set_result([delivery(end)])
    later = Mailbox()
    router.register("t=b", later)  # type: ignore[arg-type]
    assert later.events() == [end]


def test_of_an_attempts_events_its_end_counts_else_its_latest_word() -> None:
    started, beat = event("a", 1, EventStatus.STARTED), event("a", 1, EventStatus.HEARTBEAT)
    end = event("a", 2, EventStatus.FAILED)
    malformed = Delivery("event.shell.wf-1.t=a", {"schema_version": 1, "what": "?"})
    assert latest_events([delivery(started), malformed, delivery(end), delivery(beat)]) == [
        end, beat]
    assert latest_events([delivery(end), delivery(event("a", 2, EventStatus.HEARTBEAT))]) == [
        end]


# -- an owner's lease after an outage -----------------------------------------------


def test_an_end_that_finds_its_lease_lapsed_waits_for_the_renewal() -> None:
    """A workflow whose end comes in as NATS is back, before its owner renewed: its final
    record waits for the lease (it was dropped, and the lease released)."""
    clock = ManualClock()
    lease = HeldLease("wf-1", LeaseRecord("a", 1), 7, valid_until=clock.now() - 1, clock=clock)
    assert not lease.wait_allowed(0.1), "not renewed: it may not act"

    def renew() -> None:
        time.sleep(0.2)
        lease.valid_until = clock.now() + 3.0

    renewer = threading.Thread(target=renew)
    renewer.start()
    try:
        assert lease.wait_allowed(WAIT)
    finally:
        renewer.join()
    lease.valid_until = clock.now() - 1
    lease.lost = True
    started = time.monotonic()
    assert not lease.wait_allowed(WAIT)
    assert time.monotonic() - started < WAIT, "a lost lease is not waited for"


def test_what_a_workflow_writes_before_its_lease_is_renewed_is_written_after_in_order(
        ) -> None:
    """NATS is back, the lease not yet renewed, and the workflow acts (a one_for_all task
    starts over): its journal entries wait for the renewal and go out before anything
    the renewal allows (they were dropped: a takeover then replayed what was reset)."""
    clock = ManualClock()
    lease = HeldLease("wf-1", LeaseRecord("a", 1), 7, valid_until=clock.now() - 1, clock=clock)
    written: list[str] = []
    lease.when_allowed(lambda: written.append("reset"))
    lease.when_allowed(lambda: written.append("restarted"))
    assert written == [], "not renewed: nothing is written yet"

    def command_after_renewal() -> None:  # what a step sends once the lease allows
        if lease.allows():
            written.append("command")

    lease.renewed(8, clock.now() + 3.0)
    command_after_renewal()
    lease.when_allowed(lambda: written.append("exited"))
    assert written == ["reset", "restarted", "command", "exited"]
    assert lease.revision == 8


def test_writes_held_back_by_a_lease_that_is_then_lost_are_never_written() -> None:
    clock = ManualClock()
    lease = HeldLease("wf-1", LeaseRecord("a", 1), 7, valid_until=clock.now() - 1, clock=clock)
    written: list[str] = []
    lease.when_allowed(lambda: written.append("reset"))
    lease.lost = True  # another node took the workflow over meanwhile
    lease.when_allowed(lambda: written.append("exited"))
    lease.renewed(8, clock.now() + 3.0)
    assert written == []


def test_a_lease_released_while_it_is_renewed_is_not_taken_for_lost() -> None:
    """Workflows that end as NATS comes back end together, each once its lease is
    renewed: one released while the next renewal is under way is not "lost"."""
    clock = ManualClock()
    leases = Leases(MemoryKeyValue(), owner="a", duration=3.0, clock=clock)
    lease = leases.acquire("wf-1")
    assert isinstance(leases.kv, MemoryKeyValue)
    leases.kv.in_flight = lambda: leases.release(lease)  # as the renewal's write travels
    renewal = leases.renew()
    assert renewal.lost == [] and not lease.lost
    assert leases.kv.get("wf-1") is None and not leases.holds("wf-1")


# -- a taker's look at the leases ------------------------------------------------------


@attrs.define
class FakeNode:
    """What `LeaseKeeper` asks of its node: its bridge's link, and the takeover."""

    link: Link
    taken: list[str] = attrs.field(factory=list)

    @property
    def bridge(self) -> Any:
        return self

    def take_over(self, lease: Any, entry: Entry) -> None:
        self.taken.append(entry.key)

    def let_go(self, lease: Any, now: Any) -> None:
        raise AssertionError("this node holds no lease")


class SlowLook(MemoryKeyValue):
    """A bucket whose next `entries()` waits out an outage: NATS goes away while it is
    asked, and it is answered once NATS is back (nats-py flushes it on reconnect)."""

    def __init__(self, kv: MemoryKeyValue, link: Link) -> None:
        super().__init__(kv._bucket, name=kv.bucket)
        self.link = link
        self.looks = 0
        self.across_outage = False

    def entries(self) -> dict[str, Entry]:
        if self.across_outage:
            self.across_outage = False
            self.link.down()
            self.link.up()
        self.looks += 1
        return super().entries()


def test_a_look_at_the_leases_that_spans_an_outage_takes_nothing() -> None:
    """The owner could not renew while NATS was away: a read answered only once NATS is
    back, its lease unchanged for longer than the lease, is no ground to take it; the
    judgement starts over, and a dead owner is still taken over a lease later."""
    duration = 3.0
    clock, link = ManualClock(), Link()
    bucket = MemoryKeyValue()
    bucket.put("wf-1", LeaseRecord("a", 1).to_data())
    kv = SlowLook(bucket.connection(), link)
    node = FakeNode(link)
    keeper = LeaseKeeper.start(node, leases=Leases(kv, owner="b", duration=duration,
                                                   clock=clock), clock=clock)
    try:
        def beat(looks: int) -> None:
            clock.advance(duration / 3)
            deadline = time.monotonic() + WAIT
            while kv.looks < looks:
                assert time.monotonic() < deadline, f"look {looks} did not come"
                time.sleep(0.005)

        wait = time.monotonic() + WAIT
        while kv.looks < 1:  # the first look, at start
            assert time.monotonic() < wait
            time.sleep(0.005)
        beat(2)
        kv.across_outage = True
        beat(3)  # a lease after the first look: would be taken, but NATS was away
        beat(4)
        beat(5)
        assert node.taken == []
        beat(6)  # a lease after the look that followed the outage
        wait = time.monotonic() + WAIT
        while not node.taken:
            assert time.monotonic() < wait, "a dead owner's lease was never taken"
            time.sleep(0.005)
        assert node.taken == ["wf-1"]
    finally:
        keeper.stop()


pytestmark = pytest.mark.timeout(60)
