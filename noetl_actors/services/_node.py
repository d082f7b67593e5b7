"""`Node`: one noetl node in this process, and the workflows it runs.

    <name> (root supervisor; policies from supervisors/node.yaml)
    ├── bridge       the NATS connection
    ├── workers      a PluginWorker per plugin (queue group per plugin)
    ├── workflows    one child per running workflow (temporary)
    └── services     presence, control, api (served nodes only)

Children stop in reverse order. With no NATS address the node starts its own embedded
nats-server first and stops it last. Every step event and supervision event of its
workflows is kept in the ``NOETL_EVENTS`` JetStream stream (see `noetl events`), except a
step's start and normal exit: its observers see them, but on NATS the step's own events
(its final `succeeded`) tell them; steps' output lines in ``NOETL_LOGS`` (`noetl logs`).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from noetl_actors.bridge import (
    Bridge,
    ConnectOptions,
    EmbeddedNatsServer,
    Entry,
    KeyValue,
    check_token,
)
from noetl_actors.errors import AuthorizationError, ConnectError, NoetlError
from noetl_actors.playbook import Catalog, Playbook
from noetl_actors.runners import Runner
from noetl_actors.runtime import (
    UNFENCED,
    Fence,
    RunReport,
    WaitingSteps,
    WorkflowSupervisor,
    new_workflow_id,
    ready_subject,
    remote_steps,
    subscribe_router,
)
from noetl_actors.services._api import ApiService
from noetl_actors.services._claims import (
    CLAIMS_BUCKET,
    CLAIMS_TTL,
    BucketClaims,
    Claims,
    LocalClaims,
)
from noetl_actors.services._control import ControlService
from noetl_actors.services._keepalive import keep_alive
from noetl_actors.services._lease import (
    LEASES_BUCKET,
    CancellingLease,
    HeldLease,
    LeaseRecord,
    Leases,
)
from noetl_actors.services._lifecycle_out import is_routine, publish_fenced
from noetl_actors.services._logs import ensure_logs_stream
from noetl_actors.services._metrics import NodeMetrics
from noetl_actors.services._names import check_name_is_free
from noetl_actors.services._node_config import NodeConfig, load_node_config
from noetl_actors.services._presence import Presence
from noetl_actors.services._protocol import NODES_BUCKET, PLAYBOOKS_BUCKET, WORKFLOWS_BUCKET
from noetl_actors.services._records import WorkflowRecords
from noetl_actors.services._run import WorkflowRun, WorkflowsSupervisor
from noetl_actors.services._runners import node_runners
from noetl_actors.services._takeover import LeaseKeeper, Takeover, prepare_takeover
from noetl_actors.services._worker import PluginWorker
from noetl_actors.supervision import (
    ChildSpec,
    ChildType,
    ExitKind,
    ExitReason,
    LifecycleEvent,
    MonotonicClock,
    Observer,
    Restart,
    SupervisorRef,
    start_supervisor,
    supervisor_spec,
)

__all__ = ["EVENTS_STREAM", "Node", "WorkflowRun"]

logger = logging.getLogger("noetl_actors.services")

ENDINGS_WAIT = 10.0
"""Seconds `workflows` waits, on its way out, for its workflows' records to be written."""
EVENTS_STREAM = "NOETL_EVENTS"
LIFECYCLE_PREFIX = "noetl.lifecycle"


