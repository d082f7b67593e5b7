"""`KubernetesRunner`: one attempt is one Job, made and followed through the API server.

The runner creates the Job of `build_job()` through the official client,
follows it with a watch that survives ``410 Gone`` (list again, then watch
from the new resource version) and dropped streams, reads the result from its pod's termination
message (`read_result`), and deletes it with foreground propagation on
cancel and timeout (a 404 is done). A Job of the same name that already
exists (409) is the same attempt: it is followed, never made twice.
A pod that cannot start ends the attempt early, as a failure whose error
type names why, with the pod's own message: `UNSCHEDULABLE` (no node
takes it) after `unschedulable_after` seconds, `IMAGE_PULL_ERROR` after
`image_pull_after`, `CONTAINER_ERROR` (a container that cannot be made:
a missing Secret, a bad volume) after `container_error_after`; so no pod
is Pending for ever. A cancel or a deadline is acted on within a watch's
`watch_timeout`. Given an `output` sink, the pod's log is followed into it
while the Job runs (`PodLog`), and ends before the attempt's outcome is
settled.

Re-attach: an attempt started with ``follow=True`` (its worker died, and a
new one took its command: docs/kubernetes.md) never creates a Job; it finds
the attempt's Job by name, checks by its labels that it is this attempt's,
and follows it (or takes its result, if it ended). A Job that is gone (its
TTL passed, or deleted) is a crashed attempt: making it again could run the
attempt twice.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Generator
from typing import Any

from noetl_actors.runners._attempt import CANCELLED, CRASH, TIMEOUT, Attempt, Outcome
from noetl_actors.runners._handle import AttemptHandle, check_start, stop_message
from noetl_actors.runners._kube_job import build_job
from noetl_actors.runners._kube_logs import PodLog, json_answer
from noetl_actors.runners._kube_settings import KubeSettings
from noetl_actors.runners._manifest import PluginInfo
from noetl_actors.runners._output import OutputSink
from noetl_actors.runners._protocol import RunnerStatistics
from noetl_actors.runners._results import read_result

__all__ = ["CONTAINER_ERROR", "IMAGE_PULL_ERROR", "UNSCHEDULABLE", "KubernetesAttempt",
           "KubernetesRunner"]

log = logging.getLogger("noetl_actors.runners")

WATCH_TIMEOUT = 5
"""Seconds one watch of a Job lasts before it is opened again: how often, at least, a
running Job's pod is checked, and a cancel or deadline is acted on."""
_GONE: dict[str, Any] = {}
"""`_statuses()`: the Job is gone."""
_TICK: dict[str, Any] = {}
"""`_statuses()`: a watch ended with no change."""
UNSCHEDULABLE = "Unschedulable"
"""Error type: no node would take the attempt's pod (resources, selector, taints)."""
IMAGE_PULL_ERROR = "ImagePullError"
"""Error type: the attempt's image cannot be pulled (no such image, no access)."""
CONTAINER_ERROR = "ContainerError"
"""Error type: the container cannot be created (a missing Secret or ConfigMap, ...)."""
_PULL_REASONS = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull")
_CONTAINER_REASONS = ("CreateContainerConfigError", "CreateContainerError", "RunContainerError")
DEADLINE_GRACE = 30.0
"""Seconds past the attempt's timeout before the runner deletes a Job that Kubernetes'
own activeDeadlineSeconds has not ended (a slow controller, a clock apart)."""


