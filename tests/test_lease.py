"""Leases and epochs (services/_lease.py) on manual clocks and an in-memory bucket.

The spec is `_lease`'s docstring: an owner takes itself for the owner until
`duration` after it *sent* its last successful renewal, by its own clock; a
taker takes a lease whose revision it has seen unchanged for `duration`, by
its own clock, with a compare-and-set that writes epoch + 1. Clocks of
different nodes read differently (offsets) but run at the same rate.

The nodes here are models of a served node: each its own `ManualClock`,
its own connection to one `MemoryKeyValue` (a test double of the bridge's
`KeyValue`, tests/kv_double.py), its own `Leases` and `Expiry`. Time moves
only by `tick`, a third of the duration (the period of `LeaseKeeper`).
Every order of a few steps is run (`explore`): a renewal, one NATS does not
answer or whose answer it loses, a taker's look at the bucket and its take
(apart: others may write in between), a cancel, a tick. A node paused
(SIGSTOP) is one that does nothing for a while; continued, it goes on.
After every step: at no instant do two leases allow (each by its node's
clock), one that allows is the bucket's owner and epoch, epochs grow by one
at each change of owner, a lease taken is found lost at its owner's next
renewal NATS answers, a taker takes exactly when its revision has kept for
the duration, a cancel mark is never lost. The last part: `WorkflowRecords`
fenced by these leases.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterable, Sequence

import attrs
import pytest

from noetl_actors.bridge import Entry
from noetl_actors.errors import NoetlError
from noetl_actors.playbook import parse_playbook
from noetl_actors.runtime import Event, EventStatus, RunReport
from noetl_actors.services._lease import Expiry, HeldLease, LeaseRecord, Leases, Renewal
from noetl_actors.services._records import WorkflowRecords
from noetl_actors.supervision import ManualClock
from tests.kv_double import DOWN, LOST_REPLY, MemoryKeyValue

DURATION = 3.0
THIRD = DURATION / 3
WORKFLOW = "wf-1"
OFFSETS = {"a": 0.0, "b": 1000.25, "c": -77.5}
"""Each node's clock reading at the start: only differences on one clock count."""
LOCK = type(threading.Lock())


class Node:
    """One node of the model: its clock, its connection, its `Leases` and `Expiry`."""

    def __init__(self, name: str, kv: MemoryKeyValue) -> None:
        self.name = name
        self.clock = ManualClock(OFFSETS[name])
        self.kv = kv.connection()
        self.leases = Leases(self.kv, owner=name, duration=DURATION, clock=self.clock)
        self.expiry = Expiry(DURATION)
        self.expired: list[Entry] = []
        """What the last `look` found expired, as read then: for `take`."""

    def look(self) -> None:
        """The first half of `LeaseKeeper._look_for_expired` (bar its first round, for a
        former self's leases): the leases of others, judged by revision and own clock."""
        try:
            entries = self.kv.entries()
        except NoetlError:
            self.expiry.blind()
            self.expired = []
            return
        others = {key: entry for key, entry in entries.items() if not self.leases.holds(key)}
        revisions = {key: entry.revision for key, entry in others.items()}
        self.expired = [others[key] for key in self.expiry.observe(revisions, self.clock.now())]

    def take(self) -> list[HeldLease]:
        """The second half: take what the last look found expired."""
        taken = []
        for entry in self.expired:
            try:
                lease = self.leases.take(entry)
            except NoetlError:
                continue
            if lease is not None:
                taken.append(lease)
        self.expired = []
        return taken

    def scan(self) -> list[HeldLease]:
        self.look()
        return self.take()


Step = tuple[str, str, "str | None"]
"""(what, node, fault): ("renew", "a", None), ("look", "b", DOWN), ("tick", "", None)..."""


def steps(spec: str) -> list[Step]:
    """'tick a.renew b.scan[down]' as steps; a fault is DOWN or LOST_REPLY."""
    parsed: list[Step] = []
    for word in spec.split():
        word, _, fault = word.rstrip("]").partition("[")
        name, _, what = word.rpartition(".")
        assert fault in ("", DOWN, LOST_REPLY), word
        parsed.append((what, name, fault or None))
    return parsed


def label(step: Step) -> str:
    what, name, fault = step
    return f"{name}.{what}[{fault}]" if fault else f"{name}.{what}" if name else what


