"""The checks across tasks, on the raw YAML: `needs` and template references.

They read the located tree, not the model, so they run (and report) even
when a task or step elsewhere is wrong: `needs` name tasks of the playbook
and form no cycle; a template names only what has run before it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from noetl_actors.errors import TemplateError
from noetl_actors.playbook._names import did_you_mean
from noetl_actors.playbook._source import Located
from noetl_actors.playbook._templates import (
    CONTEXT_NAMES,
    LOOP_INDEX,
    condition_source,
    is_template,
    references,
)

__all__ = ["check_needs", "check_templates", "value_at"]

Report = Callable[[Located, str], None]
"""Where a check records a problem: the reader's `error`."""


def check_needs(tasks: Located, report: Report) -> None:
    """`needs` and `next` name tasks of this playbook, and never in a cycle (a task
    named in a `next` runs after the task whose `next` it is)."""
    graph: dict[str, list[tuple[str, Located]]] = {}
    routes: list[tuple[str, Located]] = []
    for item in tasks.value:
        name_node = value_at(item, "name")
        if name_node is item or name_node.kind != "string":
            continue
        graph.setdefault(name_node.value, []).extend(
            (need.value, need) for need in _needs_of(item) if need.kind == "string"
        )
        routes += [(name_node.value, to) for to in _routes_of(item) if to.kind == "string"]
    for name, pairs in graph.items():
        for need, at in pairs:
            if need == name:
                report(at, f"task {name!r} needs itself")
            elif need not in graph:
                report(at, f"task {name!r} needs {need!r}, "
                           f"which is not a task here{did_you_mean(need, graph)}")
    routed: set[tuple[str, str]] = set()
    for name, at in routes:
        if at.value == name:
            report(at, f"task {name!r} routes to itself (next)")
        elif at.value not in graph:
            report(at, f"task {name!r} routes to {at.value!r} (next), "
                       f"which is not a task here{did_you_mean(at.value, graph)}")
        else:
            graph[at.value].append((name, at))
            routed.add((at.value, name))
    cycle = _find_cycle({
        name: [need for need, _ in pairs if need in graph and need != name]
        for name, pairs in graph.items()
    })
    if cycle:
        at = next(at for need, at in graph[cycle[0]] if need == cycle[1])
        edges = list(itertools.pairwise(cycle))
        what = "needs and next form" if any(edge in routed for edge in edges) else "needs form"
        report(at, f"{what} a cycle: {' -> '.join(cycle)}")


def check_templates(tasks: Located, variables: Mapping[str, Any], report: Report) -> None:
    """Every template of every step's `with` and `when`, and of every task's `when`,
    refers to something it may read."""
    layout = _Layout.of(tasks)
    for task_node in tasks.value:
        task = _name_of(task_node)
        steps = value_at(task_node, "steps")
        if task is None:
            continue
        when = _condition(task_node)
        if when is not None:
            _check_template(when, task, None, layout, variables, report)
        loop = value_at(task_node, "loop")
        over = value_at(loop, "over") if loop is not task_node else loop
        if over is not loop and over.kind == "string":
            try:
                source = Located(condition_source(over.value), over.line, over.col)
            except TemplateError:
                source = None  # the loader says why
            if source is not None:
                _check_template(source, task, None, layout, variables, report, over=True)
        as_ = value_at(loop, "as") if loop is not task_node else loop
        names = (() if loop is task_node else
                 (as_.value if as_ is not loop and as_.kind == "string" else "item",
                  LOOP_INDEX))
        routes = value_at(task_node, "next")
        for route in routes.value if routes is not task_node and routes.kind == "list" else []:
            when = _condition(route) if route.kind == "mapping" else None
            if when is not None:
                _check_template(when, task, None, layout, variables, report, route=True)
        if steps is task_node or steps.kind != "list":
            continue
        for step_node in steps.value:
            step = _name_of(step_node)
            if step is None:
                continue
            when = _condition(step_node)
            with_node = value_at(step_node, "with")
            located = [] if with_node is step_node else _strings(with_node)
            for template in [*([when] if when is not None else []), *located]:
                _check_template(template, task, step, layout, variables, report,
                                loop_names=names)


