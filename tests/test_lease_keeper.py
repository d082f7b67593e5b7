"""`LeaseKeeper`: a node that died with many workflows loses them all for one lease.

The keeper runs as in a node (a real actor), on a `ManualClock`, over the
in-memory bucket of tests/kv_double.py; its node is a stand-in that records
the takeovers it is asked for.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from noetl_actors.bridge import Entry, LinkState
from noetl_actors.errors import NoetlError
from noetl_actors.services._lease import HeldLease, LeaseRecord, Leases
from noetl_actors.services._takeover import LeaseKeeper
from noetl_actors.supervision import ManualClock
from tests.kv_double import MemoryKeyValue

WAIT = 10.0
DURATION = 3.0


class StandInNode:
    """What `LeaseKeeper` asks of its node. Each takeover waits at `barrier` (if any):
    it passes only once that many are under way at the same time."""

    def __init__(self, barrier: threading.Barrier | None = None,
                 fails: frozenset[str] = frozenset(),
                 gate: threading.Event | None = None) -> None:
        self.barrier = barrier
        self.fails = fails
        self.gate = gate
        """Each takeover waits for it (if any) before it ends."""
        self.under_way = 0
        self.taken: list[str] = []
        self.lock = threading.Lock()

    @property
    def bridge(self) -> Any:
        return self

    def link(self) -> LinkState:
        return LinkState(up=True, changes=1)

    def take_over(self, lease: HeldLease, entry: Entry) -> None:
        if entry.key in self.fails:
            raise NoetlError(f"the history of {entry.key} could not be read")
        if self.barrier is not None:
            self.barrier.wait(WAIT)
        if self.gate is not None:
            with self.lock:
                self.under_way += 1
            assert self.gate.wait(WAIT)
        with self.lock:
            self.taken.append(entry.key)

    def let_go(self, lease: Any, now: Any) -> None:
        raise AssertionError("no lease of this node is lost here")


def wait_for(condition: Any, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def a_dead_owners_leases(count: int) -> MemoryKeyValue:
    bucket = MemoryKeyValue()
    for n in range(count):
        bucket.put(f"wf-{n}", LeaseRecord("a", 1).to_data())
    return bucket


def start_keeper(bucket: MemoryKeyValue, node: StandInNode,
                 clock: ManualClock) -> tuple[Any, Leases, MemoryKeyValue]:
    kv = bucket.connection()
    leases = Leases(kv, owner="b", duration=DURATION, clock=clock)
    keeper = LeaseKeeper.start(node, leases=leases, clock=clock)
    return keeper, leases, kv


def beat(clock: ManualClock, periods: int) -> None:
    """Let the keeper's rounds come `periods` times: each time, wait for it to finish
    its round (its next one armed), then move time to that next one."""
    for _ in range(periods):
        wait_for(clock.pending, "the keeper to end its round")
        clock.advance(DURATION / 3)


def let_the_leases_expire(clock: ManualClock) -> None:
    """The first look sees the leases at start; a lease and a period later they are due."""
    beat(clock, 5)


def test_the_workflows_of_a_round_are_resumed_at_the_same_time() -> None:
    """Four workflows whose takeovers each wait for the other three: taken one after
    the other, the first would wait for ever."""
    clock = ManualClock()
    node = StandInNode(barrier=threading.Barrier(4))
    keeper, _, kv = start_keeper(a_dead_owners_leases(4), node, clock)
    try:
        let_the_leases_expire(clock)
        wait_for(lambda: len(node.taken) == 4, "four takeovers")
        assert sorted(node.taken) == [f"wf-{n}" for n in range(4)]
        records = [LeaseRecord.from_data(kv.get(f"wf-{n}").data) for n in range(4)]
        assert records == [LeaseRecord("b", 2)] * 4
    finally:
        keeper.stop()


def test_a_takeover_that_fails_lets_its_lease_expire_for_the_next_taker() -> None:
    """A workflow that could not be resumed (its history unreadable) is not kept by a
    lease renewed for ever with nothing running: its lease is no longer renewed."""
    clock = ManualClock()
    node = StandInNode(fails=frozenset({"wf-1"}))
    keeper, leases, kv = start_keeper(a_dead_owners_leases(2), node, clock)
    try:
        let_the_leases_expire(clock)
        wait_for(lambda: node.taken == ["wf-0"] and not leases.holds("wf-1"),
                 "the failed takeover to let its lease go")
        assert leases.holds("wf-0")
        taken = kv.get("wf-1")
        assert taken is not None and taken.data["owner"] == "b"
        revision = taken.revision
        beat(clock, 2)  # two renewals of a held lease
        again = kv.get("wf-1")
        assert again is not None and again.revision == revision, "it was renewed"
    finally:
        keeper.stop()


def test_a_keeper_stopped_mid_round_waits_for_no_resume_and_forgets_those_not_begun() -> None:
    """Ten workflows to resume, eight at a time, and the eight under way hang (their
    node is stopping): the keeper's stop returns all the same, and the two queued
    leases are no longer held. A keeper started again on the same `Leases` (its
    supervisor restarts it) resumes them, instead of renewing them for ever with
    nothing running."""
    clock = ManualClock()
    gate = threading.Event()
    node = StandInNode(gate=gate)
    keeper, leases, _ = start_keeper(a_dead_owners_leases(10), node, clock)
    try:
        let_the_leases_expire(clock)
        wait_for(lambda: node.under_way == 8, "eight takeovers under way")
        assert len(leases.held()) == 10
        stopped = threading.Event()
        threading.Thread(target=lambda: (keeper.stop(), stopped.set()), daemon=True).start()
        wait_for(stopped.is_set, "the keeper to stop while its resumes hang")
        assert len(leases.held()) == 8, "the leases of resumes not begun are still held"
    finally:
        gate.set()
        keeper.stop()
    wait_for(lambda: len(node.taken) == 8, "the eight under way to end")
    again = LeaseKeeper.start(node, leases=leases, clock=clock)
    try:  # its first round takes back what its node's name holds and it does not
        wait_for(lambda: len(node.taken) == 10, "the two dropped resumes to be taken again")
        assert sorted(node.taken) == sorted(f"wf-{n}" for n in range(10))
    finally:
        again.stop()


class StallingBucket:
    """The leases bucket of a NATS that holds every read for half a lease (a stall, a
    large bucket, a busy loop), while the owners' renewals queued meanwhile land as the
    read ends (`renew_at_end`: the owner of each key renews then)."""

    def __init__(self, kv: MemoryKeyValue, clock: ManualClock, *,
                 renew_at_end: bool = False) -> None:
        self.kv = kv
        self.clock = clock
        self.renew_at_end = renew_at_end

    def entries(self) -> dict[str, Entry]:
        self.clock.advance(DURATION / 2)
        if self.renew_at_end:
            for key, entry in self.kv.entries().items():
                self.kv.update(key, entry.data, entry.revision)
        return self.kv.entries()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.kv, name)


def test_a_live_owner_whose_renewals_a_stall_held_keeps_its_leases() -> None:
    """Each read held for half a lease, the owner's renewal landing as it ends: the
    owner lives, and nothing moves however long it goes on."""
    clock = ManualClock()
    node = StandInNode()
    bucket = StallingBucket(a_dead_owners_leases(2).connection(), clock, renew_at_end=True)
    leases = Leases(bucket, owner="b", duration=DURATION, clock=clock)  # type: ignore[arg-type]
    keeper = LeaseKeeper.start(node, leases=leases, clock=clock)
    try:
        beat(clock, 12)  # by the clock, ten leases
        assert node.taken == [] and leases.held() == []
    finally:
        keeper.stop()


def test_reads_that_are_slow_but_steady_still_take_a_dead_owners_lease() -> None:
    """A large leases bucket (thousands of running workflows: each read takes longer
    than a third of a lease) or a busy bridge loop is no stall: a dead owner's
    workflows must still move (review of 0eeb385, which judged nothing on a slow read
    and so never moved them, saying nothing)."""
    clock = ManualClock()
    node = StandInNode()
    bucket = StallingBucket(a_dead_owners_leases(2).connection(), clock)  # slow for good
    leases = Leases(bucket, owner="b", duration=DURATION, clock=clock)  # type: ignore[arg-type]
    keeper = LeaseKeeper.start(node, leases=leases, clock=clock)
    try:
        beat(clock, 12)  # by the clock, 30 s: ten leases
        wait_for(lambda: sorted(node.taken) == ["wf-0", "wf-1"], "the two takeovers")
    finally:
        keeper.stop()


pytestmark = pytest.mark.timeout(60)
