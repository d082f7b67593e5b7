"""Commands and events: the records that travel between step actors and workers.

A command asks a plugin to run one attempt of one step; events say what
happened to it. Both are frozen records here; `to_data()`/`from_data()` give
the JSON objects the bridge sends (it adds ``schema_version``).

    command.<plugin>.<workflow_id>.<step_id>   Command
    event.<plugin>.<workflow_id>.<step_id>     Event (accepted, started, heartbeat,
                                               succeeded, failed)
    noetl.cancel.<plugin>                      Cancel, to every worker of the plugin
    noetl.ready.<plugin>                       a worker of the plugin started (steps
                                               waiting for one send again at once)
"""

from __future__ import annotations

import enum
import functools
import re
import time
from collections.abc import Mapping
from typing import Any, TypeVar

import attrs

from noetl_actors.bridge import command_subject, event_subject
from noetl_actors.errors import MalformedMessage

__all__ = ["Cancel", "Command", "Event", "EventStatus", "cancel_subject", "iteration_name",
           "ready_subject", "split_iteration", "step_id"]

R = TypeVar("R", "Command", "Event", "Cancel")

STEP_ID_SEPARATOR = "="
"""Between task and step in a step id: no name can hold it, so ids never collide."""


def step_id(task: str, step: str) -> str:
    """``<task>=<step>``: one subject token, unique in its workflow, readable."""
    return f"{task}{STEP_ID_SEPARATOR}{step}"


def iteration_name(task: str, index: int) -> str:
    """The task name of iteration `index` of looped task `task`: ``t/3`` (its step ids
    ``t/3=<step>``: ``/`` is in no name, and valid in a subject token and a KV key)."""
    return f"{task}/{index}"


def split_iteration(name: str) -> tuple[str, int | None]:
    """``t/3`` -> (``t``, 3); a task name that is not an iteration's -> (name, None)."""
    task, slash, index = name.partition("/")
    return (task, int(index)) if slash and index.isdigit() else (name, None)


def cancel_subject(plugin: str) -> str:
    return f"noetl.cancel.{plugin}"


def ready_subject(plugin: str) -> str:
    """Where a worker says it has started (``*`` for every plugin's)."""
    return f"noetl.ready.{plugin}"


class EventStatus(enum.Enum):
    ACCEPTED = "accepted"
    """A worker took the command (it will not be run by another). Sent only when
    the command waits in the worker's queue or runs for a while: the final event
    of a short attempt says all."""
    STARTED = "started"
    """The attempt has run for a while (`ANNOUNCE_AFTER`); heartbeats follow."""
    HEARTBEAT = "heartbeat"
    """The attempt still runs; the worker sends one every `heartbeat` seconds."""
    SUCCEEDED = "succeeded"
    FAILED = "failed"

    @property
    def final(self) -> bool:
        return self in (EventStatus.SUCCEEDED, EventStatus.FAILED)


@attrs.frozen(kw_only=True)
class Command:
    """Run attempt `attempt` of step `step` of task `task` of workflow `workflow_id`.

    Its id and subjects are worked out once (they are read several times per attempt
    by its step and its worker, and a subject checks each of its tokens).
    """

    workflow_id: str
    task: str
    step: str
    attempt: int
    plugin: str
    input: Mapping[str, Any]
    runner: str | None = None
    timeout: float | None = None
    heartbeat: float = 1.0
    """Seconds between the worker's heartbeats for this attempt."""
    epoch: int = 0
    """The sending owner's lease epoch (0: a workflow no lease fences, `noetl run`'s). A
    worker refuses a command whose epoch is older than the workflow's lease."""
    kubernetes: Mapping[str, Any] | None = None
    """The step's ``kubernetes:`` settings (its Job's, over its plugin's), as written."""
    follow: int = 0
    """0: run the attempt. n > 0: its worker fell silent while it ran as a Kubernetes Job,
    and this is its step's n-th call for a worker to follow that Job (re-attach): the
    worker never creates one (docs/kubernetes.md)."""

    @functools.cached_property
    def step_id(self) -> str:
        return step_id(self.task, self.step)

    @functools.cached_property
    def id(self) -> str:
        """Unique per attempt: ``<workflow_id>.<step_id>.<attempt>``."""
        return f"{self.workflow_id}.{self.step_id}.{self.attempt}"

    @functools.cached_property
    def claim_key(self) -> str:
        """What a worker claims to run it: the attempt's `id`; a call to follow its Job
        (`follow`) is claimed apart, once per owner's epoch and call, so a live worker
        takes it whoever holds the attempt's own claim (a dead worker)."""
        if not self.follow:
            return self.id
        return f"{self.id}.follow-{self.epoch}-{self.follow}"

    @functools.cached_property
    def subject(self) -> str:
        return command_subject(self.plugin, self.workflow_id, self.step_id)

    @functools.cached_property
    def event_subject(self) -> str:
        return event_subject(self.plugin, self.workflow_id, self.step_id)

    def to_data(self) -> dict[str, Any]:
        # Spelled out: attrs.asdict walks and copies every value (the input too).
        data = {"type": "command", "command_id": self.id, "workflow_id": self.workflow_id,
                "task": self.task, "step": self.step, "attempt": self.attempt,
                "plugin": self.plugin, "input": self.input, "runner": self.runner,
                "timeout": self.timeout, "heartbeat": self.heartbeat, "epoch": self.epoch}
        if self.kubernetes:  # only when set: most commands have neither
            data["kubernetes"] = self.kubernetes
        if self.follow:
            data["follow"] = self.follow
        return data

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> Command:
        return _build(cls, data, "command")


