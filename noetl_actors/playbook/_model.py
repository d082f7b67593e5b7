"""The playbook model: what a validated playbook file means.

Records only; `load_playbook()` builds them from YAML and is the only place
that checks. Supervision policies are the kernel's own `SupervisorFlags`, so
what a user writes under `supervision:` is exactly what the supervisor runs.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

import attrs

from noetl_actors.playbook._durations import format_duration
from noetl_actors.playbook._source import Problem
from noetl_actors.supervision import Backoff, Restart, Strategy, SupervisorFlags

__all__ = [
    "API_VERSION",
    "MAX_ITEMS_DEFAULT",
    "TASK_DEFAULT",
    "WORKFLOW_DEFAULT",
    "ErrorAction",
    "Loop",
    "Playbook",
    "Route",
    "Runner",
    "Step",
    "Task",
    "flags_to_dict",
]

API_VERSION = "noetl.io/v1"

TASK_DEFAULT = SupervisorFlags(strategy=Strategy.ONE_FOR_ONE, max_restarts=3, within=60.0)
"""A task retries a failed step up to 3 times in 60 s."""
WORKFLOW_DEFAULT = SupervisorFlags(strategy=Strategy.ONE_FOR_ONE, max_restarts=0, within=60.0)
"""A workflow does not restart a task that gave up: the workflow fails."""


class ErrorAction(enum.Enum):
    """What a step's error of one type leads to (`on_error:`)."""

    RESTART = "restart"
    """Let the task's supervisor restart the step (the default)."""
    STOP = "stop"
    """Stop the task, failed, without using up restarts."""
    ESCALATE = "escalate"
    """Fail the task at once, so the workflow's supervisor decides."""
    CONTINUE = "continue"
    """Record the failure and go on with the next step."""


class Runner(enum.Enum):
    INPROC = "inproc"
    PROCESS = "process"
    KUBERNETES = "kubernetes"


@attrs.frozen(kw_only=True)
class Step:
    name: str
    plugin: str
    with_: Mapping[str, Any] = attrs.field(factory=dict, alias="with_")
    timeout: float | None = None
    restart: Restart = Restart.TRANSIENT
    runner: Runner | None = None
    on_error: Mapping[str, ErrorAction] = attrs.field(factory=dict)
    when: str | bool | None = None
    """Run only if this holds (`condition_holds`), else the step is skipped."""
    kubernetes: Mapping[str, Any] = attrs.field(factory=dict)
    """Its Job's settings over its plugin's (`KubeSettings`), as written; checked."""
    line: int = attrs.field(default=0, eq=False)
    col: int = attrs.field(default=0, eq=False)

    def action_for(self, error_type: str) -> ErrorAction:
        return self.on_error.get(error_type, ErrorAction.RESTART)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "plugin": self.plugin}
        if self.when is not None:
            data["when"] = self.when
        if self.with_:
            data["with"] = dict(self.with_)
        if self.timeout is not None:
            data["timeout"] = format_duration(self.timeout)
        if self.restart is not Restart.TRANSIENT:
            data["restart"] = self.restart.value
        if self.runner is not None:
            data["runner"] = self.runner.value
        if self.on_error:
            data["on_error"] = {k: v.value for k, v in self.on_error.items()}
        if self.kubernetes:
            data["kubernetes"] = dict(self.kubernetes)
        return data


@attrs.frozen
class Route:
    """One entry of a task's `next:`: start `task` after this one if `when` holds, and
    give it `with_` (rendered when the route is taken) as its `inputs`."""

    task: str
    when: str | bool | None = None
    with_: Mapping[str, Any] = attrs.field(factory=dict, alias="with_")

    def to_dict(self) -> dict[str, Any] | str:
        if self.when is None and not self.with_:
            return self.task
        data: dict[str, Any] = {"task": self.task}
        if self.when is not None:
            data["when"] = self.when
        if self.with_:
            data["with"] = dict(self.with_)
        return data


MAX_ITEMS_DEFAULT = 10_000
"""A loop over more items than this fails its task (`loop: max_items`)."""


