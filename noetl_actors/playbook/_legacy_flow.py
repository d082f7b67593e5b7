"""The flow of a legacy playbook: routes (``switch``, ``next``) become ``next:``.

A legacy task names the task(s) to run after it, each maybe on a condition;
so does a native task's ``next:``. The records below hold what the translator
read from the legacy tasks, and `plan` keeps the routes the native flow can
have (no loop back) and finds the tasks no route reaches.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import TYPE_CHECKING

import attrs

from noetl_actors.playbook._legacy_placeholders import resolve
from noetl_actors.playbook._source import Located

if TYPE_CHECKING:
    from noetl_actors.playbook._legacy import Translator


# -- records ----------------------------------------------------------------------------


@attrs.define
class Route:
    """One way out of a task: to `target` (a legacy task name), named at `at`."""

    source: str
    target: str
    at: Located
    condition: Located | None = None
    params: Located | None = None
    """What the branch gave the next task (``params`` or ``args``): its inputs."""


@attrs.define
class Step:
    name: Located | None
    name_key: Located | None
    node: Located
    fields: dict[str, tuple[Located, Located]]
    """The plugin fields: every key of the legacy step not consumed otherwise."""
    plugin: Located | None
    plugin_key: Located | None


@attrs.define
class Task:
    legacy: str | None
    name: Located | None
    name_key: Located | None
    node: Located
    steps: list[Step] | None
    steps_node: Located | None
    steps_key: Located | None
    routes: list[Route] = attrs.field(factory=list)
    native: str | None = None
    step_names: dict[str, str] = attrs.field(factory=dict)
    """Legacy step name -> native step name."""
    step_plugins: dict[str, str] = attrs.field(factory=dict)
    """Legacy step name -> native plugin name."""


# -- the flow ----------------------------------------------------------------------------


def is_router(translator: Translator, task: Task) -> bool:
    """A task with no steps that only chose the next task (dropped; its routes pass on)."""
    return (task.legacy is not None and task.steps is None and task.steps_node is None
            and task.node.kind == "mapping" and bool(task.routes))


def expand(
    translator: Translator, route: Route, seen: frozenset[str] = frozenset()
) -> Iterator[Route]:
    """The route(s) to real tasks that `route` leads to, through routers.

    A route through a router keeps the router's own condition when it
    has none.
    """
    router = translator.by_legacy.get(route.target)
    if router is None or not is_router(translator, router):
        yield route
        return
    if route.target in seen:
        return
    for onward in router.routes:
        yield from expand(
            translator,
            Route(route.source, onward.target, onward.at,
                  route.condition or onward.condition, route.params or onward.params),
            seen | {route.target},
        )


@attrs.frozen
class Flow:
    """The native flow of a legacy playbook: each task's routes, and what is unreached."""

    routes: dict[str, list[Route]]
    """Legacy task -> the routes kept (their targets legacy names)."""
    unreached: set[str]
    """Legacy tasks no route from the start reaches: they do not run."""


