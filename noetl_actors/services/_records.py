"""`WorkflowRecords`: every workflow of a cluster, in the ``noetl-workflows`` bucket.

A record is what `noetl status` prints and what a node that takes over a
dead node's workflows reads: the owner node and its lease epoch, the
workflow's moves from owner to owner, the status, the playbook's text and
the `noetl run --json` report. The owner writes it when the workflow starts
and ends, and every heartbeat while it runs.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from noetl_actors.bridge import Entry, KeyValue
from noetl_actors.errors import NoetlError
from noetl_actors.runtime import UNFENCED, Fence, RunReport, log_fields
from noetl_actors.services._lease import HeldLease

__all__ = ["RUNNING", "WorkflowRecords"]

logger = logging.getLogger("noetl_actors.services")

RUNNING = "running"
ORPHANED = "orphaned"
"""Its node died while it ran, and it cannot be resumed (its record has no playbook)."""
HEADER_KEYS = ("workflow_id", "node", "epoch", "submitted_at", "source", "moves")


class WorkflowRecords:
    """Thread-safe. A write NATS refuses is logged, and tried again at the next
    flush while the workflow runs.

    Each write is a compare-and-set on the revision this node last wrote, and
    carries the owner's lease epoch: a record another owner has written since
    (a higher epoch: the workflow was taken over) is never overwritten; the
    lease is marked lost instead, and the node lets the workflow go.
    """

    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv
        self._lock = threading.Lock()
        self._written: dict[str, dict[str, Any]] = {}
        self._headers: dict[str, dict[str, Any]] = {}
        self._revisions: dict[str, int | None] = {}
        self._fences: dict[str, Fence] = {}

    def begin(self, report: RunReport, *, node: str, source: str | None,
              fence: Fence = UNFENCED) -> None:
        self._hold(report.workflow_id, {
            "workflow_id": report.workflow_id,
            "node": node,
            "epoch": fence.epoch,
            "submitted_at": time.time(),
            "source": source,
        }, None, fence)
        self.write(report)

    def adopt(self, report: RunReport, record: Entry, *, node: str, fence: Fence) -> None:
        """Go on writing the record of a workflow taken over, read as `record`."""
        header = {key: record.data.get(key) for key in HEADER_KEYS}
        moves = record.data.get("moves")
        moved = {"from": record.data.get("node"), "to": node, "epoch": fence.epoch,
                 "at": time.time()}
        self._hold(report.workflow_id, {
            **header, "node": node, "epoch": fence.epoch,
            "moves": [*(moves if isinstance(moves, list) else []), moved],
        }, record.revision, fence)
        self.write(report)

    def _hold(self, workflow_id: str, header: dict[str, Any], revision: int | None,
              fence: Fence) -> None:
        with self._lock:
            self._headers[workflow_id] = header
            self._revisions[workflow_id] = revision
            self._fences[workflow_id] = fence

    def write(self, report: RunReport) -> bool:
        """Write the record now if it changed (the end of a workflow, say); False if it
        changed and could not be written now (its lease is not renewed, NATS refused it).

        Writes are serialised, each with the report as it is then, so a
        flush never overwrites the final record with an older one. While the
        fence does not allow it (the lease is not renewed), nothing is written.
        A record another owner wrote since needs no more writing here: True.
        """
        workflow_id = report.workflow_id
        with self._lock:
            header = self._headers.get(workflow_id)
            fence = self._fences.get(workflow_id, UNFENCED)
            document = report.to_json()
            if header is None or self._written.get(workflow_id) == document:
                return True
            if not fence.allows():
                logger.debug("the record of %s waits for its lease", workflow_id)
                return False
            try:
                written = self._put(workflow_id, {**header, **document}, fence)
            except NoetlError as error:
                logger.warning("could not write the record of %s: %s", workflow_id, error,
                               extra=log_fields(workflow_id, epoch=fence.epoch or None))
                return False
            if not written:
                self._forget(workflow_id)
            elif document["status"] == RUNNING:
                self._written[workflow_id] = document
            else:  # final: nothing more to write
                self._forget(workflow_id)
            return True

    def finish(self, report: RunReport, lease: HeldLease, *, within: float,
               retry: float = 0.25, stop: threading.Event | None = None) -> bool:
        """Write the final record of a workflow that ended under `lease`; whether it was
        written (or is another owner's to write: the lease was lost).

        The end may come as NATS comes back, before the lease is renewed, or
        while NATS refuses writes: try again, for at most `within` seconds, or
        once `stop` is set (the node stops: its endings must not wait in turn).
        False: it could not be written; the caller must not release the lease,
        but let it lapse, so that the next owner finishes the workflow.
        """
        deadline = time.monotonic() + within
        while True:
            left = 0.0 if stop is not None and stop.is_set() else deadline - time.monotonic()
            if not lease.wait_allowed(max(left, 0.0), until=stop):
                return lease.lost
            if self.write(report):
                return True
            if (stop is not None and stop.is_set()) or time.monotonic() + retry >= deadline:
                return False
            time.sleep(retry)

    def _put(self, workflow_id: str, record: dict[str, Any], fence: Fence) -> bool:
        """Compare-and-set; False (the fence marked lost) if a newer owner wrote it."""
        revision = self._revisions.get(workflow_id)
        for _ in range(3):
            if revision is None:
                written = self.kv.create(workflow_id, record)
            else:
                written = self.kv.update(workflow_id, record, revision)
            if written is not None:
                self._revisions[workflow_id] = written
                return True
            entry = self.kv.get(workflow_id)
            epoch = entry.data.get("epoch") if entry is not None else None
            if entry is None or (isinstance(epoch, int) and epoch > fence.epoch):
                logger.warning("the record of %s was written by its owner of epoch %s; "
                               "this node (epoch %d) writes it no more", workflow_id, epoch,
                               fence.epoch, extra=log_fields(workflow_id, epoch=fence.epoch))
                if isinstance(fence, HeldLease):
                    fence.lost = True
                return False
            revision = entry.revision  # written by this owner's epoch (a former self)
        raise NoetlError(f"the record of {workflow_id} kept changing while it was written")

    def _forget(self, workflow_id: str) -> None:
        self._written.pop(workflow_id, None)
        self._headers.pop(workflow_id, None)
        self._revisions.pop(workflow_id, None)
        self._fences.pop(workflow_id, None)

    def get(self, workflow_id: str) -> Entry | None:
        return self.kv.get(workflow_id)

    def all(self) -> list[dict[str, Any]]:
        """Every record, oldest first."""
        records = [entry.data for entry in self.kv.entries().values()]
        return sorted(records, key=lambda record: record.get("started_at") or 0)

    def orphan(self, entry: Entry, why: str) -> bool:
        """Mark a running workflow that cannot be resumed orphaned (see `finish_unowned`)."""
        return self.finish_unowned(entry, ORPHANED, why)

    def finish_unowned(self, entry: Entry, status: str, why: str) -> bool:
        """End the record of a workflow no node owns, read as `entry`, with `status`; False
        if someone wrote it since."""
        record = {**entry.data, "status": status, "finished_at": time.time(),
                  "error": {"reason": why, "chain": [why]}}
        return self.kv.update(entry.key, record, entry.revision) is not None
