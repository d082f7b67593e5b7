"""`LeaseKeeper`: a served node renews its leases and takes over those of dead owners.

Every third of the lease's duration it renews the leases it holds (a lost
one: the node lets that workflow go; one marked cancelled: it cancels it),
then reads every lease of the bucket: one that has kept its revision for the
lease's duration is taken (epoch + 1) and its workflow resumed here from its
record and its history (`Takeover`). The leases of a round are taken first,
one round trip each; the workflows are then resumed `RESUMES_AT_ONCE` at a
time on threads of their own (each reads its record, history and claims:
0.1-0.3 s), so a node that died with many workflows loses none of them for
longer than the others. A read that fails, or that spans an
outage of NATS (or follows one), starts that judgement over: owners could
not renew while NATS was away. At its first round it takes at once the
leases its own name holds: a former incarnation of this node (`noetl node
start` again with the same name, after the first was killed: a name a live
node has is refused at start).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import attrs

from noetl_actors.bridge import Entry, KeyValue, LinkState
from noetl_actors.errors import NoetlError
from noetl_actors.playbook import parse_playbook
from noetl_actors.runtime import (
    MOVED,
    STEP_ID_SEPARATOR,
    Event,
    EventRouter,
    ResumeState,
    RunReport,
    log_fields,
    read_history,
)
from noetl_actors.services._claims import CLAIMS_BUCKET, CLAIMS_TTL
from noetl_actors.services._lease import Expiry, HeldLease, Leases
from noetl_actors.services._records import RUNNING
from noetl_actors.supervision import Clock, SupervisedActor, TimerHandle, tell_if_alive

if TYPE_CHECKING:
    from noetl_actors.playbook import Playbook
    from noetl_actors.services._node import Node

__all__ = ["LeaseKeeper", "Takeover", "prepare_takeover"]

logger = logging.getLogger("noetl_actors.services")

RESUMES_AT_ONCE = 8
"""Workflows a node resumes at a time after it took their leases."""


@attrs.frozen
class Takeover:
    """A workflow this node took the lease of: what it needs to go on with it."""

    lease: HeldLease
    record: Entry
    """Its record as the former owner left it."""
    playbook: Playbook
    history: Callable[[], list[dict[str, Any]]]
    claims: KeyValue | None
    """The claims bucket: the attempts workers took (one may have said nothing yet)."""

    @property
    def workflow_id(self) -> str:
        return self.lease.workflow_id

    def read(self, report: RunReport, router: EventRouter) -> ResumeState:
        """Read the history (the router subscribed first: nothing falls in between), and
        bring `report` up to date with it."""
        history = self.history()
        state = read_history(self.playbook, history, claimed=self._claimed())
        report.carry_over(self.record.data, replayed=list(state.done))
        for entry in history:
            if str(entry.get("subject", "")).startswith("event."):
                try:
                    report.on_event(Event.from_data(
                        {k: v for k, v in entry.items() if k != "subject"}))
                except NoetlError:
                    continue
        for end in state.ends.values():
            router.hold(end)
        return state

    def _claimed(self) -> list[tuple[tuple[str, str], int]]:
        if self.claims is None:
            return []
        claimed = []
        for key in self.claims.keys(self.workflow_id):
            parts = key.split(".")  # <workflow>.<task>=<step>.<attempt>
            if len(parts) == 3 and parts[2].isdigit():
                task, _, step = parts[1].partition(STEP_ID_SEPARATOR)
                claimed.append(((task, step), int(parts[2])))
        return claimed


def prepare_takeover(node: Node, lease: HeldLease, lease_entry: Entry) -> Takeover | None:
    """What `node`, which has just taken `lease`, needs to go on with its workflow; and
    the move said (history, log). None, the lease let go, if there is nothing to resume
    (the record is gone, ended or holds no playbook: a running one is marked orphaned),
    or if the lease was lost or lapsed while the resume waited its turn."""
    assert node.records is not None and node.leases is not None and node.bridge is not None
    workflow_id = lease.workflow_id
    if not lease.allows():
        node.leases.forget(workflow_id)  # not renewed: it lapses, and is taken again
        logger.warning("did not resume workflow %s: its lease (epoch %d) lapsed first",
                       workflow_id, lease.epoch, extra=lease.log_fields)
        return None
    previous = lease_entry.data.get("owner")
    record = node.records.get(workflow_id)
    source = record.data.get("source") if record is not None else None
    if record is None or record.data.get("status") != RUNNING or not isinstance(source, str):
        why = ("its record is gone" if record is None else
               f"it is {record.data.get('status')}" if record.data.get("status") != RUNNING
               else "its record holds no playbook")
        if record is not None and record.data.get("status") == RUNNING:
            node.records.orphan(record, f"node {previous} died; it cannot be resumed: {why}")
        logger.warning("did not resume workflow %s of node %s: %s", workflow_id, previous, why,
                       extra=lease.log_fields)
        node.leases.release(lease)
        return None
    playbook = parse_playbook(source, str(record.data.get("file") or workflow_id),
                              catalog=node.catalog)
    detail = (f"node {node.name} was started again and took it back from its former "
              f"self (epoch {lease.epoch})" if previous == node.name else
              f"node {previous} stopped renewing its lease; node {node.name} took it "
              f"over (epoch {lease.epoch})")
    node.publish_lifecycle(workflow_id, {
        "kind": MOVED, "path": f"/{node.name}/workflows/{workflow_id}", "at": time.time(),
        "reason": None, "detail": detail, "from": previous, "to": node.name,
        "epoch": lease.epoch,
    })
    logger.warning("took over workflow %s from node %s (epoch %d)", workflow_id, previous,
                   lease.epoch, extra=lease.log_fields)
    node.metrics.took_over()
    return Takeover(lease=lease, record=record, playbook=playbook,
                    claims=node.bridge.ensure_bucket(CLAIMS_BUCKET, ttl=CLAIMS_TTL),
                    history=functools.partial(node.history, workflow_id))


@attrs.frozen
class _Beat:
    pass


class LeaseKeeper(SupervisedActor):
    """Of a served node (a child of its `services`); blocks on NATS on its own thread."""

    def __init__(self, node: Any, *, leases: Leases, clock: Clock) -> None:
        super().__init__()
        self.node = node
        self.leases = leases
        self._clock = clock
        self._expiry = Expiry(leases.duration)
        self._timer: TimerHandle | None = None
        self._first = True
        self._resumes = ThreadPoolExecutor(RESUMES_AT_ONCE,
                                           thread_name_prefix=f"noetl/{leases.owner}/resume")
        self._queued: list[tuple[Future[None], HeldLease]] = []
        self._stopping = threading.Event()
        self._link: Callable[[], LinkState] = node.bridge.link
        self._link_seen = self._link().changes

    def on_start(self) -> None:
        self.actor_ref.tell(_Beat())  # not in on_start: the node's start need not wait

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, _Beat):
            self._beat()
            return None
        return super().on_receive(message)

    def on_stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        # Resumes not begun are dropped, and their leases forgotten: no longer renewed
        # (by a keeper started again on the same `Leases`, say), they expire and another
        # node takes them. A resume under way is not waited for: it may need the node's
        # supervisors, which are stopping (it finds out, and forgets its lease too).
        self._stopping.set()
        self._resumes.shutdown(wait=False, cancel_futures=True)
        for future, lease in self._queued:
            if future.cancelled():
                self.leases.forget(lease.workflow_id)

    def on_failure(self, *_: Any) -> None:
        self.on_stop()

    def _beat(self) -> None:
        began = self._clock.now()
        try:
            self._renew()
            self._look_for_expired()
        finally:
            # Every third of a lease from the start of the last round, not from its end:
            # a long round (many leases taken) delays the next look no further.
            period = self.leases.duration / 3
            ref = self.actor_ref
            self._timer = self._clock.call_later(max(began + period - self._clock.now(), 0.0),
                                                 lambda: tell_if_alive(ref, _Beat()))

    def _renew(self) -> None:
        renewal = self.leases.renew()
        for lease, now in renewal.lost:
            self.node.let_go(lease, now)
        for lease in renewal.cancel:
            _in_thread(f"noetl/cancel/{lease.workflow_id}", self.node.cancel_workflow,
                       lease.workflow_id)

    def _look_for_expired(self) -> None:
        before = self._link()
        began = self._clock.now()
        try:
            entries = self.leases.kv.entries()
        except NoetlError as error:
            logger.debug("%s: could not read the leases: %s", self.path, error)
            self._expiry.blind()
            return
        after = self._link()
        if before.changes != self._link_seen or after.changes != before.changes:
            # NATS went away since the last read, or during this one (which waited for
            # it to come back): its owners could not renew meanwhile. Start over.
            self._expiry.blind()
        self._link_seen = after.changes
        others = {key: entry for key, entry in entries.items() if not self.leases.holds(key)}
        if self._first:
            self._first = False
            for entry in others.values():
                if entry.data.get("owner") == self.leases.owner:
                    self._take(entry)  # a former self's: it is dead (the name was free)
        revisions = {key: entry.revision for key, entry in others.items()}
        for key in self._expiry.observe(revisions, self._clock.now(), began=began):
            self._take(others[key])

    def _take(self, entry: Entry) -> None:
        try:
            lease = self.leases.take(entry)
        except NoetlError as error:
            logger.warning("%s: could not take the lease of workflow %s: %s", self.path,
                           entry.key, error, extra=log_fields(entry.key))
            return
        if lease is not None:
            self._queued = [(f, held) for f, held in self._queued if not f.done()]
            self._queued.append((self._resumes.submit(self._resume, lease, entry), lease))

    def _resume(self, lease: HeldLease, entry: Entry) -> None:
        """On a resume thread: go on with the workflow whose lease was taken."""
        if self._stopping.is_set():
            self.leases.forget(lease.workflow_id)
            return
        try:
            self.node.take_over(lease, entry)
        except Exception as error:
            # Not renewed from now on: it expires, and a node takes it again.
            self.leases.forget(lease.workflow_id)
            level = logging.WARNING if isinstance(error, NoetlError) else logging.ERROR
            logger.log(level, "%s: could not take over workflow %s: %s", self.path,
                       entry.key, error, exc_info=not isinstance(error, NoetlError),
                       extra=lease.log_fields)


def _in_thread(name: str, call: Callable[..., object], *args: Any) -> None:
    threading.Thread(target=call, args=args, name=name, daemon=True).start()