def plan(translator: Translator, spec: dict[str, tuple[Located, Located]]) -> Flow:
    """Each legacy task's routes (native `next:`), from the flow.

    Routes are followed breadth-first from the start tasks, so that a route
    back (a loop, which `next:` and `needs` cannot form) is the one dropped.
    Without `spec.initialSettings.start`, every task no route reaches starts.
    """
    for task in translator.tasks:
        if is_router(translator, task):
            translator.warn(task.name or task.node,
                      f"task {task.legacy!r} has no steps, it only chose the next task: "
                      "dropped, the tasks it routes to take its place")
    real = [t.legacy for t in translator.tasks
            if t.legacy is not None and not is_router(translator, t)]
    after: dict[str, list[tuple[str, Located]]] = {name: [] for name in real}
    """Task -> the tasks that route to it (it runs after them)."""
    routes: dict[str, list[Route]] = {}
    starts = start_tasks(translator, spec)

    def runs_after(task: str, other: str) -> bool:
        stack, seen = [task], {task}
        while stack:
            for before, _ in after[stack.pop()]:
                if before == other:
                    return True
                if before not in seen:
                    seen.add(before)
                    stack.append(before)
        return False

    reached = set(starts)
    queue = deque(starts)

    def walk() -> None:
        while queue:
            src = queue.popleft()
            for first in translator.by_legacy[src].routes:
                for route in expand(translator, first):
                    dst, at = route.target, route.at
                    if dst not in after and dst in translator.by_legacy[src].step_names:
                        continue  # a step of this task: its steps run in order anyway
                    if dst not in after:
                        translator.warn(at, f"next task {dst!r} of task {src!r} is not a task "
                                            "here: ignored")
                    elif dst == src or dst in starts or runs_after(src, dst):
                        condition = " with its condition" if route.condition else ""
                        translator.warn(at, f"route from task {src!r} back to task {dst!r} "
                                            f"dropped{condition}: needs and next cannot form a "
                                            "cycle (a retry is a restart policy now)")
                    else:
                        routes.setdefault(src, []).append(route)
                        if all(before != src for before, _ in after[dst]):
                            after[dst].append((src, at))
                        if dst not in reached:
                            reached.add(dst)
                            queue.append(dst)

    walk()
    unreached: set[str] = set()
    for name in real:
        if name in reached:
            continue
        if starts:
            unreached.add(name)
        reached.add(name)
        queue.append(name)
        walk()
    for name, entries in after.items():
        if len(entries) > 1:
            task = translator.by_legacy[name]
            shown = ", ".join(repr(src) for src, _ in entries)
            translator.warn(task.name or task.node,
                      f"task {name!r} is reached from tasks {shown}: it now waits for all "
                      "of them, and runs once if any route to it was taken (the old format "
                      "ran it after whichever routed to it)")
    return Flow(routes, unreached)


def start_tasks(
    translator: Translator, spec: dict[str, tuple[Located, Located]]
) -> list[str]:
    """The start tasks named by spec.initialSettings.start (none: every root task)."""
    settings = mapping_or_empty(spec.get("initialSettings"))
    if "start" not in settings:
        return []
    node = settings["start"][1]
    found: list[str] = []
    for item in node.value if node.kind == "list" else [node]:
        target_node = item
        if item.kind == "mapping" and len(item.value) == 1:
            (key, (key_node, value)), = item.value.items()
            target_node = Located(key, key_node.line, key_node.col)
            if value.value not in (None, {}):
                translator.warn(key_node, f"input for start task {key!r} dropped: give run "
                                          "values with --set KEY=VALUE")
        target = resolve(translator, target_node)
        if target is None:
            continue
        for route in expand(translator, Route("", target, target_node)):
            name, at = route.target, route.at
            task = translator.by_legacy.get(name)
            if task is None or is_router(translator, task):
                translator.warn(at, f"spec.initialSettings.start names {name!r}, which is not "
                                    "a task here: ignored")
            elif name in found:
                translator.warn(at, f"spec.initialSettings.start names task {name!r} again: "
                                    "it runs once")
            else:
                found.append(name)
            if task is not None and route.condition is not None:
                translator.warn(route.condition, f"condition dropped: start task {target!r} "
                                                 f"(no steps) chose task {name!r} on it; "
                                                 f"{name!r} is a start task now and always "
                                                 "starts")
    return found


def located_name(translator: Translator, legacy: str, at: Located) -> Located:
    task = translator.by_legacy.get(legacy)
    native = task.native if task is not None and task.native is not None else legacy
    return Located(native, at.line, at.col)


def mapping_or_empty(entry: tuple[Located, Located] | None
                     ) -> dict[str, tuple[Located, Located]]:
    if entry is None or entry[1].kind != "mapping":
        return {}
    value: dict[str, tuple[Located, Located]] = entry[1].value
    return value