class World:
    """Nodes on one bucket; node a has just acquired WORKFLOW (epoch 1).

    Each step is checked against the spec as it happens (`renew`, `look`,
    `take`, `cancel`), and the whole world against the invariants after it
    (`check`).
    """

    def __init__(self, names: str = "ab") -> None:
        self.kv = MemoryKeyValue()
        self.nodes = {name: Node(name, self.kv) for name in names}
        self.control = Leases(self.kv.connection(), owner="ctl", duration=DURATION,
                              clock=ManualClock())
        """Who asks for a cancel (`noetl cancel`'s side): it holds no lease."""
        self.steps: list[str] = []
        self.events: set[str] = set()
        """What happened, to show that the exploration got there."""
        self.issued: list[tuple[Node, HeldLease]] = []
        """Every lease any node was given, in order: a workflow keeps its fence even after
        its node forgot it."""
        self.epoch = 0
        """The epoch the bucket must hold: the last one written."""
        self.cancel_from: int | None = None
        """How many leases had been issued when the cancel was marked."""
        self.seen: dict[str, tuple[int, float] | None] = dict.fromkeys(names)
        """The reference taker of each node: the revision it has seen, since when."""
        first = self.nodes["a"].leases.acquire(WORKFLOW)
        self._issued(self.nodes["a"], first, LeaseRecord("a", 1))
        self.check()

    def run(self, steps: Iterable[Step]) -> World:
        for step in steps:
            self.steps.append(label(step))
            try:
                self.do(step)
                self.check()
            except AssertionError as error:
                raise AssertionError(f"after {' '.join(self.steps)}: {error}") from None
        return self

    def do(self, step: Step) -> None:
        what, name, fault = step
        if what == "tick":
            for node in self.nodes.values():
                node.clock.advance(THIRD)
        elif what == "cancel":
            self.cancel()
        elif what == "scan":
            self.look(self.nodes[name], fault if fault == DOWN else None)
            self.take(self.nodes[name], fault if fault == LOST_REPLY else None)
        else:
            action = {"renew": self.renew, "look": self.look, "take": self.take}[what]
            action(self.nodes[name], fault)

    def current(self) -> tuple[LeaseRecord | None, int]:
        """The lease in the bucket now, and its revision (0: none)."""
        data, revision = self.kv.peek(WORKFLOW)
        return (None if data is None else LeaseRecord.from_data(data)), revision

    # -- steps -------------------------------------------------------------------------

    def renew(self, node: Node, fault: str | None) -> None:
        held = node.leases.held()
        had_cancel = [lease.record.cancel for lease in held]
        before, revision = self.current()
        node.kv.fault = fault
        try:
            renewal = node.leases.renew()
        finally:
            node.kv.fault = None
        after, new_revision = self.current()
        if fault is not None:
            assert renewal == Renewal(), "a renewal NATS did not answer learnt something"
            assert node.leases.held() == held, "a renewal NATS did not answer dropped a lease"
            if fault == DOWN:
                assert (after, new_revision) == (before, revision)
            elif held and new_revision != revision:
                self.events.add("renewal written, its answer lost")
            return
        for lease, cancel in zip(held, had_cancel, strict=True):
            if before is None or (before.owner, before.epoch) != (node.name, lease.epoch):
                assert renewal.lost == [(lease, before)], (
                    f"node {node.name} did not find out it lost epoch {lease.epoch} to "
                    f"{before} at its next renewal: {renewal}")
                assert lease.lost and not lease.allows()
                assert not node.leases.holds(WORKFLOW)
                assert (after, new_revision) == (before, revision), "a lost lease was written"
                self.events.add("lost lease found")
                continue
            assert renewal.lost == []
            assert lease.valid_until == node.clock.now() + DURATION
            assert lease.allows() and node.leases.holds(WORKFLOW)
            assert after == before and new_revision == lease.revision > revision, (
                "a renewal writes the lease again as it was (a cancel mark kept)")
            asked = before.cancel and not cancel
            assert renewal.cancel == ([lease] if asked else []), "a cancel is reported once"
            assert lease.record.cancel == before.cancel
            if asked:
                self.events.add("cancel reported")
        assert not renewal.lost or held, "a renewal reported a lease it did not hold"

    def look(self, node: Node, fault: str | None) -> None:
        _, revision = self.current()
        expired = self._judge(node, revision, fault)
        node.kv.fault = fault
        try:
            node.look()
        finally:
            node.kv.fault = None
        assert [(e.key, e.revision) for e in node.expired] == (
            [(WORKFLOW, revision)] if expired else []), (
            f"node {node.name} found {node.expired} expired; by the spec "
            f"{f'revision {revision}' if expired else 'nothing'}")
        if fault == DOWN:
            self.events.add("blind")

    def take(self, node: Node, fault: str | None) -> None:
        pending = node.expired
        before, revision = self.current()
        takes = bool(pending) and pending[0].revision == revision
        node.kv.fault = fault
        try:
            taken = node.take()
        finally:
            node.kv.fault = None
        after, new_revision = self.current()
        if pending and not takes:
            assert taken == [] and (after, new_revision) == (before, revision), (
                "a take of a lease written since it was read")
            self.events.add("take refused")
            return
        if fault is not None or not takes:
            assert taken == []
            if fault == LOST_REPLY and takes:
                assert before is not None
                assert after == LeaseRecord(node.name, before.epoch + 1, before.cancel)
                self._written(after.epoch)
                self.events.add("take written, its answer lost")
            else:
                assert (after, new_revision) == (before, revision)
            return
        assert len(taken) == 1 and before is not None
        lease = taken[0]
        self._issued(node, lease, LeaseRecord(node.name, before.epoch + 1, before.cancel))
        assert lease.revision == new_revision and lease.allows()
        assert lease.valid_until == node.clock.now() + DURATION
        self.events.add("taken" if lease.epoch == 2 else "taken again")

    def cancel(self) -> None:
        before, revision = self.current()
        record = self.control.request_cancel(WORKFLOW)
        after, new_revision = self.current()
        assert record == after
        if before is None:
            assert after is None
            return
        assert after == attrs.evolve(before, cancel=True)
        assert (new_revision == revision) == before.cancel, "a cancel is marked once"
        if self.cancel_from is None:
            self.cancel_from = len(self.issued)

    def _issued(self, node: Node, lease: HeldLease, record: LeaseRecord) -> None:
        assert lease.workflow_id == WORKFLOW and lease.record == record
        assert node.leases.holds(WORKFLOW) and lease in node.leases.held()
        self.issued.append((node, lease))
        self._written(lease.epoch)

    def _written(self, epoch: int) -> None:
        assert epoch == self.epoch + 1, f"epoch {epoch} written after epoch {self.epoch}"
        self.epoch = epoch

    def _judge(self, node: Node, revision: int, fault: str | None) -> bool:
        """The reference taker: whether `node`, looking now, has seen `revision` for the
        lease's duration, by its own clock (a look that fails starts over)."""
        now, seen = node.clock.now(), self.seen[node.name]
        if fault == DOWN or revision == 0 or node.leases.holds(WORKFLOW):
            self.seen[node.name] = None
            return False
        if seen is None or seen[0] != revision:
            self.seen[node.name] = (revision, now)
            return False
        return now - seen[1] >= DURATION

    # -- invariants --------------------------------------------------------------------

    def check(self) -> None:
        record, _ = self.current()
        allowed = [(node.name, lease) for node, lease in self.issued if lease.allows()]
        assert len(allowed) <= 1, f"two nodes act for the workflow at once: {allowed}"
        for name, lease in allowed:
            assert record is not None and (record.owner, record.epoch) == (name, lease.epoch), (
                f"node {name} acts under epoch {lease.epoch}; the bucket holds {record}")
        if record is not None:
            assert record.epoch == self.epoch, (
                f"the bucket holds epoch {record.epoch}, not the last written, {self.epoch}")
            assert self.cancel_from is None or record.cancel, "a cancel mark was lost"
        if self.cancel_from is not None:
            assert all(lease.record.cancel for _, lease in self.issued[self.cancel_from:]), (
                "a lease taken after the cancel was marked does not carry it")
        for node in self.nodes.values():
            assert not any(lease.lost for lease in node.leases.held())

    # -- the state, to explore each once ----------------------------------------------

    def fingerprint(self) -> tuple[object, ...]:
        """All the world's state as a hashable value: the bucket (bar the records'
        wall-clock "at", for people only), each node's clock, the attributes of its
        `Leases` and `Expiry` and what it found expired, every lease issued, and this
        model's bookkeeping. Not `steps` nor `events`: history, not state."""
        index = {id(lease): n for n, (_, lease) in enumerate(self.issued)}

        def freeze(value: object) -> object:
            if value is None or type(value) in (str, int, float, bool, LeaseRecord):
                return value
            if isinstance(value, HeldLease):
                return ("lease", index[id(value)])
            if isinstance(value, dict):
                return tuple((key, freeze(item)) for key, item in value.items())
            if isinstance(value, list | tuple):
                return tuple(freeze(item) for item in value)
            if isinstance(value, MemoryKeyValue | ManualClock | LOCK):
                return type(value).__name__  # the bucket and the clocks: frozen apart
            if isinstance(value, Entry):
                return (value.key, value.revision, freeze(
                    {key: item for key, item in value.data.items() if key != "at"}))
            raise TypeError(f"the fingerprint does not know {type(value).__name__}: "
                            f"teach it, or the exploration may stop too soon")

        return (
            self.kv.state(leave_out=("at",)),
            tuple((node.clock.now(), tuple(node.clock.pending()), freeze(vars(node.leases)),
                   freeze(vars(node.expiry)), freeze(node.expired))
                  for node in self.nodes.values()),
            freeze(vars(self.control)),
            tuple((node.name, freeze(vars(lease))) for node, lease in self.issued),
            self.epoch, self.cancel_from, freeze(self.seen),
        )


