"""A step whose command no worker has answered yet: it waits for a worker, it is not lost.

A worker that takes a command says so only when there is something to say
(its final event, or `accepted` if the command queues, `started` if it runs
a while), so a step that hears nothing for `HEARTBEAT_MISSES` heartbeats
sends its command again, and from then on it is *waiting for a worker* of
its plugin. It sends again at a pace that adds no load: `HEARTBEAT_MISSES`
heartbeats, then twice that, and so on, up to `RESEND_MAX` seconds (or
`HEARTBEAT_MISSES` heartbeats, if longer); and at once when a worker of the
plugin says it has started (`WaitingSteps.ready`). Sent again, a command is
a request, and what answers tells the step what is going on:

- a worker: it holds the attempt (``held``), or another claim does
  (``taken``): the step has heard of its worker, and waits for its events
  as for any attempt (silence for `HEARTBEAT_MISSES` heartbeats is a lost
  worker);
- NATS, at once: no responders, no worker of the plugin is running;
- nothing in time: workers of the plugin are running, none answered (busy).

It waits as long as its `timeout` and the node's `worker_wait` allow
(`WorkerWait.expired`; `worker_wait` counted as silence is, only while the
node's link to NATS is up: `_outage`), then its attempt crashes with
`NoWorker`, whose message says which of the last two it was.
"""

from __future__ import annotations

import concurrent.futures
import enum
import threading
from typing import Any

import attrs
import pykka

from noetl_actors.bridge import Delivery
from noetl_actors.errors import BridgeTimeout, NoResponders, NoWorker
from noetl_actors.supervision import tell_if_alive

__all__ = [
    "DEFAULT_WORKER_WAIT",
    "RESEND_MAX",
    "Answer",
    "SendNow",
    "WaitingSteps",
    "WorkerWait",
    "Workers",
    "answer_of",
]

RESEND_MAX = 5.0
"""Seconds between sends of a command no worker answered, at most (backed off to it)."""
DEFAULT_WORKER_WAIT = 600.0
"""Seconds a step waits for a worker when its node says nothing (`worker_wait`)."""


class Workers(enum.Enum):
    """What the last send of a waiting step's command found out about its plugin's workers."""

    UNKNOWN = "unknown"
    """Not sent again yet, or no answer came back (no connection)."""
    NONE = "none"
    """No worker of the plugin is running: NATS said no one listens."""
    BUSY = "busy"
    """Workers of the plugin are running, but none answered in time."""


@attrs.frozen
class SendNow:
    """Told to a waiting step when a worker of its plugin started: send again now."""


@attrs.frozen
class Answer:
    """Told to a step: what answered its command sent again. A worker has it (`heard`:
    it holds it, or another claim does), or what the answer said of the workers."""

    command_id: str
    heard: bool
    workers: Workers = Workers.UNKNOWN


def answer_of(command_id: str, done: concurrent.futures.Future[Delivery]) -> Answer:
    """The `Answer` of a command sent again as a request (`Bridge.request_soon`)."""
    error = done.exception()  # not a raising result(): no cycle through this frame
    if isinstance(error, NoResponders):
        return Answer(command_id, heard=False, workers=Workers.NONE)
    if isinstance(error, BridgeTimeout):
        return Answer(command_id, heard=False, workers=Workers.BUSY)
    if error is not None:  # no connection, say: nothing learnt
        return Answer(command_id, heard=False)
    return Answer(command_id, heard=done.result().data.get("answer") in ("held", "taken"))