class Node:
    """Start with `start()`, run playbooks with `run()`, end with `stop()`.

    `name` is its root's id, so every path of its tree starts with it and is
    unique on a cluster whose nodes have different names. With `serve`, it
    also answers the command API and control subjects and keeps its presence
    and its workflows' records in NATS (`noetl node start`); without, it is
    a private node (`noetl run`, `noetl worker`).
    """

    def __init__(
        self,
        *,
        name: str = "node",
        config: NodeConfig | None = None,
        options: ConnectOptions | None = None,
        state_dir: Path | None = None,
        catalog: Catalog | None = None,
        heartbeat: float | None = None,
        workers: Collection[str] | None = None,
        observers: Sequence[Observer] = (),
        serve: bool = False,
        unfenced: bool | None = None,
    ) -> None:
        """`workers` names the plugins this node runs workers for (default: the
        config's, every plugin not disabled); `heartbeat` overrides the config's;
        `unfenced`: its workers run commands that no owner sent (epoch 0, from a
        node that holds no leases): by default only when it is not served."""
        check_token(name, "node name")
        self.name = name
        self.options = options or ConnectOptions()
        self.catalog = catalog or Catalog.default()
        self.config = config or load_node_config(catalog=self.catalog)
        self._worker_plugins = workers
        self.state_dir = state_dir
        self.heartbeat = heartbeat if heartbeat is not None else self.config.heartbeat
        self.waiting = WaitingSteps(bound=self.config.worker_wait)  # steps with no worker yet
        self.serve = serve
        self.unfenced = not serve if unfenced is None else unfenced
        self.metrics = NodeMetrics(self)  # its figures, for Prometheus (`serve_metrics`)
        self._observers = (*observers, self.metrics.observe)
        self.server: EmbeddedNatsServer | None = None
        self.bridge: Bridge | None = None
        self.records: WorkflowRecords | None = None
        self.leases: Leases | None = None
        """The workflows' leases (served nodes): one owner each, fenced by epochs."""
        self._fences: dict[str, Fence] = {}
        self.nodes_bucket: KeyValue | None = None
        self._root: SupervisorRef | None = None
        self._clock = MonotonicClock()
        self._runners: dict[str, Runner] = {}
        self._bridge_failure: ExitReason | None = None
        self.claims: Claims | None = None
        """Who runs which attempt: in this process on an embedded server, else in NATS."""
        self._runs: dict[str, WorkflowRun] = {}
        self._reports: dict[str, RunReport] = {}
        self._runs_lock = threading.Lock()
        self._stopping = threading.Event()
        """Set by `stop()`: no takeover begins, and endings try their record once."""
        self._endings = ThreadPoolExecutor(1)
        """Where a workflow's end is handled (its record written), in the order they end:
        not on its own thread, the bridge's loop, where a NATS request would wait for
        itself. Made again by each `start()`."""

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    @property
    def root(self) -> SupervisorRef:
        assert self._root is not None, "the node is not started"
        return self._root

    @property
    def workflows(self) -> SupervisorRef:
        return self.root.child_supervisor("workflows")

    @property
    def url(self) -> str:
        """The NATS address other terminals and nodes reach this node's cluster at."""
        return self.server.url if self.server is not None else ",".join(self.options.servers)

    def start(self, *, timeout: float = 30.0) -> Node:
        """Start NATS (embedded unless given), the bridge, the workers, the services.

        Raises:
            NoetlError: NATS could not be started or reached.
        """
        options = self.options
        config = self.config
        self._endings = ThreadPoolExecutor(1, thread_name_prefix=f"noetl/{self.name}/endings")
        self._stopping.clear()
        try:
            if options.embedded:
                # A served node comes back on its former port (NATS_URL in other
                # terminals still works) and never beside a former server on its store.
                self.server = EmbeddedNatsServer(
                    state_dir=self.state_dir, remember=self.serve, user=options.user,
                    password=options.password, token=options.token).start()
                options = self.server.own_options(options)
            self.bridge = Bridge(options, observers=self._observers)
            # Alone on a private embedded server, claims can stay in this process; on a NATS others
            # can use, their workers may take the same command (self.options: not the embedded's).
            shared = self.serve or not self.options.embedded
            self._runners = node_runners(config, self.bridge, clock=self._clock, shared=shared)
            claims: Claims = BucketClaims(self.bridge, leases=LEASES_BUCKET, owned=self._fences,
                                          unfenced=self.unfenced) if shared else LocalClaims()
            self.claims = claims
            parts = [
                self.bridge.child_spec(),
                supervisor_spec("workers", config.workers.flags, self._worker_specs(claims),
                                shutdown=config.workers.shutdown),
                ChildSpec(id="workflows", type=ChildType.SUPERVISOR,
                          shutdown=config.workflows.shutdown,
                          start=functools.partial(WorkflowsSupervisor, config.workflows.flags,
                                                  endings=self._endings, wait=ENDINGS_WAIT)),
            ]
            self._root = start_supervisor(config.root, parts, id=self.name, clock=self._clock,
                                          observers=[*self._observers, self._on_lifecycle])
            self._wait_connected(options)
            self.bridge.subscribe(ready_subject("*"), self.waiting, timeout=timeout)
            self.bridge.ensure_stream(EVENTS_STREAM, ["event.>", f"{LIFECYCLE_PREFIX}.>"],
                                      timeout=timeout)
            ensure_logs_stream(self.bridge, timeout=timeout)
            if shared:
                self.bridge.ensure_bucket(CLAIMS_BUCKET, ttl=CLAIMS_TTL, timeout=timeout)
                self.bridge.ensure_bucket(LEASES_BUCKET, ttl=None, timeout=timeout)
            if self.serve:
                self._start_services(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _worker_specs(self, claims: Claims) -> list[ChildSpec]:
        assert self.bridge is not None
        workers = self.config.workers
        chosen = self._worker_plugins
        return [
            ChildSpec(id=name, start=functools.partial(
                PluginWorker, plugin, bridge=self.bridge, runners=self._runners, claims=claims,
                clock=self._clock, heartbeat=self.heartbeat, metrics=self.metrics,
                max_output=self.config.max_output,
                max_in_flight=workers.concurrency.get(name, workers.default_concurrency)))
            for name, plugin in sorted(self.catalog.plugins.items())
            if (name in chosen if chosen is not None else name not in workers.disabled)
        ]

    def _start_services(self, timeout: float) -> None:
        """The command API, the control mailboxes and the presence, started last:
        the node is reachable only once it can serve (and stops serving first)."""
        assert self.bridge is not None
        self.records = WorkflowRecords(
            self.bridge.ensure_bucket(WORKFLOWS_BUCKET, ttl=None, timeout=timeout))
        self.nodes_bucket = nodes = self.bridge.ensure_bucket(NODES_BUCKET, ttl=None,
                                                               timeout=timeout)
        check_name_is_free(nodes, self.name)
        self.leases = leases = Leases(
            self.bridge.ensure_bucket(LEASES_BUCKET, ttl=None, timeout=timeout),
            owner=self.name, duration=self.config.lease, clock=self._clock)
        playbooks = self.bridge.ensure_bucket(PLAYBOOKS_BUCKET, ttl=None, timeout=timeout)
        services = [
            ChildSpec(id="presence", start=functools.partial(
                Presence, self, nodes=nodes, clock=self._clock)),
            ChildSpec(id="control", start=functools.partial(ControlService, self)),
            ChildSpec(id="leases", start=functools.partial(
                LeaseKeeper, self, leases=leases, clock=self._clock)),
            ChildSpec(id="api", start=functools.partial(ApiService, self, playbooks=playbooks)),
        ]
        self.root.start_child(supervisor_spec(
            "services", self.config.services.flags, services,
            shutdown=self.config.services.shutdown))

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

    def run(self, playbook: Playbook, *, workflow_id: str | None = None,
            source: str | None = None, takeover: Takeover | None = None) -> WorkflowRun:
        """Start a workflow of `playbook`; returns at once.

        `source` is the playbook's text, kept in its record (served nodes).
        With `takeover`, the workflow is one this node took over: it goes on
        from its record and history, under the lease taken.

        Raises:
            NoetlError: its lease or its record could not be written (served nodes).
        """
        assert self.bridge is not None, "the node is not started"
        if takeover is not None:
            workflow_id = takeover.workflow_id
            if self._stopping.is_set():
                raise NoetlError(f"node {self.name} is stopping: it resumes no workflow")
        workflow_id = workflow_id or new_workflow_id()
        lease: HeldLease | None = None
        if takeover is not None:
            lease = takeover.lease
        elif self.leases is not None:
            lease = self.leases.acquire(workflow_id)
        fence = lease or UNFENCED
        report = RunReport(playbook, workflow_id, node_path=f"/{self.name}")
        router = subscribe_router(self.bridge, workflow_id, clock=self._clock,
                                  heartbeat=self.heartbeat, listener=report.on_event,
                                  stream=EVENTS_STREAM, on_waiting=report.waiting)
        try:
            resume = takeover.read(report, router) if takeover is not None else None
        except BaseException:
            router.close()
            if lease is not None and self.leases is not None:
                self.leases.forget(workflow_id)  # not released: it can be taken again
            raise
        step_fence = fence  # taken over to be cancelled: its steps begin no attempt
        if lease is not None and takeover is not None and lease.record.cancel:
            step_fence = CancellingLease(lease)
        steps = remote_steps(self.bridge, workflow_id=workflow_id, router=router,
                             fence=step_fence, waiting=self.waiting)
        journal = functools.partial(self.publish_lifecycle, workflow_id) if lease else None
        host = self.bridge.host

        def new_workflow() -> WorkflowSupervisor:
            workflow = WorkflowSupervisor(playbook, steps=steps, workflow_id=workflow_id,
                                          journal=journal, resume=resume)
            if host is not None:
                # On the bridge's loop, with its tasks and steps: where their events
                # arrive and their commands leave, with no hop between threads.
                workflow.run_on(host)
            return workflow

        spec = ChildSpec(
            id=workflow_id,
            start=new_workflow,
            restart=Restart.TEMPORARY, type=ChildType.SUPERVISOR,
            shutdown=self.config.workflows.shutdown,
        )
        self._reports[workflow_id] = report
        self._fences[workflow_id] = fence
        if self.records is not None:
            if takeover is not None:
                self.records.adopt(report, takeover.record, node=self.name, fence=fence)
            else:
                self.records.begin(report, node=self.name, source=source, fence=fence)

        def ended() -> None:
            router.close()
            with self._runs_lock:
                self._runs.pop(workflow_id, None)
            self._reports.pop(workflow_id, None)
            self._fences.pop(workflow_id, None)
            if lease is None or self.records is None or self.leases is None:
                if self.records is not None:
                    self.records.write(report)
                return
            if self.records.finish(report, lease, within=self.config.lease * 3,
                                   stop=self._stopping) and not lease.lost:
                self.leases.release(lease)
            elif not lease.lost:
                # Not written (NATS away): a lease left to lapse, not released, lets a
                # node take the workflow over and write its end from the history.
                logger.warning("could not write the end of workflow %s; its lease is left to lapse"
                               ", for a node to take it over", workflow_id, extra=lease.log_fields)
                self.leases.forget(workflow_id)

        try:
            ref = self.workflows.start_child(spec)
        except BaseException:
            if takeover is None:
                report.finish(None)
                ended()  # not left "running" for ever
            else:  # the node stops, say: no end written; the next owner adopts the record
                router.close()
                self._reports.pop(workflow_id, None)
                self._fences.pop(workflow_id, None)
                if self.leases is not None:
                    self.leases.forget(workflow_id)  # it lapses, for a node to take it
            raise
        run = WorkflowRun(self, workflow_id, ref, report, on_end=lambda _: ended(),
                          endings=self._endings)
        with self._runs_lock:
            if not run.done:
                self._runs[workflow_id] = run
        if takeover is not None and self._stopping.is_set() and lease is not None:
            self.let_go(lease, None, why="this node stops; it is left to lapse")
        return run

    def take_over(self, lease: HeldLease, lease_entry: Entry) -> WorkflowRun | None:
        """Go on with a workflow whose lease this node has just taken (`LeaseKeeper`)."""
        takeover = prepare_takeover(self, lease, lease_entry)
        if takeover is None:
            return None
        run = self.run(takeover.playbook, takeover=takeover)
        if lease.lost:  # lost while it started: its keeper could not stop it yet
            self.let_go(lease, None)
        elif lease.record.cancel:
            threading.Thread(target=run.cancel, name=f"noetl/cancel/{lease.workflow_id}",
                             daemon=True).start()
        return run

    def let_go(self, lease: HeldLease, now: LeaseRecord | None, *, why: str = "") -> None:
        """Stop a workflow whose lease another node holds now (or that this node leaves
        to lapse, `why`): no record, no cancels."""
        lease.lost = True
        by = why or (f"node {now.owner} holds it (epoch {now.epoch})" if now is not None
                     else "its lease is gone")
        logger.warning("lost the lease of workflow %s (epoch %d): %s; letting it go",
                       lease.workflow_id, lease.epoch, by, extra=lease.log_fields)
        run = self.running().get(lease.workflow_id)
        if run is not None:
            threading.Thread(target=run.stop, name=f"noetl/let-go/{lease.workflow_id}",
                             daemon=True).start()

    def cancel_workflow(self, workflow_id: str) -> bool:
        """Cancel a workflow this node runs; False if it runs none of that id."""
        run = self.running().get(workflow_id)
        if run is None:
            return False
        run.cancel()
        return True

    def running(self) -> dict[str, WorkflowRun]:
        """The workflows this node runs now, by id."""
        with self._runs_lock:
            return dict(self._runs)

    def history(self, workflow_id: str, *, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Every step and supervision event of a workflow, in the order they were kept."""
        assert self.bridge is not None, "the node is not started"
        subjects = [f"event.*.{workflow_id}.*", f"{LIFECYCLE_PREFIX}.{workflow_id}"]
        deliveries = self.bridge.history(EVENTS_STREAM, subjects, timeout=timeout)
        return [{"subject": d.subject, **d.data} for d in deliveries]

    def _on_lifecycle(self, event: LifecycleEvent) -> None:
        """Hand a workflow's events to its report; publish every event on NATS."""
        parts = event.path.strip("/").split("/")
        workflow_id = None
        if len(parts) >= 3 and parts[1] == "workflows":
            workflow_id = parts[2]
            report = self._reports.get(workflow_id)
            if report is not None:
                report.on_lifecycle(event)
            if len(parts) == 5 and is_routine(event):
                return  # a step's own events say it (its final event)
        else:
            keep_alive(self, event)  # a root child down for good is started again
            if event.path == f"/{self.name}/bridge" and event.reason is not None \
                    and event.reason.kind is ExitKind.START_FAILURE:
                self._bridge_failure = event.reason  # why start() could not connect
        self.publish_lifecycle(workflow_id, {"node": self.name, **event.to_dict()})

    def publish_lifecycle(self, workflow_id: str | None, data: dict[str, Any]) -> None:
        """Publish a supervision event: a workflow's, or (None) one of the node's own."""
        if self.bridge is not None:
            publish_fenced(self.bridge, f"{LIFECYCLE_PREFIX}.{workflow_id or 'node.' + self.name}",
                           data, self._fences.get(workflow_id) if workflow_id else None)

    def stop(self, *, timeout: float = 60.0) -> None:
        """Stop in reverse start order: the services, the workflows (cancelled, or handed
        over: `NodeConfig.on_stop`), the workers, the bridge, then NATS (if embedded)."""
        self._stopping.set()
        hand_over = self.config.on_stop == "hand_over" and self.leases is not None
        for workflow_id, run in self.running().items():
            fence = self._fences.get(workflow_id)
            if hand_over and isinstance(fence, HeldLease):
                fence.lost = True  # no record, no cancel: its lease lapses for the next owner
                logger.warning("workflow %s is handed over: its lease (epoch %d) is left to "
                               "lapse", workflow_id, fence.epoch)
            else:
                run.cancelled = True
        if self._root is not None:
            self._root.stop(timeout=timeout)
            self._root = None
        self._endings.shutdown(wait=True)
        for runner in self._runners.values():
            runner.close()
        self._clock.close()
        if self.server is not None:
            self.server.stop()
            self.server = None