@attrs.frozen
class Explored:
    states: int
    events: set[str]


def explore(alphabet: Sequence[Step], depth: int, *, names: str = "ab",
            seed: Sequence[Step] = ()) -> Explored:
    """Run every sequence of up to `depth` steps of `alphabet` after `seed`, each checked
    at every step.

    Breadth first, each state once: a sequence that reaches a state met
    before (a step that changed nothing, two that commute) goes no further,
    as all it could do next is done from there. Each sequence runs from the
    start (a world cannot be copied).
    """
    start = World(names).run(seed)
    met, events = {start.fingerprint()}, set(start.events)
    frontier: list[list[Step]] = [list(seed)]
    for _ in range(depth):
        reached = []
        for path in frontier:
            for step in alphabet:
                world = World(names).run([*path, step])
                events |= world.events
                state = world.fingerprint()
                if state not in met:
                    met.add(state)
                    reached.append([*path, step])
        frontier = reached
    return Explored(len(met), events)


# -- every order ---------------------------------------------------------------------------


def test_every_order_of_renewals_looks_and_takes() -> None:
    """The owner's renewals (answered, refused by NATS, written with the answer lost)
    against a taker's look and take, apart, so that a renewal can fall in between."""
    explored = explore(steps(
        "tick a.renew a.renew[down] a.renew[lost-reply] b.look b.take b.renew a.scan"), 8)
    assert {"taken", "lost lease found", "take refused",
            "renewal written, its answer lost"} <= explored.events