@attrs.frozen(kw_only=True)
class Event:
    """What happened to one attempt, said by the worker that runs it."""

    command_id: str
    workflow_id: str
    step_id: str
    attempt: int
    status: EventStatus
    worker: str
    at: float = attrs.field(factory=time.time)
    output: Any = None
    error_type: str | None = None
    error_message: str = ""
    started_at: float | None = None
    """When the attempt really began to run on its worker (after any wait in the
    worker's queue); in `started`, heartbeat and final events. None: not yet, or
    a worker that does not say."""

    def to_data(self) -> dict[str, Any]:
        return {"type": "event", "command_id": self.command_id, "workflow_id": self.workflow_id,
                "step_id": self.step_id, "attempt": self.attempt, "status": self.status.value,
                "worker": self.worker, "at": self.at, "output": self.output,
                "error_type": self.error_type, "error_message": self.error_message,
                "started_at": self.started_at}

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> Event:
        fields = dict(data)
        try:
            fields["status"] = EventStatus(fields.get("status"))
        except ValueError:
            raise MalformedMessage(f"unknown event status {data.get('status')!r}") from None
        return _build(cls, fields, "event")


@attrs.frozen(kw_only=True)
class Cancel:
    """Stop running this attempt (its step timed out, or the workflow was cancelled)."""

    command_id: str
    reason: str = ""

    def to_data(self) -> dict[str, Any]:
        return {"type": "cancel", **attrs.asdict(self)}

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> Cancel:
        return _build(cls, data, "cancel")


_FIELDS: dict[type[Any], tuple[frozenset[str], tuple[str, ...]]] = {}


def _fields(cls: type[Any]) -> tuple[frozenset[str], tuple[str, ...]]:
    """A record's field names, and those without a default (in order); kept per class."""
    known = _FIELDS.get(cls)
    if known is None:
        fields = attrs.fields(cls)
        known = _FIELDS[cls] = (frozenset(f.name for f in fields),
                                tuple(f.name for f in fields if f.default is attrs.NOTHING))
    return known


def _build(cls: type[R], data: Mapping[str, Any], kind: str) -> R:
    """A record from JSON data; anything missing or extra is a MalformedMessage."""
    if data.get("type", kind) != kind:
        raise MalformedMessage(f"expected a {kind}, got a {data.get('type')!r}")
    names, required = _fields(cls)
    given = {k: v for k, v in data.items() if k in names}
    missing = sorted(name for name in required if name not in given)
    if missing:
        raise MalformedMessage(f"a {kind} without {', '.join(missing)}")
    for name, value in given.items():
        wanted = _TYPES.get(name)
        if wanted is not None and (not isinstance(value, wanted)
                                   or (isinstance(value, bool) and bool not in wanted)):
            raise MalformedMessage(f"a {kind} whose {name} is a {type(value).__name__}")
    for name in _TOKENS:
        value = given.get(name)
        if isinstance(value, str) and (not value or len(value) > 256
                                       or _NOT_IN_A_TOKEN.search(value)):
            raise MalformedMessage(f"a {kind} whose {name} is not a subject token: "
                                   f"{value[:80]!r}")
    try:
        return cls(**given)
    except (TypeError, ValueError) as error:
        raise MalformedMessage(f"a malformed {kind}: {error}") from None


_NUMBER = (int, float)
_TYPES: dict[str, tuple[type, ...]] = {
    "workflow_id": (str,), "task": (str,), "step": (str,), "plugin": (str,),
    "attempt": (int,), "epoch": (int,), "input": (dict,), "runner": (str, type(None)),
    "timeout": (*_NUMBER, type(None)), "heartbeat": _NUMBER, "command_id": (str,),
    "step_id": (str,), "worker": (str,), "at": _NUMBER, "error_type": (str, type(None)),
    "error_message": (str,), "started_at": (*_NUMBER, type(None)), "reason": (str,),
}
"""The JSON type of each field a command, event or cancel reads (a forged message
with a list for its attempt, say, is malformed, not a crash further on)."""
_TOKENS = ("workflow_id", "task", "step", "plugin", "step_id")
_NOT_IN_A_TOKEN = re.compile(r"[.*>\s]")
"""What a subject token cannot hold (`check_token`)."""