class KubernetesAttempt(AttemptHandle):
    """One attempt's Job: a thread of its own creates it, follows it and settles the outcome."""

    def __init__(self, runner: KubernetesRunner, plugin: PluginInfo, attempt: Attempt,
                 job: dict[str, Any], *, follow: bool = False) -> None:
        super().__init__(attempt)
        self._runner = runner
        self._follow_only = follow
        self._plugin = plugin
        self._job = job
        self.name: str = job["metadata"]["name"]
        self._stop_reason: str | None = None
        self._stuck_since: dict[str, float] = {}
        """Since when (monotonic) the pod has been stuck in each way it is now."""
        self._thread = threading.Thread(target=self._follow, name=f"noetl-job-{self.name}",
                                        daemon=True)

    def cancel(self) -> None:
        if not self._settled() and self._stop_reason is None:
            self._stop_reason = CANCELLED

    def _follow(self) -> None:
        output = self._runner.output
        lines = None if output is None else PodLog(
            self._runner._core, self._runner.namespace, self.name, self.attempt, output).start()
        try:
            outcome = self._run()
        except Exception as error:  # the API server's errors, ours: an outcome, not a dead thread
            log.exception("Job %s", self.name)
            outcome = Outcome.failed(CRASH, f"Job {self.name}: {error}", started_at=0)
        if lines is not None:  # its lines before its end, on the same wire
            lines.finish()
        self._settle(outcome)
        self._runner._ended(self)

    def _run(self) -> Outcome:
        problem = self._runner._find(self._job) if self._follow_only else \
            self._runner._create(self._job)
        if problem is not None:
            return Outcome.failed(CRASH, problem, started_at=0)
        deadline = None if self.attempt.timeout is None else \
            time.monotonic() + self.attempt.timeout + DEADLINE_GRACE
        with contextlib.closing(self._runner._statuses(self.name)) as statuses:
            for status in statuses:  # closing it closes the watch's connection
                if self._stop_reason is not None:
                    return self._stopped(self._stop_reason)
                if deadline is not None and time.monotonic() > deadline:
                    return self._stopped(TIMEOUT)
                if status is _GONE:
                    return Outcome.failed(CRASH, f"Job {self.name} was deleted while it ran",
                                          started_at=0)
                ended = (self._ended(status) if status is not _TICK else None) or self._stuck()
                if ended is not None:
                    return ended
        raise AssertionError("_statuses() never ends")

    def _ended(self, status: dict[str, Any]) -> Outcome | None:
        for condition in status.get("conditions") or []:
            if condition.get("status") != "True" or condition.get("type") not in (
                    "Complete", "Failed"):
                continue
            if condition.get("reason") == "DeadlineExceeded":
                self._runner._delete(self.name)
                return Outcome.failed(TIMEOUT, stop_message(self.attempt, TIMEOUT),
                                      started_at=0)
            message, exit_code = self._runner._termination(self.name)
            if message:
                return read_result(message, nats_url=self._runner.nats_url)
            return Outcome.failed(CRASH, f"Job {self.name} ended ({condition.get('reason')}: "
                                         f"{condition.get('message')}), its container exited "
                                         f"{exit_code} without an answer", started_at=0)
        return None

    def _stuck(self) -> Outcome | None:
        """A failure if the pod has been unable to start for longer than its bound."""
        found = self._runner._pod_trouble(self.name)
        now = time.monotonic()
        self._stuck_since = {kind: self._stuck_since.get(kind, now) for kind in found}
        for kind, message in found.items():
            if now - self._stuck_since[kind] >= self._runner.bounds[kind]:
                self._runner._delete(self.name)
                return Outcome.failed(kind, f"the pod of Job {self.name} cannot start: "
                                            f"{message}", started_at=0)
        return None

    def _stopped(self, reason: str) -> Outcome:
        self._runner._delete(self.name)
        return Outcome.failed(reason, stop_message(self.attempt, reason), started_at=0)