def test_every_order_after_a_takeover() -> None:
    """b has taken the lease from a (paused: its lease ran out unrenewed); a continues:
    it finds out, and may take the lease back from b in turn."""
    explored = explore(steps(
        "tick a.renew a.renew[lost-reply] a.scan b.renew b.renew[down] b.renew[lost-reply]"),
        8, seed=steps("b.look tick tick tick b.scan"))
    assert {"lost lease found", "taken again"} <= explored.events


def test_every_order_of_a_takers_faults_and_a_cancel() -> None:
    """A taker's look NATS does not answer (it starts its judgement over), its take
    written with the answer lost (no one holds epoch + 1), and a cancel, at any point."""
    explored = explore(steps(
        "tick a.renew b.scan b.scan[down] b.scan[lost-reply] b.renew cancel"), 8)
    assert {"blind", "take written, its answer lost", "cancel reported", "taken",
            "lost lease found"} <= explored.events


def test_every_order_of_two_takers() -> None:
    """b and c have both watched a's lease since it was written: one takes it."""
    explored = explore(steps("tick a.renew b.look b.take c.look c.take"), 7, names="abc",
                       seed=steps("b.look c.look tick tick"))
    assert {"taken", "take refused", "lost lease found"} <= explored.events


# -- the taker's judgement -----------------------------------------------------------------


def test_a_lease_expires_after_the_duration_of_one_revision_on_the_takers_clock() -> None:
    expiry = Expiry(DURATION)
    assert expiry.observe({WORKFLOW: 5}, 100.0) == []
    assert expiry.observe({WORKFLOW: 5}, 100.0 + DURATION - 0.001) == []
    assert expiry.observe({WORKFLOW: 5}, 100.0 + DURATION) == [WORKFLOW]
    assert expiry.observe({WORKFLOW: 7}, 104.0) == [], "a new revision starts over"
    assert expiry.observe({}, 110.0) == [], "a key gone is forgotten"
    assert expiry.observe({WORKFLOW: 7}, 110.0) == []