def _condition(node: Located) -> Located | None:
    """The `when:` of a task or step as a template (None: none, or not well formed:
    the loader says why)."""
    when = value_at(node, "when")
    if when is node or when.kind not in ("string", "boolean"):
        return None
    try:
        return Located(condition_source(when.value), when.line, when.col)
    except TemplateError:
        return None


def value_at(node: Located, key: str) -> Located:
    """The value of `key` in a mapping node; `node` itself if it has none."""
    entry = node.value.get(key) if isinstance(node.value, dict) else None
    return entry[1] if entry else node


def _check_template(
    node: Located,
    task: str,
    step: str | None,
    layout: _Layout,
    variables: Mapping[str, Any],
    report: Report,
    *,
    route: bool = False,
    over: bool = False,
    loop_names: tuple[str, ...] = (),
) -> None:
    try:
        found = references(node.value)
    except TemplateError as error:
        report(node, str(error))
        return
    for ref in found:
        if ref.root in loop_names:
            continue  # the item and index of a looped task's iteration
        problem = _reference_problem(ref.root, ref.path, task, step, layout, variables,
                                     route=route, over=over, loop_names=loop_names)
        if problem:
            report(node, problem)


@attrs.frozen
class _Layout:
    """Task and step names, their order and needs, read off the raw YAML."""

    steps: Mapping[str, list[str]]
    needs: Mapping[str, list[str]]

    def runs_before(self, other: str, task: str) -> bool:
        """Whether `other` runs before `task`: `task` needs it, or needs what needs it.

        A search from `task` that stops when it finds `other`, made only for
        the templates that name another task: the closure of every task, made
        up front, is quadratic in a long chain of needs (10,000 tasks: a minute).
        """
        seen: set[str] = set()
        todo = [n for n in self.needs.get(task, []) if n in self.needs]
        while todo:
            need = todo.pop()
            if need == other and need != task:
                return True
            if need not in seen and need != task:
                seen.add(need)
                todo.extend(n for n in self.needs[need] if n in self.needs)
        return False

    @classmethod
    def of(cls, node: Located) -> _Layout:
        steps: dict[str, list[str]] = {}
        needs: dict[str, list[str]] = {}
        for task_node in node.value:
            task = _name_of(task_node)
            if task is None:
                continue
            step_list = value_at(task_node, "steps")
            steps[task] = [name for s in (step_list.value if step_list.kind == "list" else [])
                           if (name := _name_of(s)) is not None]
            needs.setdefault(task, []).extend(
                n.value for n in _needs_of(task_node) if n.kind == "string")
            for to in _routes_of(task_node):  # a task routed to runs after its router
                if to.kind == "string":
                    needs.setdefault(to.value, []).append(task)
        return cls(steps, needs)


def _name_of(node: Located) -> str | None:
    name = value_at(node, "name")
    return name.value if name is not node and name.kind == "string" else None


def _needs_of(task_node: Located) -> list[Located]:
    """The names a task's `needs` gives: a list (of names or ``{task: name}``), one name,
    or none."""
    needs = value_at(task_node, "needs")
    if needs is task_node:
        return []
    return [value_at(need, "task") if need.kind == "mapping" else need
            for need in (needs.value if needs.kind == "list" else [needs])]


def _routes_of(task_node: Located) -> list[Located]:
    """The task names a task's `next` gives (a list of names or ``{task: name}``, or one
    name)."""
    routes = value_at(task_node, "next")
    if routes is task_node or routes.kind not in ("list", "string"):
        return []
    return [value_at(route, "task") if route.kind == "mapping" else route
            for route in (routes.value if routes.kind == "list" else [routes])]