@attrs.define
class WorkerWait:
    """The judgement of one attempt whose command no worker has answered yet.

    Pure: the times are the step's, on its clock (`now`, when the command was
    first sent, `began_at`, and last sent, `sent_at`). `silence` is how long
    the step waits for a first word before it sends again
    (`HEARTBEAT_MISSES` heartbeats); `bound` is the node's `worker_wait`
    (None: only the step's own `timeout` bounds the wait).
    """

    plugin: str
    silence: float
    bound: float | None
    sends: int = 1
    """Times the command was sent."""
    workers: Workers = Workers.UNKNOWN
    """What the last answer (or its absence) said of the plugin's workers."""

    def interval(self) -> float:
        """Seconds from the last send to the next: `silence`, doubled at each send,
        up to `RESEND_MAX` (or `silence`, if longer)."""
        cap = max(RESEND_MAX, self.silence)
        return min(cap, self.silence * float(2 ** min(self.sends - 1, 16)))

    def send_due(self, now: float, sent_at: float) -> bool:
        return now - sent_at >= self.interval()

    def waiting(self, now: float, began_at: float) -> bool:
        """True once no worker answered for `silence`: the step waits for a worker."""
        return now - began_at >= self.silence

    def expired(self, now: float, began_at: float) -> bool:
        return self.bound is not None and now - began_at >= self.bound

    def failure(self, step: str, waited: float) -> NoWorker:
        """The error of an attempt that waited `waited` seconds, past its bound."""
        took = f"in {_duration(waited)} (worker_wait {_duration(self.bound)})"
        if self.workers is Workers.NONE:
            why = (f"no worker of plugin {self.plugin!r} is running (start one: "
                   f"`noetl worker --plugin {self.plugin}`, or a node that runs it)")
        elif self.workers is Workers.BUSY:
            why = f"workers of plugin {self.plugin!r} are running, but none took it (busy?)"
        else:
            why = f"no worker of plugin {self.plugin!r} answered"
        return NoWorker(f"no worker took the command of step {step!r} {took}: {why}",
                        plugin=self.plugin)

    def describe(self, since: float) -> dict[str, Any]:
        """The waiting step in its workflow's report (`RunReport.waiting`); `since` is
        when the command was first sent, in wall-clock seconds."""
        return {"plugin": self.plugin, "workers": self.workers.value, "since": since}


class WaitingSteps:
    """A node's steps that wait for a worker, by plugin; and how long they may wait.

    Thread-safe. Steps add themselves when they start waiting and discard
    themselves when they hear of a worker or end; `ready(plugin)` (a worker
    of it started) tells each of that plugin's a `SendNow`.
    """

    def __init__(self, *, bound: float | None = DEFAULT_WORKER_WAIT) -> None:
        self.bound = bound
        """Seconds a step waits for a worker at most (the node's `worker_wait`)."""
        self._lock = threading.Lock()
        self._steps: dict[pykka.ActorRef[Any], str] = {}

    def add(self, plugin: str, ref: pykka.ActorRef[Any]) -> None:
        with self._lock:
            self._steps[ref] = plugin

    def discard(self, ref: pykka.ActorRef[Any]) -> None:
        with self._lock:
            self._steps.pop(ref, None)

    def waiting(self) -> dict[str, int]:
        """How many steps wait, by plugin."""
        with self._lock:
            counts: dict[str, int] = {}
            for plugin in self._steps.values():
                counts[plugin] = counts.get(plugin, 0) + 1
            return counts

    def tell(self, delivery: Delivery) -> None:
        """A worker's announcement on ``noetl.ready.<plugin>`` (a subscription's mailbox;
        on the bridge's loop thread)."""
        self.ready(delivery.subject.rsplit(".", 1)[-1])

    def ready(self, plugin: str) -> None:
        """A worker of `plugin` started: its waiting steps send their commands now."""
        with self._lock:
            refs = [ref for ref, wanted in self._steps.items() if wanted == plugin]
        for ref in refs:
            tell_if_alive(ref, SendNow())


def _duration(seconds: float | None) -> str:
    """``4.2s``, ``10m``, ``1m30s``."""
    if seconds is None:
        return "none"
    if seconds >= 60:
        minutes, rest = divmod(round(seconds), 60)
        return f"{minutes}m{rest:02d}s" if rest else f"{minutes}m"
    return f"{seconds:.1f}s"
