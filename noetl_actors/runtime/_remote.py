"""Steps over NATS: the step actor sends a command and waits for events.

One attempt: render the input, listen on the step's event subject, publish
the command, then wait. A worker answers `succeeded` or `failed`; an
attempt that waits in the worker's queue or runs for a while gets
`accepted` and `started` first, then a `heartbeat` every few seconds. The attempt ends
abnormally (and the task's supervisor decides) when it fails, when it runs
past its `timeout`, or when its worker falls silent for `HEARTBEAT_MISSES`
heartbeats (killed, say; silence while NATS is away does not count: see
`_outage`). A command no worker has answered yet is not lost: the step
waits for a worker of its plugin, sending it again now and then, as long as
its `timeout` and the node's `worker_wait` allow (`_waiting`). Events of
other attempts of the same step (late ones) are ignored.

On a node that owns the workflow through a lease (see docs/durability.md) a
step sends only while its `Fence` allows: a node paused past its lease sends
nothing until it has renewed it, and a node that lost it sends nothing more.
An adopted attempt (one the workflow's previous owner sent, taken over) is
not sent again: the step waits for its worker's events, and takes silence
for a lost worker as for any attempt.

A step run as a Kubernetes Job (`runner: kubernetes`) outlives its worker:
the Job runs on in the cluster. So its worker's silence is not a lost
attempt at once: the step calls for a worker to follow the Job (the same
command, the same attempt, with `follow` set; up to `FOLLOW_CALLS` times),
and whichever worker takes it follows that Job, or takes its result if it
ended, and never creates a second one (docs/kubernetes.md). This is also how
a new owner re-attaches to the Jobs of the attempts it adopted.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import attrs

from noetl_actors.bridge import Bridge
from noetl_actors.errors import (
    NoetlError,
    StepFailed,
    StepTimeout,
    TemplateError,
    WorkerLost,
)
from noetl_actors.playbook import Runner, render_value
from noetl_actors.runtime._log_fields import command_fields
from noetl_actors.runtime._messages import Cancel, Command, Event, EventStatus, cancel_subject
from noetl_actors.runtime._router import EventRouter, _Tick
from noetl_actors.runtime._step import UNFENCED, Fence, StepAttempt, StepDone, StepFactory
from noetl_actors.runtime._waiting import (
    Answer,
    SendNow,
    WaitingSteps,
    Workers,
    WorkerWait,
    answer_of,
)
from noetl_actors.supervision import (
    ExitKind,
    ExitReason,
    SupervisedActor,
    tell_if_alive,
)

__all__ = ["RemoteStepActor", "remote_steps"]

logger = logging.getLogger("noetl_actors.runtime")

HEARTBEAT_MISSES = 3
"""Heartbeats a step waits for before it takes its worker for lost."""
RENDER_NOTICED = 0.05
"""Seconds of rendering a step's `with:` that its timeout counts (less: as good as none)."""
FOLLOW_CALLS = 3
"""Times a Kubernetes step whose worker fell silent calls for another to follow its Job
before it takes the attempt for lost."""


READ_UP_TIMEOUT = 10.0
"""Seconds the least a step waits for the round trip that precedes its judgement of a
silent worker (`RemoteStepActor._read_up`) before it tries again."""


@attrs.frozen
class _ReadUp:
    """Told to a step once its node has read all NATS had sent it (or could not: `ok`)."""

    ok: bool


@attrs.frozen
class _Failed:
    """Told to itself by a step whose start could not send its command."""

    error: Exception


def remote_steps(bridge: Bridge, *, workflow_id: str, router: EventRouter,
                 fence: Fence = UNFENCED, waiting: WaitingSteps | None = None) -> StepFactory:
    """Step actors that run their plugin through NATS workers.

    `router` must be subscribed to the workflow's events (see `subscribe_router`);
    it also ticks the steps, every half of its `heartbeat`. `fence` is the
    node's lease on the workflow (none: no other node can take it over).
    `waiting` is the node's steps that wait for a worker, and how long they
    may (none: a registry of their own, with the default `worker_wait`).
    """
    waiting = waiting if waiting is not None else WaitingSteps()
    return lambda attempt: RemoteStepActor(
        attempt, bridge=bridge, router=router, workflow_id=workflow_id, fence=fence,
        waiting=waiting,
    )


