"""Leases: one owner at a time per workflow, and an epoch that fences the ones before.

The lease of workflow W is the key W of the ``noetl-leases`` bucket:
``{"owner": <node>, "epoch": N, "cancel": bool}``. Its owner rewrites it every
third of the lease's `duration` (a compare-and-set on the revision it last
wrote), and takes itself for the owner only until `duration` seconds, on its
own monotonic clock, after it *sent* its last successful renewal. Another
node takes the lease when it has seen the same revision for `duration`
seconds on its own clock: it writes ``epoch + 1`` and itself, again with a
compare-and-set, so one taker wins. A revision is first seen after it was
written, which is after its renewal was sent: the old owner stops before
anyone can take its lease (docs/durability.md gives the whole argument).
What it sent before it stopped and arrives late carries its old epoch, and
is refused by the record store and by workers.

`Expiry` is the taker's side and `HeldLease` the owner's, both pure on an
injected clock; `Leases` does the bucket calls (each blocks on NATS: never
on the bridge's loop).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from noetl_actors.bridge import Entry, KeyValue
from noetl_actors.errors import NoetlError
from noetl_actors.runtime import log_fields
from noetl_actors.supervision import Clock

__all__ = ["LEASES_BUCKET", "CancellingLease", "Expiry", "HeldLease", "LeaseRecord", "Leases",
           "Renewal"]

logger = logging.getLogger("noetl_actors.services")

LEASES_BUCKET = "noetl-leases"


@attrs.frozen
class LeaseRecord:
    """What the bucket holds for one workflow."""

    owner: str
    epoch: int
    cancel: bool = False
    """Someone asked to cancel the workflow (kept for whoever owns it next)."""

    def to_data(self) -> dict[str, Any]:
        return {"owner": self.owner, "epoch": self.epoch, "cancel": self.cancel,
                "at": time.time()}

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> LeaseRecord | None:
        """The record in `data`, or None if it is not a lease's."""
        owner, epoch = data.get("owner"), data.get("epoch")
        if not isinstance(owner, str) or not isinstance(epoch, int) or isinstance(epoch, bool):
            return None
        return cls(owner, epoch, data.get("cancel") is True)


HELD_BACK_LIMIT = 10_000
"""Writes a lapsed lease holds back at most (`HeldLease.when_allowed`); past it, dropped."""


class HeldLease:
    """This node's lease on one workflow: the workflow's `Fence` (runtime)."""

    def __init__(self, workflow_id: str, record: LeaseRecord, revision: int, *,
                 valid_until: float, clock: Clock) -> None:
        self.workflow_id = workflow_id
        self.record = record
        self.revision = revision
        self.valid_until = valid_until
        self.lost = False
        """Another owns it now (or it is gone): let the workflow go, write nothing."""
        self._clock = clock
        self._lock = threading.Lock()
        self._held_back: list[Callable[[], None]] = []

    def renewed(self, revision: int, valid_until: float) -> None:
        """Its renewal was written: what `when_allowed` held back is done first, in
        order, and only then does the lease allow again, so that nothing done after
        the renewal (a step's command, say) overtakes it."""
        with self._lock:
            self.revision = revision
            self._do_held_back()
            self.valid_until = valid_until

    def when_allowed(self, write: Callable[[], None]) -> None:
        """Do `write` (a publish, which never waits) now if this node may act for the
        workflow; else when its lease is renewed, after the writes held back before it;
        never if the lease is lost.

        A workflow goes on acting in the moment between NATS coming back and its
        lease's renewal (a task that resets, say); what it writes then must not be
        lost, nor written by an owner that may have lost the workflow meanwhile.
        """
        with self._lock:
            if self.allows():
                self._do_held_back()
                write()
            elif self.lost:
                self._held_back.clear()
            elif len(self._held_back) < HELD_BACK_LIMIT:
                self._held_back.append(write)
            else:
                logger.warning("workflow %s: %d writes wait for its lease; dropped one",
                               self.workflow_id, len(self._held_back), extra=self.log_fields)

    def _do_held_back(self) -> None:
        held_back, self._held_back = self._held_back, []
        if self.lost:
            return
        for write in held_back:
            try:
                write()
            except NoetlError as error:
                logger.warning("workflow %s: a write held back for its lease failed: %s",
                               self.workflow_id, error, extra=self.log_fields)

    @property
    def epoch(self) -> int:
        return self.record.epoch

    @property
    def log_fields(self) -> dict[str, Any]:
        """The `extra=` of a log line about its workflow: its id and this epoch."""
        return log_fields(self.workflow_id, epoch=self.epoch)

    def allows(self) -> bool:
        """Whether this node may act for the workflow now (by its own clock)."""
        return not self.lost and self._clock.now() < self.valid_until

    def wait_allowed(self, timeout: float, *, until: threading.Event | None = None,
                     poll: float = 0.05) -> bool:
        """Block until this node may act for the workflow (its lease renewed again: after
        an outage of NATS, say), until it is lost or `until` is set, or for `timeout`
        seconds; whether it may. Polls: it is for the rare end of a workflow that finds
        its lease lapsed."""
        deadline = time.monotonic() + timeout
        while not self.allows():
            if self.lost or time.monotonic() >= deadline or (until is not None
                                                               and until.is_set()):
                return False
            time.sleep(poll)
        return True

    def __repr__(self) -> str:
        return (f"HeldLease({self.workflow_id}, epoch={self.epoch}, rev={self.revision}, "
                f"lost={self.lost})")