def test_a_failed_look_starts_the_judgement_over() -> None:
    expiry = Expiry(DURATION)
    expiry.observe({WORKFLOW: 5}, 0.0)
    expiry.blind()
    assert expiry.observe({WORKFLOW: 5}, DURATION + 1) == []
    assert expiry.observe({WORKFLOW: 5}, 2 * DURATION + 1) == [WORKFLOW]


def test_no_takeover_when_nats_comes_back_while_the_owner_renews_again() -> None:
    """NATS is away for both nodes for longer than the lease: when it comes back, the
    taker's first look is no ground to take; the owner renews, and keeps its lease."""
    world = World().run(steps("b.look" + " tick a.renew[down] b.look[down]" * 4))
    world.run(steps("b.look a.renew" + " tick b.look a.renew" * 6))
    assert [node.name for node, _ in world.issued] == ["a"]
    assert world.issued[0][1].allows()


# -- liveness ------------------------------------------------------------------------------


def test_a_dead_owner_is_taken_over_within_the_duration_and_one_period() -> None:
    """Owner and taker beat every third of the duration, as `LeaseKeeper` does, the taker
    at any phase against the owner (a quarter of a third apart), first or second at the
    same instant. The owner dies after 0 to 3 renewals: the taker holds the lease no
    sooner than the duration after the owner's last renewal, and no later than the
    duration and one period after it."""
    quarter = THIRD / 4
    for renewals, lag, taker_first in itertools.product(range(4), range(4), (False, True)):
        world = World()
        a, b = world.nodes["a"], world.nodes["b"]
        last, taken_at = 0.0, None
        for tick in range(1, 8 * 4):
            for node in world.nodes.values():
                node.clock.advance(quarter)
            beats = []
            if tick % 4 == 0 and tick // 4 <= renewals:
                beats.append(a)
            if (tick - lag) % 4 == 0:
                beats.insert(0 if taker_first else len(beats), b)
            for node in beats:
                if node is a:
                    world.renew(a, None)
                    last = tick * quarter
                else:
                    world.look(b, None)
                    world.take(b, None)
                    if taken_at is None and b.leases.holds(WORKFLOW):
                        taken_at = tick * quarter
                world.check()
        case = f"after {renewals} renewals, taker {lag}/4 of a third later (first: {taker_first})"
        assert taken_at is not None, f"{case}: never taken"
        assert last + DURATION <= taken_at <= last + DURATION + THIRD, (
            f"{case}: last renewal at {last}, taken at {taken_at}")


def test_the_new_owner_keeps_the_lease_and_the_old_one_lets_go_when_it_continues() -> None:
    world = World(names="abc").run(steps(
        "b.look c.look tick tick tick b.scan c.scan" + " tick b.renew c.scan" * 9))
    assert [node.name for node, _ in world.issued] == ["a", "b"]
    old, new = world.issued[0][1], world.issued[1][1]
    a = world.nodes["a"]
    assert not old.allows() and not old.lost, "paused, a has not found out yet"
    renewal = a.leases.renew()
    assert renewal.lost == [(old, LeaseRecord("b", 2))] and old.lost
    assert new.allows()


# -- cancel, release, acquire, take --------------------------------------------------------


def test_a_cancel_is_reported_once_to_the_owner_which_keeps_its_lease() -> None:
    world = World()
    a, lease = world.nodes["a"], world.issued[0][1]
    assert world.control.request_cancel(WORKFLOW) == LeaseRecord("a", 1, cancel=True)
    renewal = a.leases.renew()
    assert renewal.cancel == [lease] and renewal.lost == []
    assert lease.allows() and a.leases.holds(WORKFLOW) and lease.record.cancel
    assert world.current()[0] == LeaseRecord("a", 1, cancel=True), "kept for a next owner"
    assert a.leases.renew() == Renewal(), "reported once"
    _, revision = world.current()
    assert world.control.request_cancel(WORKFLOW) == LeaseRecord("a", 1, cancel=True)
    assert world.current()[1] == revision, "marked already: not written again"


def test_a_cancel_marked_while_the_owner_is_dead_reaches_the_next_owner() -> None:
    world = World().run(steps("b.look cancel tick tick tick b.scan"))
    assert [node.name for node, _ in world.issued] == ["a"], "the mark is a new revision"
    world.run(steps("tick tick tick b.scan"))
    assert world.issued[-1][1].record == LeaseRecord("b", 2, cancel=True)


def test_a_cancel_of_a_workflow_without_a_lease_finds_nothing() -> None:
    assert World().control.request_cancel("wf-none") is None


