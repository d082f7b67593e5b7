"""`Presence`: a node says it is alive every heartbeat, and notices who stopped.

Every heartbeat the node rewrites its record in the ``noetl-nodes`` bucket
(who, where, which workflows), writes its running workflows' records, and
reads the others' records. A node whose record has not changed for
`LOST_AFTER_BEATS` of its heartbeats (plus a second) is lost: a warning in
the log, and its record is removed. An outage of NATS starts that judgement
over (no node could beat while NATS was away). Judging by the record's
revision, not by its clock, keeps skewed clocks out of it. Its workflows are
not judged here: their leases expire, and live nodes take them over
(`LeaseKeeper`).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs

from noetl_actors._process import started
from noetl_actors.bridge import KeyValue, LinkState
from noetl_actors.errors import NoetlError
from noetl_actors.services._control import node_info
from noetl_actors.supervision import Clock, SupervisedActor, TimerHandle, tell_if_alive

if TYPE_CHECKING:
    from noetl_actors.services._node import Node

__all__ = ["LOST_AFTER_BEATS", "Presence"]

logger = logging.getLogger("noetl_actors.services")

LOST_AFTER_BEATS = 3


@attrs.frozen
class _Beat:
    pass


@attrs.define
class _Seen:
    revision: int
    since: float
    """Monotonic time this node last saw the revision change."""


class Presence(SupervisedActor):
    def __init__(self, node: Node, *, nodes: KeyValue, clock: Clock) -> None:
        super().__init__()
        self.node = node
        self.nodes = nodes
        self._clock = clock
        self._timer: TimerHandle | None = None
        self._seen: dict[str, _Seen] = {}
        self._started_at = time.time()
        self._process = started(os.getpid())
        """When this process started: a restart under this name knows it from a stranger."""
        assert node.bridge is not None, "the node is not started"
        self._link: Callable[[], LinkState] = node.bridge.link
        self._link_seen = self._link().changes

    def on_start(self) -> None:
        self._beat()  # reachable before start() returns

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, _Beat):
            self._beat()
            return None
        return super().on_receive(message)

    def on_stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        try:
            self.nodes.delete(self.node.name)  # a clean stop: no one need judge it lost
        except NoetlError as error:
            logger.warning("%s: could not remove the node's record: %s", self.path, error)

    def on_failure(self, *_: Any) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def _beat(self) -> None:
        try:
            self.nodes.put(self.node.name, {**node_info(self.node), "at": time.time(),
                                            "started_at": self._started_at,
                                            "process": self._process})
            records = self.node.records
            if records is not None:
                for run in self.node.running().values():
                    records.write(run.report)
            self._look_for_lost_nodes()
        except NoetlError as error:
            logger.warning("%s: %s", self.path, error)
        ref = self.actor_ref
        self._timer = self._clock.call_later(self.node.heartbeat,
                                             lambda: tell_if_alive(ref, _Beat()))

    def _look_for_lost_nodes(self) -> None:
        before = self._link()
        entries = self.nodes.entries()
        after = self._link()
        if before.changes != self._link_seen or after.changes != before.changes:
            self._seen.clear()  # NATS went away: no node could beat meanwhile
        self._link_seen = after.changes
        now = time.monotonic()
        for name in set(self._seen) - set(entries):
            del self._seen[name]
        for name, entry in entries.items():
            if name == self.node.name:
                continue
            seen = self._seen.get(name)
            if seen is None or seen.revision != entry.revision:
                self._seen[name] = _Seen(entry.revision, now)
                continue
            heartbeat = entry.data.get("heartbeat")
            beat = heartbeat if isinstance(heartbeat, (int, float)) else 1.0
            if now - seen.since > LOST_AFTER_BEATS * beat + 1.0:
                self._lost(name, entry.data)

    def _lost(self, name: str, record: dict[str, Any]) -> None:
        last = time.strftime("%H:%M:%S", time.localtime(record.get("at") or time.time()))
        logger.warning("node %s stopped answering (last heartbeat %s); its workflows move "
                       "to live nodes as their leases expire", name, last)
        self.nodes.delete(name)
        del self._seen[name]