class CancellingLease:
    """The fence the steps of a workflow taken over with a cancel pending see: they send
    nothing (no attempt begins), while its record and events go on under `lease`.

    The workflow is started only to be cancelled (its record brought up to date,
    the attempts it adopts cancelled on their workers); a step that its history
    lets start meanwhile must not send its command first.
    """

    def __init__(self, lease: HeldLease) -> None:
        self.lease = lease

    @property
    def epoch(self) -> int:
        return self.lease.epoch

    @property
    def lost(self) -> bool:
        return self.lease.lost

    def allows(self) -> bool:
        return False


class Expiry:
    """Which leases of others have kept one revision for `duration` seconds, seen from here.

    Judged by revisions and this node's own clock only: clocks of other
    machines (skewed, or a paused process's) play no part.
    """

    def __init__(self, duration: float) -> None:
        self.duration = duration
        self._seen: dict[str, tuple[int, float]] = {}

    def observe(self, revisions: Mapping[str, int], now: float, *,
                began: float | None = None) -> list[str]:
        """Note the revisions of a read that ended at `now` (and was sent at `began`);
        the keys whose revision has not changed for `duration` seconds.

        A revision first seen is stamped with the read's end (after it was written,
        as the argument needs); expiry is judged at the read's start, so a read that
        NATS held (a stall, a large bucket, a busy loop) adds nothing to the wait.
        """
        judged = now if began is None else began
        for key in set(self._seen) - set(revisions):
            del self._seen[key]
        expired = []
        for key, revision in revisions.items():
            seen = self._seen.get(key)
            if seen is None or seen[0] != revision:
                self._seen[key] = (revision, now)
            elif judged - seen[1] >= self.duration:
                expired.append(key)
        return sorted(expired)

    def blind(self) -> None:
        """The bucket could not be read: what was seen cannot be taken as unchanged since
        (NATS was away, and the owners could not renew): start over."""
        self._seen.clear()


@attrs.frozen
class Renewal:
    """What renewing the held leases found."""

    lost: list[tuple[HeldLease, LeaseRecord | None]] = attrs.field(factory=list)
    """Leases another owns now (its record), or that are gone (None)."""
    cancel: list[HeldLease] = attrs.field(factory=list)
    """Leases whose workflow someone asked to cancel."""


