"""`Node`: one noetl node in this process, and the workflows it runs.

    node (root supervisor, one_for_one)
    ├── bridge       the NATS connection
    ├── workers      a PluginWorker per plugin (queue group per plugin)
    └── workflows    one child per running workflow (temporary)

With no NATS address the node starts its own embedded nats-server first and
stops it last. Every step event and supervision event of its workflows is
kept in the ``NOETL_EVENTS`` JetStream stream (see `noetl events`), except a
step's start and normal exit: its observers see them, but on NATS the step's
own events (its final `succeeded`) tell them.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any

import pykka

from noetl_actors.bridge import Bridge, ConnectOptions, EmbeddedNatsServer
from noetl_actors.errors import AuthorizationError, ConnectError, NoetlError
from noetl_actors.playbook import Catalog, Playbook
from noetl_actors.runners import InprocRunner, ProcessRunner, Runner
from noetl_actors.runtime import WorkflowSupervisor, new_workflow_id
from noetl_actors.runtime._remote import remote_steps, subscribe_router
from noetl_actors.services._worker import (
    CLAIMS_BUCKET,
    CLAIMS_TTL,
    BucketClaims,
    Claims,
    LocalClaims,
    PluginWorker,
)
from noetl_actors.supervision import (
    INFINITY,
    ChildSpec,
    ChildType,
    EventKind,
    ExitKind,
    ExitReason,
    LifecycleEvent,
    MonotonicClock,
    Observer,
    Restart,
    SupervisorFlags,
    SupervisorRef,
    monitor,
    start_supervisor,
    supervisor_spec,
)

__all__ = ["EVENTS_STREAM", "Node", "WorkflowRun"]

logger = logging.getLogger("noetl_actors.services")

EVENTS_STREAM = "NOETL_EVENTS"
LIFECYCLE_PREFIX = "noetl.lifecycle"


class WorkflowRun:
    """A workflow started on a node: wait for it, cancel it."""

    def __init__(self, node: Node, workflow_id: str, ref: pykka.ActorRef[Any], *,
                 on_end: Callable[[], object] = lambda: None) -> None:
        self.workflow_id = workflow_id
        self._node = node
        self._done = threading.Event()
        self._reason: ExitReason | None = None

        def finished(down: Any) -> None:
            self._reason = down.reason
            on_end()
            self._done.set()

        monitor(ref, finished)

    def wait(self, timeout: float | None = None) -> ExitReason | None:
        """Block until the workflow has ended; its reason, or None on timeout."""
        if not self._done.wait(timeout):
            return None
        return self._reason

    def cancel(self) -> None:
        """Stop every task and step of it (subprocesses are killed); returns at once."""
        try:
            self._node.workflows.terminate_child(self.workflow_id, timeout=60)
        except NoetlError:
            pass  # it ended meanwhile


class Node:
    """Start with `start()`, run playbooks with `run()`, end with `stop()`."""

    def __init__(
        self,
        *,
        options: ConnectOptions | None = None,
        state_dir: Path | None = None,
        catalog: Catalog | None = None,
        heartbeat: float = 1.0,
        workers: Collection[str] | None = None,
        observers: Sequence[Observer] = (),
    ) -> None:
        """`workers` names the plugins this node runs workers for (default: all)."""
        self.options = options or ConnectOptions()
        self._worker_plugins = workers
        self.state_dir = state_dir
        self.catalog = catalog or Catalog.default()
        self.heartbeat = heartbeat
        self._observers = tuple(observers)
        self.server: EmbeddedNatsServer | None = None
        self.bridge: Bridge | None = None
        self._root: SupervisorRef | None = None
        self._clock = MonotonicClock()
        self._runners: dict[str, Runner] = {}
        self._bridge_failure: ExitReason | None = None
        self.claims: Claims | None = None
        """Who runs which attempt: in this process on an embedded server, else in NATS."""

    @property
    def workflows(self) -> SupervisorRef:
        assert self._root is not None, "the node is not started"
        return self._root.child_supervisor("workflows")

    def start(self, *, timeout: float = 30.0) -> Node:
        """Start NATS (embedded unless given), the bridge, the workers.

        Raises:
            NoetlError: NATS could not be started or reached.
        """
        options = self.options
        try:
            if options.embedded:
                self.server = EmbeddedNatsServer(state_dir=self.state_dir).start()
                options = options.with_servers(self.server.url)
            self.bridge = Bridge(options, observers=self._observers)
            self._runners = {"inproc": InprocRunner(), "process": ProcessRunner()}
            # Alone on an embedded server, claims can stay in this process; on a
            # shared NATS other workers may take the same command: claim in NATS.
            # (self.options: `options` names the embedded server's address by now.)
            claims: Claims = (LocalClaims() if self.options.embedded
                              else BucketClaims(self.bridge))
            self.claims = claims
            workers = [
                ChildSpec(id=name, start=functools.partial(
                    PluginWorker, plugin, bridge=self.bridge, runners=self._runners,
                    claims=claims, clock=self._clock, heartbeat=self.heartbeat))
                for name, plugin in sorted(self.catalog.plugins.items())
                if self._worker_plugins is None or name in self._worker_plugins
            ]
            self._root = start_supervisor(
                SupervisorFlags(max_restarts=10, within=60),
                [
                    self.bridge.child_spec(),
                    supervisor_spec("workers", SupervisorFlags(max_restarts=10, within=60),
                                    workers),
                    supervisor_spec("workflows", SupervisorFlags(max_restarts=100, within=60),
                                    []),
                ],
                id="node",
                observers=[*self._observers, self._publish_lifecycle, self._watch],
            )
            self._wait_connected(options)
            self.bridge.ensure_stream(EVENTS_STREAM, ["event.>", f"{LIFECYCLE_PREFIX}.>"],
                                      timeout=timeout)
            if isinstance(claims, BucketClaims):
                self.bridge.ensure_bucket(CLAIMS_BUCKET, ttl=CLAIMS_TTL, timeout=timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_connected(self, options: ConnectOptions) -> None:
        """Wait for the bridge's first connection; refused credentials fail at once."""
        assert self.bridge is not None
        deadline = time.monotonic() + options.connect_timeout * 2
        while not self.bridge.wait_connected(0.05):
            failure = self._bridge_failure
            if failure is not None and failure.error_type == "AuthorizationError":
                raise AuthorizationError(failure.message)
            if time.monotonic() > deadline:
                why = f": {failure.message}" if failure is not None else ""
                raise ConnectError(f"could not connect to {options.describe()} within "
                                   f"{options.connect_timeout * 2:g}s{why}")

    def _watch(self, event: LifecycleEvent) -> None:
        """Keep why the bridge last failed to start (for start()'s error)."""
        if event.path == "/node/bridge" and event.reason is not None \
                and event.reason.kind is ExitKind.START_FAILURE:
            self._bridge_failure = event.reason

    def run(self, playbook: Playbook, *, workflow_id: str | None = None) -> WorkflowRun:
        """Start a workflow of `playbook`; returns at once."""
        assert self.bridge is not None, "the node is not started"
        workflow_id = workflow_id or new_workflow_id()
        router = subscribe_router(self.bridge, workflow_id)
        steps = remote_steps(self.bridge, workflow_id=workflow_id, heartbeat=self.heartbeat,
                             router=router)
        spec = ChildSpec(
            id=workflow_id,
            start=functools.partial(WorkflowSupervisor, playbook, steps=steps,
                                    workflow_id=workflow_id),
            restart=Restart.TEMPORARY, type=ChildType.SUPERVISOR, shutdown=INFINITY,
        )
        try:
            ref = self.workflows.start_child(spec)
        except BaseException:
            router.close()
            raise
        return WorkflowRun(self, workflow_id, ref, on_end=router.close)

    def history(self, workflow_id: str, *, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Every step and supervision event of a workflow, in the order they were kept."""
        assert self.bridge is not None, "the node is not started"
        subjects = [f"event.*.{workflow_id}.*", f"{LIFECYCLE_PREFIX}.{workflow_id}"]
        deliveries = self.bridge.history(EVENTS_STREAM, subjects, timeout=timeout)
        return [{"subject": d.subject, **d.data} for d in deliveries]

    def _publish_lifecycle(self, event: LifecycleEvent) -> None:
        bridge = self.bridge
        parts = event.path.strip("/").split("/")
        if bridge is None or len(parts) < 3 or parts[1] != "workflows":
            return
        if len(parts) == 5 and _routine(event):
            return  # a step's own events say it (its final event); observers here still see it
        try:
            bridge.publish(f"{LIFECYCLE_PREFIX}.{parts[2]}", event.to_dict())
        except NoetlError:
            logger.debug("could not publish %s", event)

    def stop(self, *, timeout: float = 60.0) -> None:
        """Stop the workflows, the workers, the bridge, then NATS (if embedded)."""
        if self._root is not None:
            self._root.stop(timeout=timeout)
            self._root = None
        for runner in self._runners.values():
            runner.close()
        self._clock.close()
        if self.server is not None:
            self.server.stop()
            self.server = None


def _routine(event: LifecycleEvent) -> bool:
    """A step's first start or its normal exit: every step has them, its events tell them.

    Two lifecycle messages per step (publish, JetStream store) for nothing its
    worker's final event does not say already; restarts, abnormal exits,
    give-ups and backoffs are the supervision events, and are published.
    """
    if event.kind is EventKind.STARTED:
        return True
    return (event.kind is EventKind.EXITED and event.reason is not None
            and event.reason.kind is ExitKind.NORMAL)
