"""`PluginWorker`: takes one plugin's commands from NATS and runs them.

Every worker of a plugin, on any node, is in the same queue group on
``command.<plugin>.>``, so each command goes to one of them. A worker claims
the attempt's id before it runs it (a command sent again, or delivered
again, is then never run twice), runs the attempt with the runner the
command asks for and sends a final `succeeded` or `failed`. An instant
plugin's command is run right on the bridge's loop thread, where it arrives
(`_run_on_loop`), when claims need no network.

Most attempts end within a millisecond or two, so the worker says nothing
else about them: the final event is the whole story. It sends `accepted`
when a command has to wait in its queue (`max_in_flight` attempts run), and
`accepted` (unless sent) and `started` once an attempt has run for
`ANNOUNCE_AFTER` seconds; from then on a `heartbeat` every `heartbeat`
seconds (or as often as a command asks, if that is more often), until the
final event.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Mapping
from typing import Any, Protocol, cast

import attrs

from noetl_actors.bridge import Bridge, Delivery
from noetl_actors.errors import MalformedMessage, NoetlError
from noetl_actors.runners import (
    Attempt,
    InprocRunner,
    InstantRunner,
    Outcome,
    PluginInfo,
    Runner,
    RunningAttempt,
)
from noetl_actors.runtime import Cancel, Command, Event, EventStatus, cancel_subject
from noetl_actors.services._lease import LeaseRecord
from noetl_actors.supervision import Clock, SupervisedActor, TimerHandle, tell_if_alive

__all__ = ["CLAIMS_BUCKET", "BucketClaims", "Claims", "LocalClaims", "PluginWorker"]

CLAIMS_BUCKET = "noetl-claims"
CLAIMS_TTL = 24 * 3600.0
"""Seconds a claim is kept: far longer than a command is ever sent again."""

INPROC = InprocRunner.name

LOOP_CPU_BUDGET = 0.01
LOOP_WALL_BUDGET = 0.25
LOOP_STRIKES = 3
"""What an instant plugin may take on the bridge's loop thread: seconds of CPU, and
seconds in all (one that sleeps or waits on I/O). One that takes more `LOOP_STRIKES`
times in a row (marked instant, but it is not) has its later commands run on the
worker's own thread: while it runs on the loop, the node's NATS connection handles
nothing else. Wall time alone would count the waits for the GIL of a busy process
(milliseconds), and one slow run may be a garbage collection (~100 ms seen)."""

ANNOUNCE_AFTER = 0.05
"""Seconds an attempt runs before its worker says `started` (at most half a heartbeat).

Until then its step hears nothing (it takes silence for a lost worker only
after three heartbeats); an attempt that ends sooner sends its final event only.
"""

MIN_HEARTBEAT = 0.05
"""Seconds: the shortest heartbeat a command can ask of a worker."""

logger = logging.getLogger("noetl_actors.services")


class Claims(Protocol):
    """Who runs which attempt: `claim(command)` is True for exactly one caller per attempt,
    and only while the command's sender owns its workflow (see `BucketClaims`)."""

    local: bool
    """True when `claim` answers without I/O (it may run on the bridge's loop thread)."""

    def claim(self, command: Command) -> bool: ...


class LocalClaims:
    """Claims kept in this process (the last `size` ids), shared by its workers.

    Enough while every worker of the node's NATS is in this process (an
    embedded server); with other workers about, use `BucketClaims`.
    """

    local = True

    def __init__(self, size: int = 100_000) -> None:
        self._size = size
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def claim(self, command: Command) -> bool:
        with self._lock:
            if command.id in self._seen:
                return False
            self._seen[command.id] = None
            if len(self._seen) > self._size:
                self._seen.popitem(last=False)
            return True


