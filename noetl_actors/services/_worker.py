"""`PluginWorker`: takes one plugin's commands from NATS and runs them.

Every worker of a plugin, on any node, is in the same queue group on
``command.<plugin>.>``, so each command goes to one of them. A worker claims
the attempt's id before it runs it (a command sent again, or delivered
again, is then never run twice; `_unclaimed` says which need not), runs the
attempt with the runner the command asks for and sends a final `succeeded`
or `failed`.

Commands are taken in on the bridge's loop thread, as they arrive
(`_arrived`): decoded, dropped at once if this worker has seen the attempt
already (no round trip for a command sent again), and claimed without
waiting (`Claims.claim`: many claims in flight at once). Only a claimed
command goes on to the worker's own thread; an instant plugin's is run
right where its claim is settled, on the loop (`_run_here`). A worker that
waited out one claim round trip per command on its own thread fell behind
a burst of commands, and their steps, hearing nothing, took them for lost.

A command sent again is a request (its step heard nothing yet): the worker
answers it as soon as its claim is settled, ``held`` (this worker has it),
``taken`` (another claim has it) or ``refused`` (a former owner's), and
says nothing if the claim could not be made (NATS did not answer).

Most attempts end within a millisecond or two, so the worker says nothing
else about them: the final event is the whole story. It sends `accepted`
when a command has to wait in its queue (`max_in_flight` attempts run), and
`accepted` (unless sent) and `started` once an attempt has run for
`ANNOUNCE_AFTER` seconds; from then on a `heartbeat` every `heartbeat`
seconds (or as often as a command asks, if that is more often), until the
final event.
"""

from __future__ import annotations

import functools
import logging
import socket
import time
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from noetl_actors._refusals import RefusalLog, short
from noetl_actors.bridge import Bridge, Delivery
from noetl_actors.errors import MalformedMessage, NoetlError
from noetl_actors.runners import (
    InprocRunner,
    InstantRunner,
    KubernetesRunner,
    KubeSettings,
    Outcome,
    PluginInfo,
    Runner,
    RunningAttempt,
)
from noetl_actors.runtime import (
    Cancel,
    Command,
    Event,
    EventStatus,
    cancel_subject,
    command_fields,
    ready_subject,
)
from noetl_actors.services._attempts import Running, StartQueue, attempt_of
from noetl_actors.services._claims import Claim, Claims
from noetl_actors.services._kube import NOT_ENABLED
from noetl_actors.services._metrics import NodeMetrics
from noetl_actors.services._outputs import MAX_OUTPUT, event_of
from noetl_actors.services._seen import SeenAttempts
from noetl_actors.supervision import Clock, SupervisedActor, TimerHandle, tell_if_alive

__all__ = ["PluginWorker"]

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
_REFUSALS = RefusalLog(logger)


@attrs.frozen
class _Finished:
    command: Command
    outcome: Outcome


@attrs.frozen
class _StartQueued:
    """Start what waits in the worker's `StartQueue`."""


@attrs.frozen
class _Beat:
    pass