def _reference_problem(
    root: str,
    path: tuple[str, ...],
    task: str,
    step: str | None,
    layout: _Layout,
    variables: Mapping[str, Any],
    *,
    route: bool = False,
    over: bool = False,
    loop_names: tuple[str, ...] = (),
) -> str | None:
    """What is wrong with a reference of a template of `step` of `task` (None: of the
    task's own `when`, or with `over` its `loop: over`, decided before its steps, or
    with `route` of one of its `next` routes, decided after them)."""
    if root not in CONTEXT_NAMES:
        return (f"unknown name {root!r} in a template "
                f"(use {', '.join((*CONTEXT_NAMES, *loop_names))})")
    if over and root in ("steps", "attempt"):
        return (f"{root}: a loop's over is read before the task's steps run; it reads "
                f"vars, workflow and tasks.<a task it needs>")
    if route and root in ("steps", "attempt"):
        return (f"{root}: a route's when reads vars, workflow, tasks.{task} (the task it "
                f"leaves) and the tasks that ran before it")
    if step is None and not route and root in ("steps", "attempt"):
        return (f"{root}: a task's when is decided before its steps run; it reads vars, "
                f"workflow and tasks.<a task it needs>")
    if root == "vars" and path and path[0] not in variables:
        return f"vars.{path[0]} is not defined in vars (nor given with --set)"
    if root == "workflow" and path and path[0] not in ("id", "name"):
        return f"workflow.{path[0]}: workflow has only id and name"
    if root == "steps" and path and step is not None:
        target = path[0]
        names = layout.steps.get(task, [])
        if target == step:
            return f"steps.{target} refers to this step itself"
        if target not in names:
            return f"steps.{target}: task {task!r} has no step {target!r}"
        if names.index(target) > names.index(step):
            return f"steps.{target} runs after step {step!r}, so it has no output yet"
        if len(path) > 1 and path[1] != "output":
            return f"steps.{target}.{path[1]}: a step has only output"
    if root == "tasks" and path:
        other = path[0]
        if other not in layout.steps:
            return f"tasks.{other}: there is no task {other!r}"
        if other == task and route:
            pass  # a route leaves its task once it finished: its outputs are there
        elif other == task:
            return f"tasks.{other} is this task: use steps.<step> for its earlier steps"
        elif not layout.runs_before(other, task):
            return f"tasks.{other} does not run before task {task!r}: add it to needs"
        if len(path) > 1 and path[1] != "steps":
            return f"tasks.{other}.{path[1]}: a task has only steps"
        if len(path) > 2 and path[2] not in layout.steps[other]:
            return f"tasks.{other}.steps.{path[2]}: task {other!r} has no step {path[2]!r}"
        if len(path) > 3 and path[3] != "output":
            return f"tasks.{other}.steps.{path[2]}.{path[3]}: a step has only output"
    return None


def _strings(node: Located) -> list[Located]:
    """Every template string inside a located value."""
    if node.kind == "string":
        return [node] if is_template(node.value) else []
    if node.kind == "mapping":
        return [s for _, value in node.value.values() for s in _strings(value)]
    if node.kind == "list":
        return [s for item in node.value for s in _strings(item)]
    return []


def _find_cycle(graph: Mapping[str, list[str]]) -> list[str] | None:
    """A cycle of needs, as the names along it, the first repeated at the end.

    Depth first without recursion: a chain of 10,000 needs is deeper than
    Python's stack.
    """
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in graph:
        if start in state:
            continue
        state[start] = 1
        path = [start]
        pending = [iter(graph.get(start, []))]
        while pending:
            need = next(pending[-1], None)
            if need is None:
                state[path.pop()] = 2
                pending.pop()
            elif state.get(need) == 1:
                return [*path[path.index(need):], need]
            elif need not in state:
                state[need] = 1
                path.append(need)
                pending.append(iter(graph.get(need, [])))
    return None
