"""`NodeMetrics`: what a node counts, for Prometheus; `serve_metrics` serves it over HTTP.

Each node has a registry of its own (not prometheus-client's global one), so
several nodes in one process (the tests, a program embedding nodes) keep
their figures apart. The figures come from where things happen:

- the node's supervision events (`observe`, an observer of its tree):
  workflows started, restarts per level and strategy, escalations;
- its workflows' ends (`workflow_ended`), with the status of their report;
- its workers (`attempt_ended`): step attempts and their durations per
  plugin and outcome;
- its takeovers (`took_over`);
- at each scrape (`_Sampled`): workflows running, each worker's queue depth
  and attempts in flight (`add_worker`), and the NATS link (connected,
  reconnects, pending bytes, buffered and lost publishes).

docs/operations.md lists every metric with its labels. Every method is
quick and thread-safe: they are called on supervisor threads, workers'
threads and the bridge's loop.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from noetl_actors.runners import Outcome
from noetl_actors.runtime import path_fields
from noetl_actors.supervision import EventKind, ExitKind, LifecycleEvent

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from noetl_actors.services._node import Node

__all__ = ["ATTEMPT_BUCKETS", "MetricsServer", "NodeMetrics", "serve_metrics"]

ATTEMPT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                   300.0, 900.0, 3600.0)
"""Seconds: attempts last from a millisecond (echo) to an hour (a batch job)."""
APART = ("timeout", "crash")
"""Failures an attempt's `outcome` label names apart from ``failed`` (the plugin raised):
the outcomes are ``succeeded``, ``failed``, ``timeout``, ``crash``, ``cancelled``."""


class NodeMetrics:
    """One node's figures, in `registry`; the node's parts report to it as things happen."""

    def __init__(self, node: Node) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=True)
        self.workflows_started = Counter(
            "noetl_workflows_started", "Workflows started on this node (taken over ones too).",
            registry=registry)
        self.workflows_ended = Counter(
            "noetl_workflows_ended", "Workflows that ended on this node, by status "
            "(succeeded, failed, cancelled; let_go: its lease passed to another node).",
            ["status"], registry=registry)
        self.attempts = Histogram(
            "noetl_step_attempt_duration_seconds", "Step attempts this node's workers ran, "
            "and how long each ran, by plugin and outcome.", ["plugin", "outcome"],
            buckets=ATTEMPT_BUCKETS, registry=registry)
        self.restarts = Counter(
            "noetl_restarts", "Restarts by supervisors of this node, by level (workflow, "
            "task, step, node) and the restarting supervisor's strategy.",
            ["level", "strategy"], registry=registry)
        self.escalations = Counter(
            "noetl_escalations", "Supervisors of this node that gave up and escalated to "
            "their parent, by level (task, workflow: the workflow failed; node).",
            ["level"], registry=registry)
        self.takeovers = Counter(
            "noetl_takeovers", "Workflows this node took over from a node that stopped "
            "renewing their lease, and resumed.", registry=registry)
        self._workers: dict[str, Callable[[], tuple[int, int]]] = {}
        """Per plugin, what its worker holds now: (commands queued, attempts in flight)."""
        registry.register(_Sampled(node, self._workers))
        ProcessCollector(registry=registry)  # process_*: the node's CPU, memory, open files
        self._lock = threading.Lock()
        self._children: dict[tuple[str, str], Histogram] = {}
        """The histogram's child per (plugin, outcome): `labels()` costs a lock and a
        look-up, on the path of every attempt."""

    def observe(self, event: LifecycleEvent) -> None:
        """An observer of the node's tree: count workflow starts, restarts, escalations."""
        kind = event.kind
        if kind is EventKind.RESTARTED:
            self.restarts.labels(_level(event.path), event.strategy or "unknown").inc()
        elif kind is EventKind.EXITED:
            if event.reason is not None and event.reason.kind is ExitKind.GAVE_UP:
                self.escalations.labels(_level(event.path)).inc()
        elif kind is EventKind.STARTED and event.path.count("/") == 3 \
                and _level(event.path) == "workflow":  # the cheap test first: every step starts
            self.workflows_started.inc()

    def workflow_ended(self, status: str, *, let_go: bool = False) -> None:
        """A workflow ended here with `status` (its report's); one `let_go` (its lease
        lost) goes on elsewhere, and is counted so."""
        self.workflows_ended.labels("let_go" if let_go else status).inc()

    def attempt_ended(self, plugin: str, outcome: Outcome) -> None:
        """A worker's attempt of `plugin` ended with `outcome`."""
        label = outcome.status.value
        if outcome.error_type in APART:
            label = outcome.error_type
        key = (plugin, label)
        child = self._children.get(key)
        if child is None:
            with self._lock:
                child = self._children[key] = self.attempts.labels(plugin, label)
        child.observe(max(outcome.finished_at - outcome.started_at, 0.0))

    def add_worker(self, plugin: str, load: Callable[[], tuple[int, int]]) -> None:
        """The worker of `plugin` (started, or started again): `load()`, asked at each
        scrape from the scraping thread, says (commands queued, attempts in flight)."""
        self._workers[plugin] = load

    def remove_worker(self, plugin: str) -> None:
        self._workers.pop(plugin, None)

    def took_over(self) -> None:
        """This node resumed a workflow whose lease it took."""
        self.takeovers.inc()