@attrs.frozen
class _Announce:
    pass


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
        metrics: NodeMetrics | None = None,
        max_in_flight: int = 64,
        heartbeat: float = 1.0,
        max_output: int = MAX_OUTPUT,
    ) -> None:
        super().__init__()
        self.plugin = plugin
        self._max_output = max_output
        self._bridge = bridge
        self._runners = runners
        self._claims = claims
        self._clock = clock
        self._metrics = metrics
        self._max_in_flight = max_in_flight
        self._heartbeat = heartbeat
        self._running: dict[str, Running] = {}
        self._unannounced: deque[Running] = deque()
        """Running attempts not yet announced (`started`), in the order they started."""
        self._waiting: deque[Command] = deque()
        self._timer: TimerHandle | None = None
        self._timer_due = 0.0
        self._announce_timer: TimerHandle | None = None
        self._announce_after = min(ANNOUNCE_AFTER, heartbeat / 2)
        self._on_loop_ok = True
        """False once an instant plugin took more than `LOOP_*_BUDGET` on the loop
        `LOOP_STRIKES` times in a row (`_slow_on_loop`)."""
        self._slow_on_loop = 0
        self._seen = SeenAttempts()
        self._to_start = StartQueue()
        inproc = runners.get(INPROC)
        self._instant = inproc if plugin.instant and isinstance(inproc, InstantRunner) else None
        """The runner of an instant plugin's commands where their claim settles (checked
        once: an isinstance of a Protocol costs more than running echo)."""
        self.name = f"{socket.gethostname()}/{plugin.name}"

    def on_start(self) -> None:
        self.name = f"{socket.gethostname()}{self.path}"
        prefix = f"command.{self.plugin.name}.>"
        self._bridge.subscribe(prefix, self.actor_ref, queue=f"workers-{self.plugin.name}",
                               on_loop=self._arrived)
        self._bridge.subscribe(cancel_subject(self.plugin.name), self.actor_ref)
        if self._metrics is not None:  # read at each scrape (lengths: safe from any thread)
            self._metrics.add_worker(self.plugin.name, lambda: (len(self._waiting),
                                                                len(self._running)))
        # Steps waiting for a worker of this plugin send their commands again now.
        self._bridge.publish(ready_subject(self.plugin.name),
                             {"worker": self.name, "plugin": self.plugin.name})

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, _StartQueued):
            self._start_queued()
        elif isinstance(message, Delivery):
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

    # -- taking commands in ---------------------------------------------------------

    def _arrived(self, delivery: Delivery) -> bool:
        """On the bridge's loop thread: take a command in; False if it is not one (the
        worker's thread then says why)."""
        try:
            command = Command.from_data(delivery.data)
        except MalformedMessage:
            return False
        if not self.actor_ref.is_alive():
            return False
        self._take(command, delivery.reply)
        return True

    def _on_command(self, delivery: Delivery) -> None:
        """On the worker's thread: a delivery `_arrived` did not take."""
        try:
            command = Command.from_data(delivery.data)
        except MalformedMessage as error:
            _REFUSALS.refused(f"malformed:{self.plugin.name}", "%s: dropped a malformed "
                              "command on %s: %s", self.path, short(delivery.subject), error)
            return
        self._take(command, delivery.reply)

    def _take(self, command: Command, reply: str | None) -> None:
        """Claim `command` unless this worker saw it already; never blocks."""
        if self._claims.local:  # settled at once, and they remember: nothing to keep here
            self._claims.claim(command, functools.partial(self._settled, command, reply, ()))
            return
        key = (command.claim_key, command.epoch)
        unclaimed = self._unclaimed(command)
        sighting = self._seen.see(key, reply, settled=Claim.MINE if unclaimed else None)
        if not sighting.first:  # sent again: this worker knows who has it: no round trip
            if reply and sighting.found is not None:  # else: answered once it is settled
                self._answer(reply, sighting.found)
            return
        if unclaimed:  # as if its claim had found MINE at once: answered, and run here
            self._settled(command, reply, (), Claim.MINE)
            return
        self._claims.claim(command, functools.partial(self._claimed, command, reply))

    def _unclaimed(self, command: Command) -> bool:
        """True: `command` runs with no claim (docs/durability.md, "An idempotent plugin
        that does no work, of the worker's own node, is not claimed").

        Its plugin is idempotent (run again, it does no harm) and instant (run on
        the loop) or only waits, and its workflow's owner is this process and
        allows its epoch now: a claim would cost a round trip to stop a harmless
        second run.
        """
        return (self.plugin.idempotent and (self.plugin.waits or self._runs_here(command))
                and self._claims.owner_here(command))

    def _claimed(self, command: Command, reply: str | None, found: Claim | Exception) -> None:
        """Where a claim in NATS was settled (the loop's thread): note what it found."""
        claim = found if isinstance(found, Claim) else None
        asked = self._seen.settle((command.claim_key, command.epoch), claim)
        if claim is None:  # NATS did not answer (its error), or a bug
            _REFUSALS.refused(f"claim:{self.plugin.name}", "%s: could not claim %s (%r); its "
                              "step will send it again", self.path, short(command.id, 120), found)
            return
        self._settled(command, reply, asked, claim)

    def _settled(self, command: Command, reply: str | None, asked: Sequence[str],
                 claim: Claim | Exception) -> None:
        """Answer who asked who has the attempt; run it if it is this worker's."""
        if not isinstance(claim, Claim):
            return  # only claims in NATS fail: `_claimed` said why
        if reply:
            self._answer(reply, claim)
        for subject in asked:
            self._answer(subject, claim)
        if claim is not Claim.MINE or not self.actor_ref.is_alive():
            return  # sent or delivered again: whoever claimed it runs it
        if not self._run_here(command) and self._to_start.put(command):
            tell_if_alive(self.actor_ref, _StartQueued())

    def _answer(self, reply: str, claim: Claim) -> None:
        """Answer a command sent again: its step has heard nothing of it yet."""
        answer = {Claim.MINE: "held", Claim.TAKEN: "taken", Claim.REFUSED: "refused"}[claim]
        try:
            self._bridge.publish(reply, {"answer": answer, "worker": self.name})
        except NoetlError as error:
            logger.debug("%s: could not answer on %s: %s", self.path, reply, error)

    def _start_queued(self) -> None:
        commands, more = self._to_start.take()
        for command in commands:
            self._start_claimed(command)
        if more:  # after what else waits in the mailbox: heartbeats, ends
            tell_if_alive(self.actor_ref, _StartQueued())

    def _start_claimed(self, command: Command) -> None:
        if len(self._running) >= self._max_in_flight:
            self._send(command, EventStatus.ACCEPTED)  # it waits: say it is taken
            self._waiting.append(command)
            self._arm(command)
            return
        self._run(command, accepted=False)

    # -- instant plugins, where their claim is settled --------------------------------

    def _runs_here(self, command: Command) -> bool:
        """`command` is an instant plugin's, for the inproc runner, and such runs have
        kept within their budget on the loop (`_run_here` runs it)."""
        return (self._instant is not None and self._on_loop_ok
                and (command.runner or self.plugin.runner) == INPROC)

    def _run_here(self, command: Command) -> bool:
        """Run an instant plugin's claimed command on this thread; False: not one.

        An `instant` plugin on the inproc runner ends within microseconds and
        waits on nothing: run where its claim is settled (on the bridge's loop
        thread, where the command arrived), its event leaves with the loop's
        next write, with no hop to this worker's thread and back (in a
        sequence of steps, the largest part of a step's latency). It touches
        nothing the worker's own thread changes (`_running`, `_waiting`), so
        the two never race.
        """
        runner = self._instant
        if runner is None or not self._runs_here(command):
            return False
        cpu, wall = time.thread_time(), time.monotonic()
        try:
            outcome = runner.run_now(self.plugin, attempt_of(command))
        except Exception as error:  # claimed: nobody else would run it; say so
            logger.exception("%s: could not run %s", self.path, command.id,
                             extra=command_fields(command))
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
                raise ValueError(NOT_ENABLED if mode == KubernetesRunner.name
                                 else f"this node has no {mode} runner")
            if isinstance(runner, KubernetesRunner):
                return runner.start(self.plugin, attempt_of(command), epoch=command.epoch,
                                    settings=KubeSettings.from_mapping(command.kubernetes),
                                    follow=command.follow > 0)
            if command.follow:
                raise ValueError(f"a call to follow a Kubernetes Job, for the {mode} runner")
            return runner.start(self.plugin, attempt_of(command))
        except (ValueError, RuntimeError) as error:
            self._send(command, EventStatus.FAILED, error_type="crash",
                       error_message=f"could not start: {error}")
            return None

    def _run(self, command: Command, *, accepted: bool) -> None:
        if command.follow and command.id in self._running:
            return  # a call to follow a Job this worker follows already: it says so itself
        running = self._start(command)
        if running is None:
            return
        outcome = running.wait(0)
        if outcome is not None:  # it ended in start() (an instant plugin): no hop
            self._finish(command, outcome)
            return
        entry = Running(command, running, self._clock.now(), accepted)
        self._running[command.id] = entry
        self._unannounced.append(entry)
        ref = self.actor_ref
        running.add_done_callback(lambda outcome: tell_if_alive(ref, _Finished(command, outcome)))
        self._arm_announce(self._announce_after)
        self._arm(command)

    def _finish(self, command: Command, outcome: Outcome) -> None:
        self._running.pop(command.id, None)
        self._report(command, outcome)
        while self._waiting and len(self._running) < self._max_in_flight:
            self._run(self._waiting.popleft(), accepted=True)

    def _report(self, command: Command, outcome: Outcome) -> None:
        if self._metrics is not None:
            self._metrics.attempt_ended(self.plugin.name, outcome)
        status, fields = event_of(outcome, command.step, self._max_output)
        self._send(command, status, **fields)

    def _on_cancel(self, delivery: Delivery) -> None:
        try:
            cancel = Cancel.from_data(delivery.data)
        except MalformedMessage:
            return
        entry = self._running.get(cancel.command_id)
        if entry is not None:
            entry.attempt.cancel()
        self._waiting = deque(c for c in self._waiting if c.id != cancel.command_id)

    def _arm(self, command: Command | None = None) -> None:
        """Beat at the shortest heartbeat its commands ask for (their step takes three
        missed for a lost worker), never slower than this worker's own.

        Given a new `command`, only it is looked at (sooner, if it asks for that): a look
        at all of them per command was quadratic in a burst of 10,000; `_beat` looks at
        them all once per beat."""
        commands = [command] if command is not None else \
            [entry.command for entry in self._running.values()] + list(self._waiting)
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
                self._send(entry.command, EventStatus.HEARTBEAT,
                           started_at=entry.attempt.started_at)
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
        pending = self._unannounced  # in the order they started, so the due ones come first
        while pending:
            entry = pending[0]
            if entry.announced or not entry.attempt.alive():
                pending.popleft()
                continue
            due = entry.since + self._announce_after
            if due > now:
                next_due = due
                break
            pending.popleft()
            if not entry.accepted:
                self._send(entry.command, EventStatus.ACCEPTED)
                entry.accepted = True
            self._send(entry.command, EventStatus.STARTED, started_at=entry.attempt.started_at)
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
        if self._metrics is not None:
            self._metrics.remove_worker(self.plugin.name)