@attrs.frozen(kw_only=True)
class Loop:
    """A task's `loop:`: the task runs once per item of `over` (docs/playbooks.md, "Loops")."""

    over: str | tuple[Any, ...]
    """The items: a list written in the playbook, or a template expression (bare or in
    braces, as a `when:`) that must give a list when the task starts."""
    as_: str = attrs.field(default="item", alias="as_")
    """The name of the item in the templates and `when:`s of the task's steps."""
    max_in_flight: int | None = None
    """At most this many iterations at once (None: all)."""
    max_items: int = MAX_ITEMS_DEFAULT

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"over": list(self.over) if isinstance(self.over, tuple)
                                else self.over}
        if self.as_ != "item":
            data["as"] = self.as_
        if self.max_in_flight is not None:
            data["max_in_flight"] = self.max_in_flight
        if self.max_items != MAX_ITEMS_DEFAULT:
            data["max_items"] = self.max_items
        return data


@attrs.frozen(kw_only=True)
class Task:
    name: str
    steps: tuple[Step, ...]
    needs: tuple[str, ...] = ()
    needs_succeeded: frozenset[str] = frozenset()
    """Those of `needs` that must have run and succeeded (not been skipped): else this
    task is skipped too."""
    when: str | bool | None = None
    """Run only if this holds once its needs finished, else the task is skipped."""
    next: tuple[Route, ...] = ()
    """The tasks this one routes to once it finished: each runs only if a route to it
    was taken (see docs/playbooks.md, "Branching")."""
    supervision: SupervisorFlags = TASK_DEFAULT
    loop: Loop | None = None
    """Run the task once per item (its iterations: docs/playbooks.md, "Loops")."""
    line: int = attrs.field(default=0, eq=False)
    col: int = attrs.field(default=0, eq=False)

    def step(self, name: str) -> Step:
        for step in self.steps:
            if step.name == name:
                return step
        raise KeyError(f"task {self.name!r} has no step {name!r}")

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name}
        if self.needs:
            data["needs"] = [{"task": need, "succeeded": True} if need in self.needs_succeeded
                             else need for need in self.needs]
        if self.when is not None:
            data["when"] = self.when
        if self.supervision != TASK_DEFAULT:
            data["supervision"] = flags_to_dict(self.supervision)
        if self.loop is not None:
            data["loop"] = self.loop.to_dict()
        data["steps"] = [step.to_dict() for step in self.steps]
        if self.next:
            data["next"] = [route.to_dict() for route in self.next]
        return data


@attrs.frozen(kw_only=True)
class Playbook:
    name: str
    tasks: tuple[Task, ...]
    description: str = ""
    vars: Mapping[str, Any] = attrs.field(factory=dict)
    policies: Mapping[str, SupervisorFlags] = attrs.field(factory=dict)
    supervision: SupervisorFlags = WORKFLOW_DEFAULT
    file: str = attrs.field(default="<playbook>", eq=False)
    warnings: tuple[Problem, ...] = attrs.field(default=(), eq=False)
    """Things worth knowing that do not stop it (e.g. a translated old format)."""

    def task(self, name: str) -> Task:
        for task in self.tasks:
            if task.name == name:
                return task
        raise KeyError(f"playbook {self.name!r} has no task {name!r}")

    def routers(self) -> dict[str, tuple[str, ...]]:
        """The tasks whose `next:` names each task that some `next:` names."""
        found: dict[str, list[str]] = {}
        for task in self.tasks:
            for route in task.next:
                if task.name not in found.setdefault(route.task, []):
                    found[route.task].append(task.name)
        return {name: tuple(routers) for name, routers in found.items()}

    def to_dict(self) -> dict[str, Any]:
        """The native YAML form; loading it gives an equal playbook."""
        data: dict[str, Any] = {"apiVersion": API_VERSION, "kind": "Playbook", "name": self.name}
        if self.description:
            data["description"] = self.description
        if self.vars:
            data["vars"] = dict(self.vars)
        if self.policies:
            data["policies"] = {k: flags_to_dict(v) for k, v in self.policies.items()}
        if self.supervision != WORKFLOW_DEFAULT:
            data["supervision"] = flags_to_dict(self.supervision)
        data["tasks"] = [task.to_dict() for task in self.tasks]
        return data


def flags_to_dict(flags: SupervisorFlags) -> dict[str, Any]:
    """`SupervisorFlags` in the YAML keys of `supervision:`."""
    data: dict[str, Any] = {
        "strategy": flags.strategy.value,
        "max_restarts": flags.max_restarts,
        "within": format_duration(flags.within),
    }
    if flags.backoff != Backoff():
        backoff = flags.backoff
        data["backoff"] = {
            "initial": format_duration(backoff.initial),
            "max": format_duration(backoff.max),
            "multiplier": backoff.multiplier,
            "jitter": backoff.jitter,
            "reset_after": format_duration(backoff.reset_after),
        }
    return data