class RemoteStepActor(SupervisedActor):
    """One attempt of one step, run by whichever worker of its plugin takes it.

    Hosted: it runs on its task's thread, its workflow's (no thread of its own).
    Every handler returns at once: it renders and publishes, then waits for
    its worker's events and its router's ticks as messages.
    """

    hosted = True

    def __init__(
        self, attempt: StepAttempt, *, bridge: Bridge, router: EventRouter, workflow_id: str,
        fence: Fence = UNFENCED, waiting: WaitingSteps | None = None,
    ) -> None:
        super().__init__()
        self.step = attempt.step
        self.attempt = attempt.number
        self._task = attempt.task
        self.task_name = attempt.task_name
        self._context = attempt.context
        self._clock = attempt.clock
        self._bridge = bridge
        self._router = router
        self._workflow_id = workflow_id
        self._fence = fence
        self._adopted = attempt.adopted
        self._unsent = False
        """The command waits for the fence to allow it (the node's lease to be renewed)."""
        self._heartbeat = router.heartbeat
        self._command: Command | None = None
        self._began_at = 0.0
        """When the command was first sent: the step's `timeout` counts from here."""
        self._waited_from = 0.0
        """When it began to wait for a worker: its first send, or its last call to follow
        its Job; `worker_wait` counts from here."""
        self._follows = 0
        """Calls for a worker to follow its Job (its worker fell silent)."""
        self._reading_up = False
        """A round trip before judging its silent worker is under way (`_read_up`)."""
        self._sent_at = 0.0
        """When it was last sent (sent again while no worker answers)."""
        self._heard_at: float | None = None
        self._finished = False
        self._waiting = waiting if waiting is not None else WaitingSteps()
        self._wait: WorkerWait | None = None
        """Set while no worker has answered the command: the step waits for one."""
        self._shown_waiting = False

    def on_start(self) -> None:
        # Begun here, not in a message to itself (a turn of its own, per step). A
        # failure (its input does not render) is raised from its first message: a
        # crash, as any failure of an attempt, not a failed start that would fail
        # its task's start, and so on up to `node.run()`.
        try:
            self._begin()
        except Exception as error:
            self.actor_ref.tell(_Failed(error))

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Event):
            self._on_event(message)
        elif isinstance(message, _Tick):
            self._on_tick()
        elif isinstance(message, Answer):
            self._on_answer(message)
        elif isinstance(message, SendNow):
            if self._wait is not None and self._heard_at is None and self._fence.allows():
                self._send_again()
        elif isinstance(message, _ReadUp):
            self._on_read_up(message)
        elif isinstance(message, _Failed):
            raise message.error
        else:
            return super().on_receive(message)
        return None

    def _begin(self) -> None:
        # Rendering counts in the step's timeout: it is stopped when the timeout
        # comes, and the worker has what is left of it.
        rendering = self._clock.now()
        inputs = render_value(dict(self.step.with_), {**self._context, "attempt": self.attempt},
                              timeout=self.step.timeout)
        timeout, rendered = self.step.timeout, self._clock.now() - rendering
        began: float | None = None  # as good as no rendering: counted from the send
        if rendered >= RENDER_NOTICED:
            began = rendering
            if timeout is not None:
                timeout = max(round(timeout - rendered, 3), 0.001)
        command = Command(
            workflow_id=self._workflow_id, task=self.task_name, step=self.step.name,
            attempt=self.attempt, plugin=self.step.plugin, input=inputs,
            runner=self.step.runner.value if self.step.runner else None,
            timeout=timeout, heartbeat=self._heartbeat, epoch=self._fence.epoch,
            kubernetes=dict(self.step.kubernetes) or None,
        )
        self._command = command
        self._router.register(command.step_id, self.actor_ref)
        if self._adopted:  # its worker (if alive) runs it: wait to hear from it
            self._sent_at = self._began_at = self._clock.now()
            self._heard_at = self._sent_at
            return
        try:
            self._send()  # encodes the command: the one place a bad input shows
        except (TypeError, ValueError) as error:
            raise TemplateError(f"the rendered input of step {self.step.name!r} is not "
                                f"JSON: {error}") from None
        self._began_at = self._sent_at if began is None else began
        self._waited_from = self._sent_at
        self._wait = WorkerWait(plugin=self.step.plugin, bound=self._waiting.bound,
                                silence=self._heartbeat * HEARTBEAT_MISSES)

    def _send(self) -> None:
        assert self._command is not None
        self._sent_at = self._clock.now()
        self._unsent = not self._fence.allows()
        if not self._unsent:
            self._bridge.publish(self._command.subject, self._command.to_data())

    def _on_event(self, event: Event) -> None:
        if self._command is None or event.command_id != self._command.id:
            return  # a late event of an earlier attempt
        self._heard_at = self._clock.now()
        self._stop_waiting()
        if event.status is EventStatus.SUCCEEDED:
            self._finished = True
            self._task.tell(StepDone(self.step.name, event.output))
            self.exit_with(ExitReason(ExitKind.NORMAL, path=self.path))  # after this message
        elif event.status is EventStatus.FAILED:
            self._finished = True
            raise StepFailed(event.error_message or "the plugin failed",
                             error_type=event.error_type or "PluginError")

    def _on_tick(self) -> None:
        if not self._fence.allows():
            return  # the node may not act for the workflow now: judge nothing either
        if self._unsent:
            self._send()
            self._began_at = self._sent_at
            return
        now = self._clock.now()
        timeout = self.step.timeout
        if timeout is not None and now - self._began_at >= timeout:
            raise StepTimeout(f"step {self.step.name!r} ran past its timeout of {timeout:g}s")
        if self._silent(now):
            self._read_up()
            return
        if self._heard_at is None and self._wait is not None:
            self._wait_for_worker(now)

    # -- its worker fell silent ----------------------------------------------------------

    def _silent(self, now: float) -> bool:
        """Its worker has sent nothing for `HEARTBEAT_MISSES` heartbeats (as far as this
        node has read)."""
        return (self._heard_at is not None
                and self._silence(now) > self._heartbeat * HEARTBEAT_MISSES)

    def _read_up(self) -> None:
        """Before it takes its worker for lost, make sure this node has read all that
        NATS sent it: a node too busy to read its socket had heartbeats waiting there
        (845 of 10,000 `sleep` steps started at once were taken for lost). Its worker's
        events read before the round trip's answer are in this actor's mailbox before
        `_ReadUp`, which judges again."""
        if self._reading_up:
            return
        self._reading_up = True
        ref = self.actor_ref
        try:
            future = self._bridge.read_up_soon(
                timeout=max(self._heartbeat * HEARTBEAT_MISSES, READ_UP_TIMEOUT))
        except NoetlError:
            self._reading_up = False
            return  # judged again at the next tick
        future.add_done_callback(
            lambda done: tell_if_alive(ref, _ReadUp(done.exception() is None)))

    def _on_read_up(self, read_up: _ReadUp) -> None:
        self._reading_up = False
        if not read_up.ok or self._finished or not self._fence.allows():
            return  # NATS did not answer (its outage says why): judged at a later tick
        now = self._clock.now()
        if not self._silent(now):
            return  # its worker's events were waiting to be read
        assert self._heard_at is not None
        if self.step.runner is Runner.KUBERNETES and self._follows < FOLLOW_CALLS:
            self._call_to_follow()
            return
        raise WorkerLost(f"the worker running step {self.step.name!r} sent nothing "
                         f"for {now - self._heard_at:.1f}s (heartbeat {self._heartbeat:g}s)")

    def _call_to_follow(self) -> None:
        """Its worker fell silent while its Job may run on: send the command again, as a
        call to follow that Job, and wait for a worker to take it as for a first send."""
        assert self._command is not None
        self._follows += 1
        self._command = attrs.evolve(self._command, follow=self._follows)
        logger.info("%s: the worker of attempt %d fell silent; calling for a worker to "
                    "follow its Kubernetes Job (call %d of %d)", self.path, self.attempt,
                    self._follows, FOLLOW_CALLS, extra=command_fields(self._command))
        self._heard_at = None
        self._send()
        self._waited_from = self._sent_at
        self._wait = WorkerWait(plugin=self.step.plugin, bound=self._waiting.bound,
                                silence=self._heartbeat * HEARTBEAT_MISSES)

    # -- no worker has answered yet (`_waiting`) ---------------------------------------

    def _wait_for_worker(self, now: float) -> None:
        """Wait for a worker, sending the command again now and then; or give up."""
        assert self._wait is not None
        since = self._router.silence_start(self._waited_from)  # NATS away: no judgement
        if since is not None and self._wait.expired(now, since):
            raise self._wait.failure(self.step.name, now - self._waited_from)
        if not self._shown_waiting and self._wait.waiting(now, self._waited_from):
            self._shown_waiting = True
            self._waiting.add(self.step.plugin, self.actor_ref)
            self._show_waiting()
        if self._wait.send_due(now, self._sent_at):
            self._send_again()

    def _send_again(self) -> None:
        """Send the command again (the same attempt id, run once), as a request: what
        answers says whether a worker has it (an `Answer`)."""
        assert self._command is not None and self._wait is not None
        self._wait.sends += 1
        self._sent_at = self._clock.now()
        ref, command_id = self.actor_ref, self._command.id
        try:
            answer = self._bridge.request_soon(self._command.subject, self._command.to_data(),
                                               timeout=self._wait.silence)
        except NoetlError:
            return  # sent again at the next interval
        answer.add_done_callback(lambda done: tell_if_alive(ref, answer_of(command_id, done)))

    def _on_answer(self, answer: Answer) -> None:
        if (self._wait is None or self._command is None or self._heard_at is not None
                or answer.command_id != self._command.id):
            return  # an answer to an earlier send, or the worker has spoken since
        if answer.heard:  # a worker holds it: wait for its events, as for any attempt
            self._heard_at = self._clock.now()
            self._stop_waiting()
        elif answer.workers not in (Workers.UNKNOWN, self._wait.workers):
            self._wait.workers = answer.workers
            if self._shown_waiting:
                self._show_waiting()

    def detail(self) -> dict[str, Any] | None:
        """While it waits for a worker: what for (`noetl tree`, the console)."""
        wait, began = self._wait, self._waited_from
        if not self._shown_waiting or wait is None:
            return None
        return {"waiting": wait.describe(time.time() - (self._clock.now() - began))}

    def _show_waiting(self) -> None:
        assert self._command is not None and self._wait is not None
        since = time.time() - (self._clock.now() - self._waited_from)
        self._router.waiting(self._command.step_id, self.attempt, self._wait.describe(since))

    def _stop_waiting(self) -> None:
        if self._shown_waiting and self._command is not None:
            self._shown_waiting = False
            self._waiting.discard(self.actor_ref)
            self._router.waiting(self._command.step_id, self.attempt, None)

    def _silence(self, now: float) -> float:
        """How long its worker has said nothing, counted only while this node's link to
        NATS is up, from a margin after it came back (`_outage`)."""
        assert self._heard_at is not None
        since = self._router.silence_start(self._heard_at)
        return 0.0 if since is None else now - since

    def _release(self) -> None:
        self._stop_waiting()
        if self._command is not None:
            self._router.unregister(self._command.step_id, self.actor_ref)
        if self._command is not None and not self._finished and not self._fence.lost:
            cancel = Cancel(command_id=self._command.id, reason="the step ended")
            try:
                self._bridge.publish(cancel_subject(self.step.plugin), cancel.to_data())
            except NoetlError:
                logger.warning("%s: could not send the cancel of its attempt", self.path,
                               extra=command_fields(self._command))

    def on_stop(self) -> None:
        self._release()

    def on_failure(self, *_exc_info: Any) -> None:
        self._release()