class Leases:
    """The leases this node (`owner`) holds, and the bucket calls that change them."""

    def __init__(self, kv: KeyValue, *, owner: str, duration: float, clock: Clock) -> None:
        self.kv = kv
        self.owner = owner
        self.duration = duration
        self._clock = clock
        self._lock = threading.Lock()
        self._held: dict[str, HeldLease | None] = {}
        """None: being acquired (the key may exist already; it is not another's to take)."""

    def holds(self, workflow_id: str) -> bool:
        with self._lock:
            return workflow_id in self._held

    def lease_of(self, workflow_id: str) -> HeldLease | None:
        """This node's lease on `workflow_id`, if it holds one."""
        with self._lock:
            return self._held.get(workflow_id)

    def held(self) -> list[HeldLease]:
        with self._lock:
            return [lease for lease in self._held.values() if lease is not None]

    def acquire(self, workflow_id: str) -> HeldLease:
        """The first lease (epoch 1) of a new workflow.

        Raises:
            NoetlError: the workflow has a lease already, or NATS did not answer.
        """
        with self._lock:
            if workflow_id in self._held:  # held, or being taken: not to be forgotten here
                raise NoetlError(f"workflow {workflow_id} has a lease already")
            self._held[workflow_id] = None  # before the key exists: see `holds`
        record = LeaseRecord(self.owner, 1)
        sent = self._clock.now()
        try:
            revision = self.kv.create(workflow_id, record.to_data())
            if revision is None:
                raise NoetlError(f"workflow {workflow_id} has a lease already")
        except BaseException:
            self.forget(workflow_id)
            raise
        lease = HeldLease(workflow_id, record, revision, valid_until=sent + self.duration,
                          clock=self._clock)
        with self._lock:
            self._held[workflow_id] = lease
        return lease

    def take(self, entry: Entry) -> HeldLease | None:
        """Take the lease read as `entry` (expired, or a former self's): epoch + 1.

        None if it is not a lease, or someone wrote it since it was read (another
        taker won, or its owner renewed it after all).
        """
        old = LeaseRecord.from_data(entry.data)
        if old is None:
            return None
        record = LeaseRecord(self.owner, old.epoch + 1, old.cancel)
        with self._lock:
            if entry.key in self._held:
                return None
            self._held[entry.key] = None
        sent = self._clock.now()
        try:
            revision = self.kv.update(entry.key, record.to_data(), entry.revision)
        except BaseException:
            self.forget(entry.key)
            raise
        if revision is None:
            self.forget(entry.key)
            return None
        lease = HeldLease(entry.key, record, revision, valid_until=sent + self.duration,
                          clock=self._clock)
        with self._lock:
            self._held[entry.key] = lease
        return lease

    def renew(self) -> Renewal:
        """Rewrite every held lease; say which were lost and which asked for a cancel.

        A lease NATS cannot renew now stays held: it is valid until its time is up,
        and renewed at the next call if no one took it meanwhile.
        """
        renewal = Renewal()
        held = self.held()
        renewal.lost.extend((lease, None) for lease in held if lease.lost)
        live = [lease for lease in held if not lease.lost]
        # All at once: one after another, a busy node's hundreds of leases took longer
        # to renew than they last, and its own workflows stopped acting meanwhile.
        sent = self._clock.now()
        try:
            written = self.kv.update_many([(lease.workflow_id, lease.record.to_data(),
                                            lease.revision) for lease in live])
        except NoetlError as error:
            logger.debug("could not renew the leases: %s", error)
            written = [error] * len(live)
        for lease, revision in zip(live, written, strict=True):
            if isinstance(revision, int):
                lease.renewed(revision, sent + self.duration)
                continue
            if not self.holds(lease.workflow_id):
                continue  # released meanwhile (its workflow ended): not lost
            try:
                if revision is None:  # it moved: find out why, one by one
                    self._renew(lease, renewal)
                else:
                    logger.debug("could not renew the lease of %s: %s", lease.workflow_id,
                                 revision)
            except NoetlError as error:
                logger.debug("could not renew the lease of %s: %s", lease.workflow_id, error)
        for lease, _ in renewal.lost:
            lease.lost = True
            self.forget(lease.workflow_id)
        return renewal

    def _renew(self, lease: HeldLease, renewal: Renewal) -> None:
        for _ in range(3):  # a cancel request can slip in between: read, then again
            sent = self._clock.now()
            revision = self.kv.update(lease.workflow_id, lease.record.to_data(), lease.revision)
            if revision is not None:
                lease.renewed(revision, sent + self.duration)
                return
            entry = self.kv.get(lease.workflow_id)
            now = LeaseRecord.from_data(entry.data) if entry is not None else None
            if entry is None and not self.holds(lease.workflow_id):
                return  # released meanwhile (its workflow ended): not lost
            if entry is None or now is None or (now.owner, now.epoch) != (self.owner,
                                                                          lease.epoch):
                renewal.lost.append((lease, now))
                return
            lease.revision = entry.revision
            if now.cancel and not lease.record.cancel:
                lease.record = now
                renewal.cancel.append(lease)

    def release(self, lease: HeldLease) -> None:
        """The workflow ended: remove its lease, if it is still this node's."""
        self.forget(lease.workflow_id)
        if lease.lost:
            return
        revision = lease.revision
        try:
            for _ in range(3):  # a cancel mark, or a renewal whose answer was lost, moved it
                if self.kv.delete(lease.workflow_id, revision=revision):
                    return
                entry = self.kv.get(lease.workflow_id)
                now = LeaseRecord.from_data(entry.data) if entry is not None else None
                if entry is None or now is None or (now.owner, now.epoch) != (self.owner,
                                                                              lease.epoch):
                    return  # gone, or another's now
                revision = entry.revision
        except NoetlError as error:
            logger.warning("could not remove the lease of %s: %s", lease.workflow_id, error,
                           extra=lease.log_fields)
            return
        logger.warning("could not remove the lease of %s: it kept changing", lease.workflow_id,
                       extra=lease.log_fields)

    def forget(self, workflow_id: str) -> None:
        with self._lock:
            self._held.pop(workflow_id, None)

    def request_cancel(self, workflow_id: str) -> LeaseRecord | None:
        """Mark the workflow's lease cancelled, for its owner now or next; its record then
        (None: the workflow has no lease, it is not running)."""
        for _ in range(5):
            entry = self.kv.get(workflow_id)
            record = LeaseRecord.from_data(entry.data) if entry is not None else None
            if entry is None or record is None:
                return None
            if record.cancel:
                return record
            marked = attrs.evolve(record, cancel=True)
            if self.kv.update(workflow_id, marked.to_data(), entry.revision) is not None:
                return marked
        raise NoetlError(f"the lease of {workflow_id} changed five times while it was marked "
                         f"cancelled; try again")