class BucketClaims:
    """Claims kept in a JetStream key-value bucket: one owner per attempt across every
    worker on this NATS, whatever process or node it runs in. One round trip each, and
    one more for a fenced command (one from a served node: its epoch is not 0).

    A fenced command is claimed, then its workflow's lease is read, in the same call:
    a command whose epoch is not the lease's (a former owner's, sent after it lost
    the workflow) is refused, and its claim released so the owner now can send that
    attempt. Claim first, then read: a stale command claimed after the new owner
    listed the workflow's claims is read after the takeover (docs/durability.md).
    """

    local = False

    def __init__(self, bridge: Bridge, bucket: str = CLAIMS_BUCKET, *,
                 leases: str | None = None) -> None:
        self._bridge = bridge
        self._bucket = bucket
        self._leases = leases

    def claim(self, command: Command) -> bool:
        if self._leases is None or command.epoch == 0:
            return self._bridge.claim(self._bucket, command.id)
        claimed, entry = self._bridge.claim_then_read(self._bucket, command.id, self._leases,
                                                      command.workflow_id)
        if not claimed:
            return False
        lease = LeaseRecord.from_data(entry.data) if entry is not None else None
        if lease is not None and lease.epoch == command.epoch:
            return True
        now = f"epoch {lease.epoch} (node {lease.owner})" if lease else "no lease (it ended)"
        logger.warning("refused %s: sent by the owner of epoch %d; workflow %s has %s",
                       command.id, command.epoch, command.workflow_id, now)
        try:
            self._bridge.bucket(self._bucket).delete(command.id)
        except NoetlError as error:
            logger.warning("could not release the claim of %s: %s", command.id, error)
        return False


@attrs.frozen
class _Finished:
    command: Command
    outcome: Outcome


@attrs.frozen
class _Beat:
    pass


@attrs.frozen
class _Announce:
    pass


@attrs.define(eq=False)
class _Running:
    """An attempt this worker runs, and what it has said about it so far."""

    command: Command
    attempt: RunningAttempt
    since: float
    accepted: bool
    """`accepted` was sent (the command waited in the queue)."""
    announced: bool = False
    """`started` was sent: heartbeats follow."""