def test_release_removes_the_lease_of_its_owner() -> None:
    world = World()
    a, lease = world.nodes["a"], world.issued[0][1]
    a.leases.release(lease)
    assert world.current() == (None, 0) and not a.leases.holds(WORKFLOW)


def test_release_leaves_alone_a_lease_another_node_took() -> None:
    world = World().run(steps("b.look tick tick tick b.scan"))
    a, old = world.nodes["a"], world.issued[0][1]
    assert not old.lost, "a was paused: it has not found out"
    before = world.current()
    a.leases.release(old)
    assert world.current() == before and world.issued[1][1].allows()


def test_release_of_a_lease_found_lost_writes_nothing() -> None:
    world = World().run(steps("b.look tick tick tick b.scan a.renew"))
    old = world.issued[0][1]
    assert old.lost
    before = world.current()
    world.nodes["a"].leases.release(old)
    assert world.current() == before


def test_release_after_a_cancel_was_marked_removes_the_lease() -> None:
    """Still the owner's (same owner, same epoch), though the cancel moved its revision:
    left in the bucket, no one renews it, and another node takes the ended workflow
    over a duration later."""
    world = World()
    world.control.request_cancel(WORKFLOW)
    world.nodes["a"].leases.release(world.issued[0][1])
    assert world.current() == (None, 0), f"the lease is still there: {world.current()}"


def test_release_after_a_renewal_whose_answer_was_lost_removes_the_lease() -> None:
    world = World().run(steps("tick a.renew[lost-reply]"))
    world.nodes["a"].leases.release(world.issued[0][1])
    assert world.current() == (None, 0), f"the lease is still there: {world.current()}"


def test_a_lease_released_while_its_renewal_travels_is_not_reported_lost() -> None:
    """Its workflow ended between the renewal's read of the held leases and its write:
    not a lease another took (no `lost the lease ... letting it go` for it)."""
    world = World()
    a, lease = world.nodes["a"], world.issued[0][1]
    a.kv.in_flight = lambda: a.leases.release(lease)
    renewal = a.leases.renew()
    assert renewal == Renewal() and not lease.lost
    assert world.current() == (None, 0)


def test_many_leases_are_renewed_in_one_round_and_each_keeps_its_own_outcome() -> None:
    kv = MemoryKeyValue()
    clock = ManualClock()
    leases = Leases(kv, owner="a", duration=DURATION, clock=clock)
    held = [leases.acquire(f"wf-{n}") for n in range(50)]
    other = kv.connection()
    entry = other.get("wf-7")
    assert entry is not None
    other.update("wf-7", {**entry.data, "owner": "b", "epoch": 2}, entry.revision)  # taken
    clock.advance(THIRD)

    renewal = leases.renew()

    assert [lease.workflow_id for lease, _ in renewal.lost] == ["wf-7"]
    assert all(lease.valid_until == THIRD + DURATION for lease in held if lease is not held[7])
    assert not leases.holds("wf-7") and len(leases.held()) == 49


def test_acquire_twice_fails_and_keeps_the_lease_held() -> None:
    world = World()
    a, first = world.nodes["a"], world.issued[0][1]
    with pytest.raises(NoetlError, match="has a lease already"):
        a.leases.acquire(WORKFLOW)
    assert a.leases.held() == [first], "the lease held is no longer renewed"
    world.run(steps("tick a.renew"))
    assert first.valid_until == a.clock.now() + DURATION


def test_acquire_of_a_workflow_another_node_holds_fails_and_changes_nothing() -> None:
    world = World()
    b = world.nodes["b"]
    before = world.current()
    with pytest.raises(NoetlError, match="has a lease already"):
        b.leases.acquire(WORKFLOW)
    assert not b.leases.holds(WORKFLOW) and world.current() == before
    assert world.issued[0][1].allows()


def test_acquire_when_nats_does_not_answer_fails_and_holds_nothing() -> None:
    a = World().nodes["a"]
    a.kv.fault = DOWN
    with pytest.raises(NoetlError):
        a.leases.acquire("wf-2")
    assert not a.leases.holds("wf-2")


def test_a_take_of_what_is_not_a_lease_is_none() -> None:
    b = World().nodes["b"]
    assert b.leases.take(Entry(WORKFLOW, {"status": "running"}, 1)) is None
    assert not b.leases.holds(WORKFLOW)


# -- the record store's fence --------------------------------------------------------------

