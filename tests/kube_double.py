"""A TEST DOUBLE of a Kubernetes API server, for the Job runner's tests: not Kubernetes.

Jobs carry resource versions, and ``?watch=true`` streams their changes
from a resourceVersion (``ADDED``, ``MODIFIED``, ``DELETED``, one JSON a
line) until ``timeoutSeconds``. `compact()` forgets the history, so a
watch from an older version gets ``410 Gone`` (an ``ERROR`` event), as a
real server's does after etcd compaction; `drop_watches()` cuts every open
watch stream, as a restarting API server or load balancer does.

It speaks real HTTP on 127.0.0.1, so the runner's real `kubernetes` client
talks to it, and implements only what the runner uses, as the API server
does it: Jobs create (refusing every body `kubernetes-validate` or a
server's own rules refuse: 422; a name in use: 409), get, list by label
selector, patch of labels, delete (404 when absent); pods list by label
selector; namespaces create and delete (every namespace is there). Its
"kubelet" runs a Job's container command as a local process (``python``
is this interpreter), with the container's env, and reads the
termination message from a file of its own (`NOETL_RESULT_PATH`) into the
pod's status when the process exits; `activeDeadlineSeconds` kills it and
fails the Job with reason ``DeadlineExceeded``; deleting a Job kills its
process. Two failures are played as a kubelet and scheduler report them: an
image whose tag is ``missing`` cannot be pulled (the pod stays Pending, its
container waiting with ``ErrImagePull``), and a pod whose nodeSelector no
node of `NODE_LABELS` matches is never scheduled (``PodScheduled`` False,
``Unschedulable``); neither process is started. A pod's log
(``pods/NAME/log``) is its process's stdout and stderr; with
``follow=true`` it is streamed, chunked, as the process writes it, and
ends when the process has exited (or the double stops). What it does not prove:
real scheduling and image pulls, watches (not implemented yet), RBAC, real
pod lifecycles.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import kubernetes_validate

from tests.kube_helpers import check

NODE_LABELS = {"kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"}
"""The labels of the double's one node."""
_JOBS = "/apis/batch/v1/namespaces/"
_PODS = "/api/v1/namespaces/"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _selected(labels: dict[str, str], selector: str | None) -> bool:
    if not selector:
        return True
    for term in selector.split(","):
        key, _, value = term.partition("=")
        if labels.get(key) != value:
            return False
    return True