def _level(path: str) -> str:
    """``workflow``, ``task`` or ``step`` for a workflow's actors; ``node`` for the rest."""
    fields = path_fields(path)
    if "step" in fields:
        return "step"
    if "task" in fields:
        return "task"
    return "workflow" if fields else "node"


class _Sampled(Collector):
    """What is read when Prometheus scrapes: workflows running, workers' load, the NATS link."""

    def __init__(self, node: Node, workers: dict[str, Callable[[], tuple[int, int]]]) -> None:
        self._node = node
        self._workers = workers

    def describe(self) -> list[Metric]:
        return []  # made at each scrape: nothing to check against other collectors

    def collect(self) -> Iterator[Metric]:
        node = self._node
        yield GaugeMetricFamily("noetl_workflows_running", "Workflows this node runs now.",
                                value=len(node.running()))
        queued = GaugeMetricFamily("noetl_worker_queue_depth", "Commands a worker has "
                                   "claimed and holds until one of its attempts in flight "
                                   "ends, by plugin.", labels=["plugin"])
        running = GaugeMetricFamily("noetl_worker_in_flight",
                                    "Attempts a worker runs now, by plugin.", labels=["plugin"])
        for plugin, load in sorted(dict(self._workers).items()):  # a copy: workers come, go
            waiting, in_flight = load()
            queued.add_metric([plugin], waiting)
            running.add_metric([plugin], in_flight)
        yield queued
        yield running
        bridge = node.bridge
        if bridge is None:
            return
        stats = bridge.statistics()
        yield GaugeMetricFamily("noetl_nats_connected",
                                "1 while the node's link to NATS is up, else 0.",
                                value=1 if bridge.link().up else 0)
        yield CounterMetricFamily("noetl_nats_reconnects",
                                  "Times the node's NATS client reconnected on its own.",
                                  value=stats.reconnects)
        yield GaugeMetricFamily("noetl_nats_pending_bytes",
                                "Bytes the NATS client holds to write (while NATS is away: "
                                "its reconnect buffer, 2 MiB at most).",
                                value=stats.pending_bytes)
        yield GaugeMetricFamily("noetl_nats_buffered_publishes",
                                "Publishes waiting for the node's first connection.",
                                value=stats.buffered)
        yield CounterMetricFamily("noetl_nats_unsent_publishes",
                                  "Publishes lost while NATS was away (reconnect buffer full).",
                                  value=stats.unsent)


class MetricsServer:
    """A node's metrics over HTTP (``GET /metrics``), on a thread of its own, until `stop()`."""

    def __init__(self, server: WSGIServer, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread

    @property
    def host(self) -> str:
        return str(self._server.server_address[0])

    @property
    def port(self) -> int:
        """The port it listens on (the one given, or the one chosen for port 0)."""
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def stop(self) -> None:
        """Stop serving and close the socket. Idempotent."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()


def serve_metrics(node: Node, host: str, port: int) -> MetricsServer:
    """Serve `node`'s metrics on `host`:`port` (0: a free port; `MetricsServer.url` says).

    Raises:
        OSError: the address cannot be bound (in use, not ours).
    """
    server, thread = start_http_server(port, addr=host, registry=node.metrics.registry)
    return MetricsServer(server, thread)
