"""`WorkflowRecords`: every workflow of a cluster, in the ``noetl-workflows`` bucket.

A record is what `noetl status` prints and what a node that takes over a
dead node's workflows will read: the owner node, the status, the playbook's
text and the `noetl run --json` report. The owner writes it when the
workflow starts and ends, and every heartbeat while it runs (`flush`).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from noetl_actors.bridge import Entry, KeyValue
from noetl_actors.errors import NoetlError
from noetl_actors.runtime import RunReport

__all__ = ["RUNNING", "WorkflowRecords"]

logger = logging.getLogger("noetl_actors.services")

RUNNING = "running"
ORPHANED = "orphaned"
"""Its node died while it ran (to be resumed elsewhere: the next roadmap step)."""


class WorkflowRecords:
    """Thread-safe. A write NATS refuses is logged, and tried again at the next
    flush while the workflow runs."""

    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv
        self._lock = threading.Lock()
        self._written: dict[str, dict[str, Any]] = {}
        self._headers: dict[str, dict[str, Any]] = {}

    def begin(self, report: RunReport, *, node: str, source: str | None) -> None:
        with self._lock:
            self._headers[report.workflow_id] = {
                "workflow_id": report.workflow_id,
                "node": node,
                "submitted_at": time.time(),
                "source": source,
            }
        self.write(report)

    def write(self, report: RunReport) -> None:
        """Write the record now if it changed (the end of a workflow, say).

        Writes are serialised, each with the report as it is then, so a
        flush never overwrites the final record with an older one.
        """
        with self._lock:
            header = self._headers.get(report.workflow_id)
            document = report.to_json()
            if header is None or self._written.get(report.workflow_id) == document:
                return
            try:
                self.kv.put(report.workflow_id, {**header, **document})
            except NoetlError as error:
                logger.warning("could not write the record of %s: %s",
                               report.workflow_id, error)
                return
            if document["status"] == RUNNING:
                self._written[report.workflow_id] = document
            else:  # final: nothing more to write
                self._written.pop(report.workflow_id, None)
                del self._headers[report.workflow_id]

    def get(self, workflow_id: str) -> Entry | None:
        return self.kv.get(workflow_id)

    def all(self) -> list[dict[str, Any]]:
        """Every record, oldest first."""
        records = [entry.data for entry in self.kv.entries().values()]
        return sorted(records, key=lambda record: record.get("started_at") or 0)

    def orphan(self, node: str, why: str) -> list[str]:
        """Mark the running workflows of a dead `node` orphaned; their ids.

        Each is changed only at the revision read, so when two nodes judge the
        same dead node at once, each workflow is reported once.
        """
        orphaned = []
        for workflow_id, entry in self.kv.entries().items():
            record = entry.data
            if record.get("node") != node or record.get("status") != RUNNING:
                continue
            record = {**record, "status": ORPHANED, "finished_at": time.time(),
                      "error": {"reason": why, "chain": [why]}}
            if self.kv.update(workflow_id, record, entry.revision):
                orphaned.append(workflow_id)
        return orphaned