TINY = """\
apiVersion: noetl.io/v1
kind: Playbook
name: tiny
tasks:
  - name: t
    steps:
      - {name: s, plugin: echo, with: {x: 1}}
"""


def step_done(report: RunReport) -> None:
    """A change to write: the worker's event of step t.s, with its output."""
    report.on_event(Event(command_id="c-1", workflow_id=WORKFLOW, step_id="t=s", attempt=1,
                          status=EventStatus.SUCCEEDED, worker="w", output={"x": 1}))


def step_of(record: dict[str, object]) -> object:
    """The output of step t.s in `record`."""
    tasks = record["tasks"]
    assert isinstance(tasks, dict)
    return tasks["t"]["steps"]["s"]["output"]


class Records:
    """The `noetl-workflows` bucket, as the world's nodes a and b write it."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.kv = MemoryKeyValue()
        self.of = {name: WorkflowRecords(self.kv.connection()) for name in world.nodes}
        self.playbook = parse_playbook(TINY, "tiny.yaml")
        self.reports = {name: RunReport(self.playbook, WORKFLOW, node_path=f"/{name}")
                        for name in world.nodes}

    def begin(self) -> None:
        self.of["a"].begin(self.reports["a"], node="a", source=TINY,
                           fence=self.world.issued[0][1])

    def adopt(self, record: Entry) -> None:
        """b goes on with the workflow whose lease it took (as `Node.take_over` does)."""
        self.of["b"].adopt(self.reports["b"], record, node="b", fence=self.world.issued[-1][1])

    def now(self) -> tuple[dict[str, object], int]:
        return self.kv.peek(WORKFLOW)


def test_a_write_under_an_older_epoch_than_the_records_is_refused_and_marks_it_lost() -> None:
    """a's flush passed its fence, then a was paused with the write in flight; b took the
    workflow over and wrote its record meanwhile (epoch 2)."""
    world = World()
    records = Records(world)
    records.begin()
    old = world.issued[0][1]

    def takeover() -> None:
        world.run(steps("b.look tick tick tick b.scan"))
        entry = records.kv.get(WORKFLOW)
        assert entry is not None
        records.adopt(entry)

    records.of["a"].kv.in_flight = takeover
    step_done(records.reports["a"])
    records.of["a"].write(records.reports["a"])
    record, revision = records.now()
    assert (record["node"], record["epoch"], step_of(record)) == ("b", 2, None)
    assert [(m["from"], m["to"], m["epoch"]) for m in record["moves"]] == [("a", "b", 2)]
    assert old.lost and not old.allows()
    records.reports["a"].finish(None)
    records.of["a"].write(records.reports["a"])
    assert records.now()[1] == revision, "a wrote again after it found out"
    renewal = world.nodes["a"].leases.renew()
    assert [lease for lease, _ in renewal.lost] == [old], "its node lets it go"
    assert not world.nodes["a"].leases.holds(WORKFLOW)


def test_a_write_while_the_lease_has_run_out_waits_for_a_renewal() -> None:
    world = World()
    records = Records(world)
    records.begin()
    _, revision = records.now()
    lease = world.issued[0][1]
    world.run(steps("tick tick tick"))  # a paused: by its own clock, its lease ran out
    assert not lease.allows() and not lease.lost
    step_done(records.reports["a"])
    records.of["a"].write(records.reports["a"])
    assert records.now()[1] == revision, "written while the fence did not allow"
    world.run(steps("a.renew"))  # no one took it: a holds it again
    records.of["a"].write(records.reports["a"])
    record, _ = records.now()
    assert (record["epoch"], step_of(record)) == (1, {"x": 1})


def test_a_late_write_of_the_older_epoch_gives_way_to_the_new_owners_record() -> None:
    """b took the lease and read the record; a write of a, checked against its fence
    before b took the lease, lands before b's first write: b's write goes on on top."""
    world = World()
    records = Records(world)
    records.begin()
    read: list[Entry] = []

    def takeover() -> None:
        world.run(steps("b.look tick tick tick b.scan"))
        entry = records.kv.get(WORKFLOW)
        assert entry is not None
        read.append(entry)

    records.of["a"].kv.in_flight = takeover
    step_done(records.reports["a"])
    records.of["a"].write(records.reports["a"])
    assert records.now()[0]["epoch"] == 1, "a's write landed"
    records.adopt(read[0])
    record, _ = records.now()
    assert (record["node"], record["epoch"]) == ("b", 2)
    assert not world.issued[-1][1].lost


def test_a_record_write_whose_answer_was_lost_is_written_at_the_next_flush() -> None:
    world = World()
    records = Records(world)
    records.begin()
    step_done(records.reports["a"])
    records.of["a"].kv.fault = LOST_REPLY
    records.of["a"].write(records.reports["a"])
    records.of["a"].kv.fault = None
    records.reports["a"].finish(None)
    records.of["a"].write(records.reports["a"])
    record, _ = records.now()
    assert (record["status"], step_of(record), world.issued[0][1].lost) == (
        "failed", {"x": 1}, False)


def test_the_end_of_a_workflow_is_written_once_nats_takes_writes_again() -> None:
    """A workflow that ends as NATS comes back: its final record is written at a later
    try, and only then may its lease be released."""
    world = World()
    records = Records(world)
    records.begin()
    records.reports["a"].finish(None)
    store = records.of["a"]
    store.kv.fault = DOWN
    tries: list[bool] = []
    write = store.write

    def write_while_nats_comes_back(report: RunReport) -> bool:
        if len(tries) == 2:
            store.kv.fault = None  # back at the third try
        tries.append(write(report))
        return tries[-1]

    store.write = write_while_nats_comes_back  # type: ignore[method-assign]
    assert store.finish(records.reports["a"], world.issued[0][1], within=10.0, retry=0.01)
    assert tries == [False, False, True]
    assert records.now()[0]["status"] == "failed"


def test_an_end_that_cannot_be_written_leaves_the_lease_to_the_next_owner() -> None:
    world = World()
    records = Records(world)
    records.begin()
    records.reports["a"].finish(None)
    lease = world.issued[0][1]
    world.run(steps("tick tick tick"))  # a's lease ran out, and NATS does not come back
    assert not records.of["a"].finish(records.reports["a"], lease, within=0.05, retry=0.01)
    assert records.now()[0]["status"] == "running"


def test_the_end_of_a_workflow_another_node_took_is_not_the_old_owners_to_write() -> None:
    world = World()
    records = Records(world)
    records.begin()
    lease = world.issued[0][1]
    world.run(steps("b.look tick tick tick b.scan"))
    records.adopt(records.kv.get(WORKFLOW))  # type: ignore[arg-type]
    world.run(steps("a.renew"))  # a finds out
    assert lease.lost
    records.reports["a"].finish(None)
    assert records.of["a"].finish(records.reports["a"], lease, within=10.0, retry=0.01)
    assert records.now()[0]["node"] == "b"


def test_a_node_that_stops_tries_the_end_once_and_leaves_the_lease_to_lapse() -> None:
    """NATS is away as the node stops: each of its workflows' endings tries its record
    once, waiting neither for a renewal nor for NATS (a stop with many workflows would
    wait three leases for each in turn); the next owner writes the end."""
    world = World()
    records = Records(world)
    records.begin()
    records.reports["a"].finish(None)
    lease = world.issued[0][1]
    store = records.of["a"]
    store.kv.fault = DOWN
    stopping = threading.Event()
    stopping.set()
    tries: list[bool] = []
    write = store.write
    store.write = lambda report: tries.append(write(report)) or tries[-1]  # type: ignore
    assert not store.finish(records.reports["a"], lease, within=3600.0, retry=0.01,
                            stop=stopping)
    assert tries == [False]
    world.run(steps("tick tick tick"))  # its lease ran out too: not even tried
    assert not store.finish(records.reports["a"], lease, within=3600.0, stop=stopping)
    assert tries == [False] and records.now()[0]["status"] == "running"


def test_a_resume_whose_lease_lapsed_while_it_waited_its_turn_runs_nothing() -> None:
    """A lease taken, then not renewed in time while its resume waited for a thread (or
    lost to another taker): the resume says no move and starts no run, and lets go of it."""
    from noetl_actors.services._takeover import prepare_takeover

    world = World()
    records = Records(world)
    records.begin()
    world.run(steps("b.look tick tick tick b.scan"))
    taken = world.issued[-1][1]
    entry = world.kv.get(WORKFLOW)
    world.run(steps("tick tick tick"))  # b's lease ran out before its resume began
    moves: list[object] = []
    node = attrs.make_class("Node", ["records", "leases", "bridge", "publish_lifecycle"])(
        records.of["b"], world.nodes["b"].leases, object(), lambda *a: moves.append(a))
    assert prepare_takeover(node, taken, entry) is None
    assert moves == [] and not world.nodes["b"].leases.holds(WORKFLOW)
    assert records.now()[0]["node"] == "a", "its record is untouched"