class _Pod:
    """One Job's pod: a local process running its container's command."""

    def __init__(self, job: dict[str, Any], folder: Path) -> None:
        spec = job["spec"]["template"]["spec"]
        [container] = spec["containers"]
        name = f"{job['metadata']['name'][:57]}-{next(_serial):05d}"
        self.result = folder / f"{name}.termination-log"
        env = {**os.environ, **{e["name"]: e["value"] for e in container.get("env", [])},
               "NOETL_RESULT_PATH": str(self.result)}
        command = [sys.executable if part == "python" else part
                   for part in container["command"]]
        labels = {**job["spec"]["template"]["metadata"]["labels"],
                  "job-name": job["metadata"]["name"],
                  "batch.kubernetes.io/job-name": job["metadata"]["name"]}
        self.obj: dict[str, Any] = {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": job["metadata"]["namespace"],
                         "labels": labels, "uid": f"pod-{name}"},
            "spec": spec,
        }
        self.proc: subprocess.Popen[bytes] | None = None
        selector = spec.get("nodeSelector") or {}
        if any(NODE_LABELS.get(k) != v for k, v in selector.items()):
            self.obj["status"] = {"phase": "Pending", "conditions": [{
                "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                "message": "0/1 nodes are available: 1 node(s) didn't match Pod's node "
                           "affinity/selector. preemption: 0/1 nodes are available"}]}
            return
        if container["image"].endswith(":missing"):
            self.obj["status"] = {"phase": "Pending", "containerStatuses": [{
                "name": container["name"], "image": container["image"], "imageID": "",
                "ready": False, "restartCount": 0, "started": False,
                "state": {"waiting": {"reason": "ErrImagePull", "message":
                          f'rpc error: code = NotFound desc = failed to pull and unpack image '
                          f'"{container["image"]}": not found'}}}]}
            return
        self.log = folder / f"{name}.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        self.obj["status"] = {"phase": "Running", "containerStatuses": [{
            "name": container["name"], "image": container["image"], "imageID": "",
            "ready": True, "restartCount": 0, "started": True,
            "state": {"running": {"startedAt": _now()}}}]}

    def kill(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


_serial = itertools.count(1)


class KubeDouble:
    """The double's state and its HTTP server; `url` is what a kubeconfig's server says."""

    def __init__(self) -> None:
        self.jobs: dict[tuple[str, str], dict[str, Any]] = {}
        self.pods: dict[tuple[str, str], _Pod] = {}
        self.created: list[str] = []
        """Every Job name created, in order (a second create of one attempt shows here)."""
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.version = 0
        self.events: list[tuple[int, str, dict[str, Any]]] = []
        self.floor = 0
        """Watches from a resourceVersion below this get 410 Gone (`compact()`)."""
        self.generation = 0
        """Bumped by `drop_watches()`: a watch opened in an older one ends."""
        self.watching = 0
        """Watch streams open now."""
        self.expired = 0
        """410s sent."""
        self.log_follows = 0
        """Followed pod logs streaming now."""
        self.hold_logs = False
        """True: a followed log stays open after its process exited, silent, until the
        double stops (an API server or a load balancer that never ends the stream)."""
        self._connections: set[Any] = set()
        """Sockets of requests being served (a client's keep-alive connection holds one)."""
        self._folder = tempfile.TemporaryDirectory(prefix="kube-double-")
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="kube-double", daemon=True)
        self._stop = threading.Event()
        self._kubelet = threading.Thread(target=self._kubelet_loop, name="kube-double-kubelet",
                                         daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> KubeDouble:
        self._thread.start()
        self._kubelet.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._kubelet.join()
        self.drop_watches()
        deadline = time.monotonic() + 10
        while self.watching and time.monotonic() < deadline:
            time.sleep(0.01)
        self._server.shutdown()
        self._thread.join()
        self._server.server_close()
        self._hang_up(deadline)
        with self.lock:
            for pod in self.pods.values():
                pod.kill()
        self._folder.cleanup()

    def _hang_up(self, deadline: float) -> None:
        """Close the connections clients keep open, and wait for their threads to end."""
        with self.lock:
            open_now = list(self._connections)
        for connection in open_now:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        while time.monotonic() < deadline:
            with self.lock:
                if not self._connections:
                    return
            time.sleep(0.01)

    def compact(self) -> None:
        """Forget the history: a watch from any version before now gets 410 Gone."""
        with self.changed:
            self.version += 1
            self.floor = self.version
            self.events.clear()

    def drop_watches(self) -> None:
        """End every open watch stream at once."""
        with self.changed:
            self.generation += 1
            self.changed.notify_all()

    def _record(self, kind: str, job: dict[str, Any]) -> None:
        """A change of `job`: a new resource version, and an event for watches. Under lock."""
        self.version += 1
        job["metadata"]["resourceVersion"] = str(self.version)
        self.events.append((self.version, kind, copy.deepcopy(_public(job))))
        self.changed.notify_all()

    # -- the kubelet and the Job controller --------------------------------------------

    def _kubelet_loop(self) -> None:
        while not self._stop.wait(0.05):
            with self.lock:
                for key, job in self.jobs.items():
                    self._settle(key, job)

    def _settle(self, key: tuple[str, str], job: dict[str, Any]) -> None:
        pod = self.pods.get(key)
        if pod is None or job["status"].get("conditions"):
            return
        deadline = job["spec"].get("activeDeadlineSeconds")
        started = job["status"]["startTime_monotonic"]
        if deadline is not None and time.monotonic() - started > deadline:
            pod.kill()
            self._finish(job, pod, "Failed", "DeadlineExceeded",
                         "Job was active longer than specified deadline")
            return
        if pod.proc is None or pod.proc.poll() is None:
            return
        code = pod.proc.returncode
        message = pod.result.read_text() if pod.result.exists() else ""
        pod.obj["status"]["containerStatuses"][0]["state"] = {"terminated": {
            "exitCode": code, "reason": "Completed" if code == 0 else "Error",
            "message": message[:4096], "startedAt": _now(), "finishedAt": _now()}}
        if code == 0:
            self._finish(job, pod, "Complete", None, None)
        else:
            self._finish(job, pod, "Failed", "BackoffLimitExceeded",
                         "Job has reached the specified backoff limit")

    def _finish(self, job: dict[str, Any], pod: _Pod, kind: str, reason: str | None,
                message: str | None) -> None:
        pod.obj["status"]["phase"] = "Succeeded" if kind == "Complete" else "Failed"
        condition = {"type": kind, "status": "True", "lastTransitionTime": _now()}
        if reason:
            condition.update(reason=reason, message=message)
        job["status"]["conditions"] = [condition]
        job["status"]["active"] = 0
        job["status"]["succeeded" if kind == "Complete" else "failed"] = 1
        self._record("MODIFIED", job)

    # -- HTTP --------------------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        double = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # a watch is a chunked stream, as a real server's

            def setup(self) -> None:
                super().setup()
                with double.lock:
                    double._connections.add(self.connection)

            def finish(self) -> None:
                try:
                    super().finish()
                finally:
                    with double.lock:
                        double._connections.discard(self.connection)

            def log_message(self, format: str, *args: object) -> None:
                pass

            def reply(self, code: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def status(self, code: int, reason: str, message: str) -> None:
                self.reply(code, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                  "message": message, "reason": reason, "code": code})

            def route(self) -> tuple[str, str, str | None, dict[str, list[str]]]:
                url = urlparse(self.path)
                query = parse_qs(url.query)
                for prefix, kind in ((_JOBS, "jobs"), (_PODS, "pods")):
                    if url.path.startswith(prefix):
                        rest = url.path[len(prefix):].split("/")
                        if len(rest) >= 2 and rest[1] == kind:
                            return kind, rest[0], rest[2] if len(rest) > 2 else None, query
                return "", "", None, query

            def do_POST(self) -> None:
                kind, namespace, name, _query = self.route()
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.path.rstrip("/") == _PODS.rstrip("/"):  # a namespace: any is there
                    return self.reply(201, body)
                if kind != "jobs" or name is not None:
                    return self.status(404, "NotFound", f"no route {self.path}")
                body.setdefault("metadata", {})["namespace"] = namespace
                try:
                    check(body)
                except (kubernetes_validate.ValidationError, AssertionError) as error:
                    return self.status(422, "Invalid", f"Job is invalid: {error}")
                key = (namespace, body["metadata"]["name"])
                with double.lock:
                    if key in double.jobs:
                        return self.status(409, "AlreadyExists",
                                           f'jobs.batch "{key[1]}" already exists')
                    body["metadata"]["uid"] = f"uid-{next(_serial)}"
                    body["metadata"]["creationTimestamp"] = _now()
                    body["status"] = {"active": 1, "startTime": _now(),
                                      "startTime_monotonic": time.monotonic()}
                    double.jobs[key] = body
                    double._record("ADDED", body)
                    double.created.append(key[1])
                    double.pods[key] = _Pod(body, Path(double._folder.name))
                    return self.reply(201, _public(body))

            def do_GET(self) -> None:
                if urlparse(self.path).path.endswith("/log"):
                    return self.pod_log()
                kind, namespace, name, query = self.route()
                selector = (query.get("labelSelector") or [None])[0]
                field = (query.get("fieldSelector") or [None])[0]
                if kind == "jobs" and name is None and query.get("watch") == ["true"]:
                    return self.watch(namespace, selector, field, query)
                with double.lock:
                    if kind == "jobs" and name is not None:
                        job = double.jobs.get((namespace, name))
                        if job is None:
                            return self.status(404, "NotFound", f'jobs.batch "{name}" not found')
                        return self.reply(200, _public(job))
                    if kind == "jobs":
                        items = [_public(j) for (ns, _), j in double.jobs.items()
                                 if ns == namespace and _matches(j, selector, field)]
                        return self.reply(200, {"apiVersion": "batch/v1", "kind": "JobList",
                                                "metadata": {"resourceVersion":
                                                             str(double.version)},
                                                "items": items})
                    if kind == "pods" and name is None:
                        items = [p.obj for (ns, _), p in double.pods.items()
                                 if ns == namespace and _selected(p.obj["metadata"]["labels"],
                                                                  selector)]
                        return self.reply(200, {"apiVersion": "v1", "kind": "PodList",
                                                "metadata": {}, "items": items})
                return self.status(404, "NotFound", f"no route {self.path}")

            def watch(self, namespace: str, selector: str | None, field: str | None,
                      query: dict[str, list[str]]) -> None:
                since = int((query.get("resourceVersion") or ["0"])[0] or 0)
                end = time.monotonic() + float((query.get("timeoutSeconds") or ["30"])[0])
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                self.close_connection = True
                with double.changed:
                    generation = double.generation
                    double.watching += 1
                try:
                    while time.monotonic() < end:
                        with double.changed:
                            if since and since < double.floor:
                                double.expired += 1
                                new = [{"type": "ERROR", "object": {
                                    "kind": "Status", "apiVersion": "v1", "status": "Failure",
                                    "code": 410, "reason": "Expired",
                                    "message": f"too old resource version: {since} "
                                               f"({double.floor})"}}]
                            else:
                                new = [{"type": kind, "object": obj}
                                       for version, kind, obj in double.events
                                       if version > since
                                       and obj["metadata"]["namespace"] == namespace
                                       and _matches(obj, selector, field)]
                                since = max([since, *(v for v, _, _ in double.events)])
                            if not new:
                                double.changed.wait(min(0.2, max(0.0, end - time.monotonic())))
                            if double.generation != generation:
                                return  # cut: no last chunk, as a dropped connection
                        for event in new:
                            line = json.dumps(event).encode() + b"\n"
                            self.wfile.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
                        self.wfile.flush()
                        if new and new[0]["type"] == "ERROR":
                            break
                    self.wfile.write(b"0\r\n\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    return
                finally:
                    with double.changed:
                        double.watching -= 1

            def pod_log(self) -> None:
                """``GET .../pods/NAME/log[?follow=true]``: the pod's process's output."""
                url = urlparse(self.path)
                namespace, _pods, name, _log = url.path[len(_PODS):].split("/")
                follow = parse_qs(url.query).get("follow") == ["true"]
                with double.lock:
                    pod = next((p for (ns, _), p in double.pods.items() if ns == namespace
                                and p.obj["metadata"]["name"] == name), None)
                if pod is None:
                    return self.status(404, "NotFound", f'pods "{name}" not found')
                if pod.proc is None:
                    return self.status(400, "BadRequest", f'container "plugin" in pod "{name}" '
                                                          f"is waiting to start: "
                                                          f"ContainerCreating")
                if not follow:
                    data = pod.log.read_bytes()
                    self.send_response(200)
                    self.send_header("Content-Type", "text/plain")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return None
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                self.close_connection = True
                with double.lock:
                    double.log_follows += 1
                try:
                    with pod.log.open("rb") as log:
                        while not double._stop.is_set():
                            exited = pod.proc.poll() is not None  # before the read: no loss
                            data = log.read(65536)
                            if data:
                                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                                self.wfile.flush()
                            elif exited and not double.hold_logs:
                                break
                            else:
                                time.sleep(0.05)
                    self.wfile.write(b"0\r\n\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    return None
                finally:
                    with double.lock:
                        double.log_follows -= 1
                return None

            def do_PATCH(self) -> None:
                """A merge patch of a Job's labels (all a test changes)."""
                kind, namespace, name, _query = self.route()
                patch = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with double.lock:
                    job = double.jobs.get((namespace, name or ""))
                    if kind != "jobs" or job is None:
                        return self.status(404, "NotFound", f'jobs.batch "{name}" not found')
                    labels = (patch.get("metadata") or {}).get("labels") or {}
                    job["metadata"]["labels"].update(labels)
                    double._record("MODIFIED", job)
                    return self.reply(200, _public(job))

            def do_DELETE(self) -> None:
                kind, namespace, name, _query = self.route()
                if self.path.startswith(_PODS) and "/" not in self.path[len(_PODS):]:
                    return self.reply(200, {"kind": "Status", "apiVersion": "v1",
                                            "status": "Success"})  # a namespace
                if kind != "jobs" or name is None:
                    return self.status(404, "NotFound", f"no route {self.path}")
                with double.lock:
                    job = double.jobs.pop((namespace, name), None)
                    if job is None:
                        return self.status(404, "NotFound", f'jobs.batch "{name}" not found')
                    double._record("DELETED", job)
                    pod = double.pods.pop((namespace, name), None)
                    if pod is not None:
                        pod.kill()  # foreground: the pod is gone before the Job is
                    return self.reply(200, {"kind": "Status", "apiVersion": "v1",
                                            "status": "Success"})

        return Handler


def _matches(job: dict[str, Any], selector: str | None, field: str | None) -> bool:
    if field and field != f"metadata.name={job['metadata']['name']}":
        return False
    return _selected(job["metadata"]["labels"], selector)


def _public(job: dict[str, Any]) -> dict[str, Any]:
    status = {k: v for k, v in job["status"].items() if k != "startTime_monotonic"}
    return {**job, "status": status}


@contextlib.contextmanager
def kube_double() -> Iterator[KubeDouble]:
    """A started double, stopped (every process it started killed) afterwards."""
    double = KubeDouble().start()
    try:
        yield double
    finally:
        double.stop()