class KubernetesRunner:
    """Runs attempts as Jobs in `namespace`, through `api_client` (a ``kubernetes.client.
    ApiClient``: from a kubeconfig, in-cluster, or a test's). `output`: where each
    attempt's pod log goes, followed while the Job runs (`OutputSink`)."""

    name = "kubernetes"

    def __init__(self, api_client: Any, *, namespace: str, nats_url: str,
                 ttl_after_finished: float = 3600.0, watch_timeout: int = WATCH_TIMEOUT,
                 unschedulable_after: float = 300.0, image_pull_after: float = 120.0,
                 container_error_after: float = 60.0, owns_client: bool = False,
                 output: OutputSink | None = None, nats_secret: str = "") -> None:
        """`owns_client`: `close()` closes `api_client` too (its pool of connections);
        `nats_secret`: the Secret of the pods' NATS key (`build_job`)."""
        from kubernetes import client  # here: a node without Jobs never loads the client

        self.namespace = namespace
        self.nats_url = nats_url
        self.nats_secret = nats_secret
        self.ttl_after_finished = ttl_after_finished
        self.watch_timeout = watch_timeout
        self.output = output
        self.bounds = {UNSCHEDULABLE: unschedulable_after, IMAGE_PULL_ERROR: image_pull_after,
                       CONTAINER_ERROR: container_error_after}
        """Seconds a pod may stay stuck in each way before its attempt fails."""
        # Any: the calls below ask for raw JSON (_preload_content=False), which the
        # client's annotations (typed models, from version 35 on) do not describe.
        self._batch: Any = client.BatchV1Api(api_client)
        self._core: Any = client.CoreV1Api(api_client)
        self._api_error = client.ApiException
        self._api_client = api_client if owns_client else None
        self._lock = threading.Lock()
        self._running: set[KubernetesAttempt] = set()
        self._started = 0
        self._closed = False

    def start(self, plugin: PluginInfo, attempt: Attempt, *, epoch: int = 0,
              settings: KubeSettings | None = None, follow: bool = False) -> KubernetesAttempt:
        """Start `attempt` as a Job; `settings` are the step's (over the plugin's), `epoch`
        the lease epoch of the owner that sent it (a label of the Job). With `follow`,
        follow the attempt's existing Job and never create one (re-attach)."""
        check_start(self.name, plugin, attempt)
        job = build_job(plugin, attempt, epoch=epoch,
                        settings=(settings or KubeSettings()).over(plugin.kubernetes),
                        ttl_after_finished=self.ttl_after_finished, nats_url=self.nats_url,
                        namespace=self.namespace, nats_secret=self.nats_secret)
        running = KubernetesAttempt(self, plugin, attempt, job, follow=follow)
        with self._lock:
            if self._closed:
                raise RuntimeError("the kubernetes runner is closed")
            self._running.add(running)
            self._started += 1
        running._thread.start()
        return running

    def statistics(self) -> RunnerStatistics:
        with self._lock:
            return RunnerStatistics(started=self._started, running=len(self._running),
                                    abandoned=0)

    def close(self, *, timeout: float = 10.0) -> None:
        with self._lock:
            self._closed = True
            running = list(self._running)
        for attempt in running:
            attempt.cancel()
        end = time.monotonic() + timeout
        for attempt in running:
            attempt.wait(max(0.0, end - time.monotonic()))
        client, self._api_client = self._api_client, None
        if client is not None:
            client.close()

    # -- the API calls ---------------------------------------------------------------

    def _ended(self, attempt: KubernetesAttempt) -> None:
        with self._lock:
            self._running.discard(attempt)

    def _create(self, job: dict[str, Any]) -> str | None:
        """Create the Job; if one of its name exists, it is this attempt's: follow that.
        A problem (for people) if the one of that name is not this attempt's."""
        try:
            json_answer(self._batch.create_namespaced_job(self.namespace, body=job,
                                                      _preload_content=False))
        except self._api_error as error:
            if error.status != 409:
                raise
            return self._find(job)
        return None

    def _find(self, job: dict[str, Any]) -> str | None:
        """None if the attempt's Job exists and its labels say it is this attempt's; else
        why not, for people."""
        name = job["metadata"]["name"]
        try:
            found = json_answer(self._batch.read_namespaced_job(
                name, self.namespace, _preload_content=False))
        except self._api_error as error:
            if error.status != 404:
                raise
            return (f"the Job {name} of this attempt is gone from namespace {self.namespace} "
                    f"(it ended longer than the node's kubernetes.job_ttl ago, or was "
                    f"deleted); it is not made again, lest the attempt run twice")
        labels = (found.get("metadata") or {}).get("labels") or {}
        wanted = {key: value for key, value in job["metadata"]["labels"].items()
                  if not key.endswith("/epoch")}
        differ = sorted(key for key, value in wanted.items() if labels.get(key) != value)
        if differ:
            return (f"a Job named {name} in namespace {self.namespace} is not this "
                    f"attempt's: its labels {', '.join(differ)} differ")
        return None

    def _statuses(self, name: str) -> Generator[dict[str, Any], None, None]:
        """The Job's status now, then at each change, and `_TICK` when a watch ends with
        none; `_GONE` once it is deleted. Never ends by itself.

        A list gives the status and a resource version; a watch follows from it. A
        watch whose version is too old (410 Gone: the server compacted its history)
        lists again; a stream that drops is watched again from the last version seen.
        """
        from kubernetes import watch
        from urllib3.exceptions import HTTPError

        selector = f"metadata.name={name}"
        version: str | None = None
        while True:
            if version is None:
                listed = json_answer(self._batch.list_namespaced_job(
                    self.namespace, field_selector=selector, _preload_content=False))
                version = (listed.get("metadata") or {}).get("resourceVersion")
                items = listed.get("items") or []
                yield (items[0].get("status") or {}) if items else _GONE
            watcher: Any = watch.Watch()  # type: ignore[no-untyped-call]
            try:
                for event in watcher.stream(
                        self._batch.list_namespaced_job, self.namespace,
                        field_selector=selector, resource_version=version,
                        timeout_seconds=self.watch_timeout):
                    job = event["raw_object"]
                    version = (job.get("metadata") or {}).get("resourceVersion") or version
                    yield _GONE if event["type"] == "DELETED" else (job.get("status") or {})
            except self._api_error as error:
                if error.status != 410:
                    raise
                log.info("watch of Job %s: %s; listing again", name, error.reason)
                version = None
                continue
            except (HTTPError, OSError) as error:  # a dropped stream: watch again
                log.info("watch of Job %s dropped (%r); watching again", name, error)
            yield _TICK

    def _termination(self, name: str) -> tuple[str, int | None]:
        """The termination message and exit code of the Job's pod's container."""
        for pod in self._pods(name):
            for container in (pod.get("status") or {}).get("containerStatuses") or []:
                terminated = (container.get("state") or {}).get("terminated")
                if terminated:
                    return str(terminated.get("message") or ""), terminated.get("exitCode")
        return "", None

    def _pods(self, name: str) -> list[dict[str, Any]]:
        found = json_answer(self._core.list_namespaced_pod(
            self.namespace, label_selector=f"job-name={name}", _preload_content=False))
        return list(found.get("items") or [])

    def _pod_trouble(self, name: str) -> dict[str, str]:
        """How the Job's pod is stuck now, if it is: error type -> the pod's own message."""
        trouble: dict[str, str] = {}
        for pod in self._pods(name):
            status = pod.get("status") or {}
            for condition in status.get("conditions") or []:
                if (condition.get("type"), condition.get("status"), condition.get("reason")) \
                        == ("PodScheduled", "False", "Unschedulable"):
                    trouble[UNSCHEDULABLE] = str(condition.get("message") or "Unschedulable")
            for container in status.get("containerStatuses") or []:
                waiting = (container.get("state") or {}).get("waiting") or {}
                reason = waiting.get("reason")
                text = f"{reason}: {waiting.get('message') or ''}".strip(": ")
                if reason in _PULL_REASONS:
                    trouble[IMAGE_PULL_ERROR] = text
                elif reason in _CONTAINER_REASONS:
                    trouble[CONTAINER_ERROR] = text
        return trouble

    def _delete(self, name: str) -> None:
        """Delete the Job and, first, its pod (foreground); already gone is done."""
        try:
            json_answer(self._batch.delete_namespaced_job(name, self.namespace,
                                                      propagation_policy="Foreground",
                                                      _preload_content=False))
        except self._api_error as error:
            if error.status != 404:
                raise

