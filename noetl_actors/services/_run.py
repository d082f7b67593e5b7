"""`WorkflowRun`, a workflow started on a node, and the node's `workflows` supervisor."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any

import pykka

from noetl_actors.errors import NoetlError
from noetl_actors.runtime import RunReport, log_fields
from noetl_actors.supervision import ExitReason, Supervisor, SupervisorFlags, monitor

if TYPE_CHECKING:
    from noetl_actors.services._node import Node

__all__ = ["WorkflowRun", "WorkflowsSupervisor"]

logger = logging.getLogger("noetl_actors.services")


class WorkflowRun:
    """A workflow started on a node: wait for it, cancel it, read its report."""

    def __init__(self, node: Node, workflow_id: str, ref: pykka.ActorRef[Any],
                 report: RunReport, *, on_end: Callable[[WorkflowRun], object],
                 endings: Executor) -> None:
        """`on_end` runs on `endings`' thread: the workflow's own is the bridge's loop,
        where writing its record (a NATS request) would wait for itself."""
        self.workflow_id = workflow_id
        self.report = report
        self.cancelled = False
        self._node = node
        self._done = threading.Event()
        self._reason: ExitReason | None = None

        def end(reason: ExitReason) -> None:
            try:
                self._reason = reason
                report.finish(reason, cancelled=self.cancelled)
                leases = node.leases  # a lease lost (forgotten) by now: it goes on elsewhere
                node.metrics.workflow_ended(report.status, let_go=leases is not None
                                            and not leases.holds(workflow_id))
                on_end(self)
            except Exception:
                logger.exception("the end of workflow %s was not fully handled", workflow_id,
                                 extra=log_fields(workflow_id))
            finally:
                self._done.set()

        def finished(down: Any) -> None:
            try:
                endings.submit(end, down.reason)
            except RuntimeError:  # the node has stopped taking endings
                threading.Thread(target=end, args=(down.reason,), daemon=True,
                                 name=f"noetl/end/{workflow_id}").start()

        monitor(ref, finished)

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> ExitReason | None:
        """Block until the workflow has ended; its reason, or None on timeout."""
        if not self._done.wait(timeout):
            return None
        return self._reason

    def cancel(self) -> None:
        """Stop every task and step of it (subprocesses are killed); returns once stopped."""
        self.cancelled = True
        self.stop()

    def stop(self) -> None:
        """Stop its tree here, as `cancel` without calling it cancelled (a workflow let go:
        its steps' fence is lost, so they send no cancels); returns once stopped."""
        try:
            self._node.workflows.terminate_child(self.workflow_id, timeout=60)
        except NoetlError:
            pass  # it ended meanwhile


class WorkflowsSupervisor(Supervisor):
    """The node's `workflows`: on its way out (stopped, given up or crashed), it waits
    for the endings of the workflows it stopped to be handled, their records written,
    while what stops after it (the bridge) is still there."""

    def __init__(self, flags: SupervisorFlags, *, endings: Executor, wait: float) -> None:
        super().__init__(flags)
        self._endings = endings
        self._wait = wait

    # pykka's hooks: a supervisor runs them once its children have stopped.
    def on_stop(self) -> None:
        self._wait_for_endings()

    def on_failure(self, *_exc_info: Any) -> None:
        self._wait_for_endings()

    def _wait_for_endings(self) -> None:
        try:
            self._endings.submit(lambda: None).result(self._wait)  # one thread: in order
        except (RuntimeError, TimeoutError):
            logger.warning("%s: workflow endings still pending after %gs", self.path,
                           self._wait)
