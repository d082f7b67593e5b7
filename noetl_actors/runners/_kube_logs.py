"""`PodLog`: follows the log of an attempt's pod into the runner's `OutputSink`.

A thread of its own waits for the Job's pod to have a container that
started (it lists the pods by ``job-name`` every `POLL` seconds), then
follows its log (``read_namespaced_pod_log`` with ``follow`` and
``_preload_content=False``: chunks as the container writes them) until the
stream ends, which it does when the container exits. It never outlives
its attempt: `finish()`, called once the attempt has its outcome, gives
the stream `grace` seconds to end by itself (the rest of the log on its
way), then shuts its socket, so a stream that hangs (an API server or a
load balancer that keeps it open) costs at most that. A follow that ends
or drops while the container still runs is opened again, and the lines
it gave already are skipped (by count), so none is given twice.
"""

from __future__ import annotations

import codecs
import contextlib
import json
import logging
import threading
from typing import Any

from noetl_actors.runners._attempt import Attempt
from noetl_actors.runners._output import OutputSink

__all__ = ["PodLog", "json_answer"]

log = logging.getLogger("noetl_actors.runners")

POLL = 1.0
"""Seconds between two looks for the Job's pod, before its container starts."""
READ_TIMEOUT = 600
"""Seconds a followed log may stay silent before the read gives up (and follows again)."""
CONTAINER = "plugin"
"""The container of a Job's pod whose log is the step's (`build_job`)."""


class PodLog:
    """The log of the pod of Job `job` (of `attempt`), followed into `sink`."""

    def __init__(self, core: Any, namespace: str, job: str, attempt: Attempt,
                 sink: OutputSink) -> None:
        self._core = core
        self._namespace = namespace
        self._job = job
        self._attempt = attempt
        self._sink = sink
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._response: Any = None
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._lines = 0
        """Lines given to the sink so far."""
        self._followed = False
        self._thread = threading.Thread(target=self._run, name=f"noetl-log-{job}",
                                        daemon=True)

    def start(self) -> PodLog:
        self._thread.start()
        return self

    def finish(self, grace: float = 2.0) -> None:
        """The attempt ended: let the log's end arrive for `grace` seconds, then cut it;
        the sink's `end()` follows. Blocks at most about `grace` seconds."""
        self._thread.join(grace)
        with self._lock:
            self._stop.set()
            response = self._response
        if response is not None:
            with contextlib.suppress(Exception):
                response.shutdown()  # a blocked read returns: the socket is shut
        self._thread.join(grace)
        if self._thread.is_alive():
            log.warning("the log of Job %s did not stop; its lines end here", self._job)
        self._sink.end(self._attempt)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                pod, running = self._pod()
                if pod is None:
                    self._stop.wait(POLL)
                    continue
                if not running and self._followed:
                    return  # the container exited, and its log was read to its end
                self._follow(pod)
                self._followed = True
            except Exception as error:  # the API server's errors: try again, unless done
                if self._stop.is_set():
                    return
                log.info("following the log of Job %s: %r; again in %gs", self._job, error,
                         POLL)
                self._stop.wait(POLL)

    def _pod(self) -> tuple[str | None, bool]:
        """The name of the Job's pod once its container runs or ran (None before), and
        whether it still runs."""
        found = json_answer(self._core.list_namespaced_pod(
            self._namespace, label_selector=f"job-name={self._job}", _preload_content=False))
        for pod in found.get("items") or []:
            for container in (pod.get("status") or {}).get("containerStatuses") or []:
                state = container.get("state") or {}
                if state.get("running") or state.get("terminated"):
                    return str(pod["metadata"]["name"]), bool(state.get("running"))
        return None, False

    def _follow(self, pod: str) -> None:
        """Follow `pod`'s log to its end; after a follow that dropped, the lines given
        already are skipped (by count: the log is read again from its start)."""
        response = self._core.read_namespaced_pod_log(
            pod, self._namespace, container=CONTAINER, follow=True,
            _preload_content=False, _request_timeout=(10, READ_TIMEOUT))
        with self._lock:  # finish() shuts what it finds here; if it came first, do it now
            if self._stop.is_set():
                response.shutdown()
            self._response = response
        skip, pending = self._lines, b""
        try:
            for data in response.stream(65536, decode_content=True):
                *lines, pending = (pending + data).split(b"\n")
                for raw in lines:
                    if skip > 0:
                        skip -= 1
                        continue
                    self._lines += 1
                    self._sink.write(self._attempt, self._decoder.decode(raw + b"\n"))
            if pending and skip <= 0:
                self._sink.write(self._attempt, self._decoder.decode(pending, final=True))
        finally:
            with self._lock:
                self._response = None
            with contextlib.suppress(Exception):
                response.release_conn()


def json_answer(response: Any) -> Any:
    """The JSON of a raw (``_preload_content=False``) answer of the API server; its
    connection goes back to the client's pool (not released, each call left one to be
    closed by the garbage collector)."""
    try:
        return json.loads(response.data)
    finally:
        response.release_conn()