class PluginWorker(SupervisedActor):
    """Runs the commands of one plugin, at most `max_in_flight` at a time."""

    def __init__(
        self,
        plugin: PluginInfo,
        *,
        bridge: Bridge,
        runners: Mapping[str, Runner],
        claims: Claims,
        clock: Clock,
        max_in_flight: int = 64,
        heartbeat: float = 1.0,
    ) -> None:
        super().__init__()
        self.plugin = plugin
        self._bridge = bridge
        self._runners = runners
        self._claims = claims
        self._clock = clock
        self._max_in_flight = max_in_flight
        self._heartbeat = heartbeat
        self._running: dict[str, _Running] = {}
        self._waiting: deque[Command] = deque()
        self._timer: TimerHandle | None = None
        self._timer_due = 0.0
        self._announce_timer: TimerHandle | None = None
        self._announce_after = min(ANNOUNCE_AFTER, heartbeat / 2)
        self._on_loop_ok = True
        """False once an instant plugin took more than `LOOP_*_BUDGET` on the loop
        `LOOP_STRIKES` times in a row (`_slow_on_loop`)."""
        self._slow_on_loop = 0
        self.name = f"{socket.gethostname()}/{plugin.name}"

    def on_start(self) -> None:
        self.name = f"{socket.gethostname()}{self.path}"
        prefix = f"command.{self.plugin.name}.>"
        on_loop = self._run_on_loop if self._runs_on_loop() else None
        self._bridge.subscribe(prefix, self.actor_ref, queue=f"workers-{self.plugin.name}",
                               on_loop=on_loop)
        self._bridge.subscribe(cancel_subject(self.plugin.name), self.actor_ref)

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Delivery):
            if message.subject.startswith("command."):
                self._on_command(message)
            else:
                self._on_cancel(message)
        elif isinstance(message, _Finished):
            self._finish(message.command, message.outcome)
        elif isinstance(message, _Beat):
            self._beat()
        elif isinstance(message, _Announce):
            self._announce()
        else:
            return super().on_receive(message)
        return None

    def _on_command(self, delivery: Delivery) -> None:
        try:
            command = Command.from_data(delivery.data)
        except MalformedMessage as error:
            logger.warning("%s: dropped a malformed command on %s: %s",
                           self.path, delivery.subject, error)
            return
        try:
            claimed = self._claims.claim(command)
        except NoetlError as error:
            logger.warning("%s: could not claim %s (%s); its step will send it again",
                           self.path, command.id, error)
            return
        if not claimed:
            return  # sent or delivered again: whoever claimed it runs it
        if len(self._running) >= self._max_in_flight:
            self._send(command, EventStatus.ACCEPTED)  # it waits: say it is taken
            self._waiting.append(command)
            self._arm()
            return
        self._run(command, accepted=False)

    # -- instant plugins, on the bridge's loop ------------------------------------

    def _runs_on_loop(self) -> bool:
        return (self.plugin.instant and self._claims.local
                and isinstance(self._runners.get(INPROC), InstantRunner))

    def _run_on_loop(self, delivery: Delivery) -> bool:
        """Run an instant plugin's command on the bridge's loop thread; False: not one.

        An `instant` plugin on the inproc runner, claimed in process, ends
        within microseconds and waits on nothing: run where the command
        arrives, its event leaves with the loop's next write, with no hop to
        this worker's thread and back (in a sequence of steps, the largest
        part of a step's latency). It touches nothing the worker's own thread
        changes (`_running`, `_waiting`), so the two never race.
        """
        try:
            command = Command.from_data(delivery.data)
        except MalformedMessage:
            return False  # the worker says why
        if (command.runner or self.plugin.runner) != INPROC or not self._on_loop_ok \
                or not self.actor_ref.is_alive():
            return False
        if not self._claims.claim(command):
            return True  # sent or delivered again: whoever claimed it runs it
        cpu, wall = time.thread_time(), time.monotonic()
        try:
            runner = cast(InstantRunner, self._runners[INPROC])  # _runs_on_loop() checked
            outcome = runner.run_now(self.plugin, _attempt(command))
        except Exception as error:  # claimed: the worker's thread would drop it; say so
            logger.exception("%s: could not run %s", self.path, command.id)
            self._send(command, EventStatus.FAILED, error_type="crash",
                       error_message=f"could not start: {error!r}")
            return True
        self._report(command, outcome)
        cpu, wall = time.thread_time() - cpu, time.monotonic() - wall
        slow = cpu > LOOP_CPU_BUDGET or wall > LOOP_WALL_BUDGET
        self._slow_on_loop = self._slow_on_loop + 1 if slow else 0
        if self._slow_on_loop >= LOOP_STRIKES:
            self._on_loop_ok = False
            logger.warning("%s: plugin %r is marked instant but took %.1f ms (%.1f ms of "
                           "CPU) on the NATS loop, %d times in a row; its commands now run "
                           "on the worker's thread", self.path, self.plugin.name, wall * 1e3,
                           cpu * 1e3, LOOP_STRIKES)
        return True

    # -- running -------------------------------------------------------------------

    def _start(self, command: Command) -> RunningAttempt | None:
        """Start the attempt with the runner it asks for; None (and `failed` sent) if none can."""
        mode = command.runner or self.plugin.runner
        runner = self._runners.get(mode)
        try:
            if runner is None:
                raise ValueError(f"this node has no {mode} runner")
            return runner.start(self.plugin, _attempt(command))
        except (ValueError, RuntimeError) as error:
            self._send(command, EventStatus.FAILED, error_type="crash",
                       error_message=f"could not start: {error}")
            return None

    def _run(self, command: Command, *, accepted: bool) -> None:
        running = self._start(command)
        if running is None:
            return
        outcome = running.wait(0)
        if outcome is not None:  # it ended in start() (an instant plugin): no hop
            self._finish(command, outcome)
            return
        self._running[command.id] = _Running(command, running, self._clock.now(), accepted)
        ref = self.actor_ref
        running.add_done_callback(lambda outcome: tell_if_alive(ref, _Finished(command, outcome)))
        self._arm_announce(self._announce_after)
        self._arm()

    def _finish(self, command: Command, outcome: Outcome) -> None:
        self._running.pop(command.id, None)
        self._report(command, outcome)
        while self._waiting and len(self._running) < self._max_in_flight:
            self._run(self._waiting.popleft(), accepted=True)

    def _report(self, command: Command, outcome: Outcome) -> None:
        if outcome.ok:
            self._send(command, EventStatus.SUCCEEDED, output=outcome.output)
        else:
            self._send(command, EventStatus.FAILED, error_type=outcome.error_type,
                       error_message=outcome.message)

    def _on_cancel(self, delivery: Delivery) -> None:
        try:
            cancel = Cancel.from_data(delivery.data)
        except MalformedMessage:
            return
        entry = self._running.get(cancel.command_id)
        if entry is not None:
            entry.attempt.cancel()
        self._waiting = deque(c for c in self._waiting if c.id != cancel.command_id)

    def _arm(self) -> None:
        """Beat at the shortest heartbeat its commands ask for (their step takes three
        missed for a lost worker), never slower than this worker's own."""
        commands = [entry.command for entry in self._running.values()] + list(self._waiting)
        if not commands:
            return
        asked = [c.heartbeat for c in commands
                 if isinstance(c.heartbeat, (int, float)) and c.heartbeat > 0]
        every = max(min([self._heartbeat, *asked]), MIN_HEARTBEAT)
        due = self._clock.now() + every
        if self._timer is not None:
            if due >= self._timer_due:
                return
            self._timer.cancel()
        ref = self.actor_ref
        self._timer_due = due
        self._timer = self._clock.call_later(every, lambda: tell_if_alive(ref, _Beat()))

    def _beat(self) -> None:
        self._timer = None
        for entry in list(self._running.values()):
            if entry.announced and entry.attempt.alive():
                self._send(entry.command, EventStatus.HEARTBEAT)
        for command in self._waiting:  # queued, not lost: its step must not give up
            self._send(command, EventStatus.HEARTBEAT)
        self._arm()

    def _arm_announce(self, delay: float) -> None:
        if self._announce_timer is not None:
            return
        ref = self.actor_ref
        self._announce_timer = self._clock.call_later(
            delay, lambda: tell_if_alive(ref, _Announce()))

    def _announce(self) -> None:
        """Say `accepted` and `started` of the attempts that have run `ANNOUNCE_AFTER` seconds."""
        self._announce_timer = None
        now = self._clock.now()
        next_due: float | None = None
        for entry in list(self._running.values()):
            if entry.announced or not entry.attempt.alive():
                continue
            due = entry.since + self._announce_after
            if due > now:
                next_due = due if next_due is None else min(next_due, due)
                continue
            if not entry.accepted:
                self._send(entry.command, EventStatus.ACCEPTED)
                entry.accepted = True
            self._send(entry.command, EventStatus.STARTED)
            entry.announced = True
        if next_due is not None:
            self._arm_announce(next_due - now)

    def _send(self, command: Command, status: EventStatus, **fields: Any) -> None:
        event = Event(command_id=command.id, workflow_id=command.workflow_id,
                      step_id=command.step_id, attempt=command.attempt, status=status,
                      worker=self.name, **fields)
        # An end on a shared NATS must reach the stream through an outage: an id the
        # stream stores once, and sent again if the outage may have swallowed it.
        durable = status.final and not self._claims.local
        self._bridge.publish(command.event_subject, event.to_data(),
                             msg_id=f"end:{command.id}" if durable else None)

    def on_stop(self) -> None:
        for timer in (self._timer, self._announce_timer):
            if timer is not None:
                timer.cancel()
        for entry in self._running.values():
            entry.attempt.cancel()


def _attempt(command: Command) -> Attempt:
    return Attempt(
        command_id=command.id, workflow_id=command.workflow_id, task=command.task,
        step=command.step, number=command.attempt, plugin=command.plugin,
        input=command.input, timeout=command.timeout,
    )
