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

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import attrs

from noetl_actors.bridge import Entry, KeyValue, LinkState
from noetl_actors.errors import NoetlError
from noetl_actors.runtime import (
    STEP_ID_SEPARATOR,
    Event,
    EventRouter,
    ResumeState,
    RunReport,
    read_history,
)
from noetl_actors.services._lease import Expiry, HeldLease, Leases
from noetl_actors.supervision import Clock, SupervisedActor, TimerHandle, tell_if_alive

if TYPE_CHECKING:
    from noetl_actors.playbook import Playbook

__all__ = ["LeaseKeeper", "Takeover"]

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
        # Resumes not begun are dropped: their leases, no longer renewed, expire and
        # another node takes them.
        self._resumes.shutdown(wait=True, cancel_futures=True)

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
        for key in self._expiry.observe(revisions, self._clock.now()):
            self._take(others[key])

    def _take(self, entry: Entry) -> None:
        try:
            lease = self.leases.take(entry)
        except NoetlError as error:
            logger.warning("%s: could not take the lease of workflow %s: %s", self.path,
                           entry.key, error)
            return
        if lease is not None:
            self._resumes.submit(self._resume, lease, entry)

    def _resume(self, lease: HeldLease, entry: Entry) -> None:
        """On a resume thread: go on with the workflow whose lease was taken."""
        try:
            self.node.take_over(lease, entry)
        except Exception as error:
            # Not renewed from now on: it expires, and a node takes it again.
            self.leases.forget(lease.workflow_id)
            level = logging.WARNING if isinstance(error, NoetlError) else logging.ERROR
            logger.log(level, "%s: could not take over workflow %s: %s", self.path,
                       entry.key, error, exc_info=not isinstance(error, NoetlError))


def _in_thread(name: str, call: Callable[..., object], *args: Any) -> None:
    threading.Thread(target=call, args=args, name=name, daemon=True).start()
