"""NoETL's own 2023-24 playbook format, translated to the native one.

The NATS-era NoETL (the Go and then Python prototypes of 2023-24) described a
playbook as a Kubernetes-style document: ``metadata`` (``name`` or
``playbookName``), ``spec.vars``, ``spec.initialSettings.start`` (the first
task or tasks), and ``tasks``, either a mapping ``{task name: task}`` or a list
of tasks named by ``taskName`` (``name`` in some versions). A task has
``steps`` (again a mapping or a list named by ``stepName``) and a ``switch``:
branches with a ``condition`` and the task(s) to run next (``next`` or
``nextTask``, optionally with ``params``/``args`` for them). A step names its
``plugin`` as ``"<name>:<version>"`` (older files: ``type: shell``) and puts
the plugin's fields beside it. Placeholders read ``{{ spec.vars.X }}`` and
``{{ tasks.T.steps.S.response }}``.

`translate_legacy` turns such a file into the native located tree that the
loader checks like any other playbook: every translated node keeps the line
and column of the legacy node it comes from, so a problem the loader finds
points into the original file. What the native format cannot say (conditions,
params, loops back, schedules, NATS subjects, ...) is dropped or approximated
with a warning at the place it was written. The mapping is documented in
docs/playbooks.md ("NoETL 2023-24 playbooks").
"""

from __future__ import annotations

import keyword
import re
from collections import deque
from collections.abc import Iterator
from typing import Any

import attrs

from noetl_actors.playbook._model import API_VERSION
from noetl_actors.playbook._source import Located, Problem

__all__ = ["PLUGIN_ALIASES", "is_legacy", "translate_legacy"]

NAME = re.compile(r"^[A-Za-z0-9_-]+$")

PLUGIN_ALIASES = {
    "http-handler": "http",
    "http_handler": "http",
    "httphandler": "http",
    "http-request": "http",
    "http-requests": "http",
    "httprequest": "http",
    "http": "http",
    "shell": "shell",
    "shell-handler": "shell",
    "bash": "shell",
    "sh": "shell",
    "python": "python",
    "echo": "echo",
}
"""Legacy plugin names (lower-cased, version removed) whose meaning matches a native plugin."""

FIELD_RENAMES = {"http": {"data": "body"}}
"""Plugin fields renamed on the way into ``with:`` (the old http handler sent ``data``)."""

SHELL_OPERATORS = ("|", ";", "&", ">", "<", "$(", "`")

_TASK_QUIET = ("description", "desc", "id")
_TASK_DROPPED = {
    "nats": "NATS subjects are derived from the task and step names now",
    "inputSchema": "input schemas are not checked by the native format",
    "outputSchema": "output schemas are not checked by the native format",
    "timeout": "give each step a timeout instead",
    "params": "the native format passes data through vars and step outputs",
    "args": "the native format passes data through vars and step outputs",
}
_STEP_QUIET = ("description", "desc", "id")
_SPEC_DROPPED = {
    "timeout": "give each step a timeout instead",
    "schedule": "scheduling is not part of a native playbook",
    "conditions": "conditions cannot be expressed natively yet",
    "templates": "the 2022 template format is not translated",
    "input": "the run input is given with --set KEY=VALUE",
}
_SPEC_QUIET = ("transitions", "description", "id", "reference")

_BLOCK = re.compile(r"\{\{.*?\}\}|\{%.*?%\}", re.DOTALL)
_SEGMENT = re.compile(r"\.([A-Za-z0-9_-]+)|\[([^\]]*)\]")
_CHAIN = re.compile(
    r"(?<![\w.\]\)'\"$-])(?P<prefix>\$\.|data\.)?"
    r"(?P<root>spec|tasks|steps|metadata|input|vars)"
    r"(?P<rest>(?:\.[A-Za-z0-9_-]+|\[[^\]]*\])*)"
)
_DATA_CHAIN = re.compile(
    r"(?<![\w.\]\)'\"$-])data\.(?P<task>[A-Za-z0-9_-]+)\.(?P<step>[A-Za-z0-9_-]+)"
    r"(?P<rest>(?:\.[A-Za-z0-9_-]+|\[[^\]]*\])*)"
)
_WHOLE_VAR = re.compile(r"^\s*\{\{\s*(?:spec\.vars|vars)\.([A-Za-z0-9_-]+)\s*\}\}\s*$")
_WHOLE_INPUT = re.compile(r"^\s*\{\{\s*input\.([A-Za-z0-9_-]+)\s*\}\}\s*$")
_JINJA_WORDS = {"and", "or", "not", "in", "is", "if", "else", "true", "false", "none",
                "True", "False", "None", "for", "recursive", "with"}


def is_legacy(root: Located) -> bool:
    """A NATS-era NoETL playbook (2023-24), not a native one.

    Every native playbook has a top-level ``name``, which no legacy one has
    (its name sits in ``metadata``), so a native file is never taken for a
    legacy one. Legacy files are told by ``spec`` or ``metadata``, by
    ``type: Playbook``, ``kind: Workflow`` or ``apiVersion: workflow.noetl.io/v1``,
    or by tasks named with ``taskName``.
    """
    if root.kind != "mapping":
        return False
    keys = root.value
    if "name" in keys:
        return False
    if "spec" in keys or "metadata" in keys:
        return True
    if _scalar(keys, "type") == "Playbook" or _scalar(keys, "kind") == "Workflow":
        return True
    if _scalar(keys, "apiVersion") == "workflow.noetl.io/v1":
        return True
    tasks = keys.get("tasks")
    return bool(
        tasks and tasks[1].kind == "list"
        and any(item.kind == "mapping" and "taskName" in item.value for item in tasks[1].value)
    )


def translate_legacy(root: Located, file: str) -> tuple[Located, list[Problem]]:
    """The native located tree for a legacy playbook, and the warnings of the translation.

    The first warning always names the translation. Nothing here is an
    error: what is wrong in the file is left in the tree, where the loader
    reports it at its original line and column.
    """
    translator = _Translator(file)
    tree = translator.playbook(root)
    warnings = sorted(translator.warnings[1:], key=lambda p: (p.line, p.col))
    return tree, translator.warnings[:1] + warnings


# -- records ----------------------------------------------------------------------------


@attrs.define
class _Route:
    """One way out of a task: to `target` (a legacy task name), named at `at`."""

    source: str
    target: str
    at: Located
    condition: Located | None = None


@attrs.define
class _Step:
    name: Located | None
    name_key: Located | None
    node: Located
    fields: dict[str, tuple[Located, Located]]
    """The plugin fields: every key of the legacy step not consumed otherwise."""
    plugin: Located | None
    plugin_key: Located | None


@attrs.define
class _Task:
    legacy: str | None
    name: Located | None
    name_key: Located | None
    node: Located
    steps: list[_Step] | None
    steps_node: Located | None
    steps_key: Located | None
    routes: list[_Route] = attrs.field(factory=list)
    native: str | None = None
    step_names: dict[str, str] = attrs.field(factory=dict)
    """Legacy step name -> native step name."""
    step_plugins: dict[str, str] = attrs.field(factory=dict)
    """Legacy step name -> native plugin name."""


# -- the translation ------------------------------------------------------------------------


class _Translator:
    def __init__(self, file: str) -> None:
        self.file = file
        self.warnings: list[Problem] = []
        self.raw_vars: dict[str, Any] = {}
        self.tasks: list[_Task] = []
        self.by_legacy: dict[str, _Task] = {}

    def warn(self, at: Located, message: str) -> None:
        self.warnings.append(Problem(self.file, at.line, at.col, message, warning=True))

    # -- the document --------------------------------------------------------------------

    def playbook(self, root: Located) -> Located:
        keys: dict[str, tuple[Located, Located]] = root.value
        self.announce(root, keys)
        metadata = _mapping_or_empty(keys.get("metadata"))
        spec = _mapping_or_empty(keys.get("spec"))
        for key, (key_node, _) in keys.items():
            if key not in ("apiVersion", "kind", "type", "metadata", "spec", "tasks"):
                self.warn(key_node, f"{key!r} is not part of a NoETL 2023-24 playbook: dropped")
        for key, (key_node, value) in spec.items():
            if key == "input" and value.value in (None, {}, []):
                continue
            if key in _SPEC_DROPPED:
                self.warn(key_node, f"spec.{key} dropped: {_SPEC_DROPPED[key]}")
            elif key not in ("vars", "initialSettings", "tasks", *_SPEC_QUIET):
                self.warn(key_node, f"spec.{key} is not translated: dropped")

        items: list[tuple[str, Located, Located]] = []
        api_at = keys["apiVersion"][0] if "apiVersion" in keys else root
        kind_at = keys["kind"][0] if "kind" in keys else keys["type"][0] if "type" in keys else root
        items.append(("apiVersion", api_at, Located(API_VERSION, api_at.line, api_at.col)))
        items.append(("kind", kind_at, Located("Playbook", kind_at.line, kind_at.col)))
        name = metadata.get("playbookName") or metadata.get("name")
        if name is not None:
            items.append(("name", name[0], self.name(name[1], "playbook name")))
        if "description" in metadata:
            key_node, value = metadata["description"]
            items.append(("description", key_node, value))
        if "vars" in spec:
            key_node, value = spec["vars"]
            items.append(("vars", key_node, self.variables(value)))

        tasks_entry = spec.get("tasks") or keys.get("tasks")
        if "tasks" in spec and "tasks" in keys:
            self.warn(keys["tasks"][0], "tasks given both in spec and at the top: the top ones "
                                        "are dropped")
        if tasks_entry is not None:
            tasks_key, tasks_node = tasks_entry
            if tasks_node.kind in ("mapping", "list"):
                self.read_tasks(tasks_node)
                tasks_node = self.native_tasks(tasks_node, spec)
            items.append(("tasks", tasks_key, tasks_node))
        return Located({key: (key_node, value) for key, key_node, value in items},
                       root.line, root.col)

    def announce(self, root: Located, keys: dict[str, tuple[Located, Located]]) -> None:
        """The first warning: what the file was taken for."""
        shown, at = "metadata and spec", root
        if "type" in keys:
            key_node, value = keys["type"]
            shown, at = f"type: {_show(value)}", key_node
        elif _scalar(keys, "kind") == "Workflow":
            shown = "kind: Workflow"
        elif _scalar(keys, "apiVersion") == "workflow.noetl.io/v1":
            shown = "apiVersion: workflow.noetl.io/v1"
        elif "spec" not in keys or "metadata" not in keys:
            shown = "tasks named by taskName"
        self.warn(at, f"NoETL 2023-24 playbook ({shown}): translated to {API_VERSION}; "
                      "see docs/playbooks.md")

    def name(self, node: Located, what: str) -> Located:
        """A name the native format accepts, warning when it had to change."""
        if node.kind not in ("string", "number"):
            return node
        text = str(node.value)
        if NAME.match(text):
            return Located(text, node.line, node.col)
        fixed = re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_") or "unnamed"
        self.warn(node, f"{what} {text!r} may hold only letters, digits, '_' and '-': "
                        f"translated to {fixed!r}")
        return Located(fixed, node.line, node.col)

    # -- vars ------------------------------------------------------------------------------

    def variables(self, node: Located) -> Located:
        if node.kind != "mapping":
            return node
        self.raw_vars = node.plain()
        kept: dict[Any, tuple[Located, Located]] = {}
        for key, (key_node, value) in node.value.items():
            whole = _WHOLE_INPUT.match(value.value) if value.kind == "string" else None
            if whole:
                self.warn(value, f"vars.{key} took the run input ({whole.group(1)}): it is not "
                                 f"defined here; give it with --set {key}=VALUE")
                continue
            kept[key] = (key_node, self.rewrite(value, None))
        return Located(kept, node.line, node.col)

    def resolve(self, node: Located) -> str | None:
        """A task name, with ``{{ spec.vars.X }}`` read from the vars."""
        if node.kind not in ("string", "number"):
            return None
        text = str(node.value).strip()
        whole = _WHOLE_VAR.match(text)
        if whole:
            value = self.raw_vars.get(whole.group(1))
            if isinstance(value, str) and "{{" not in value:
                return value.strip()
            self.warn(node, f"{text!r} does not name a task (vars.{whole.group(1)} is not a "
                            "plain name): ignored")
            return None
        if "{{" in text or "{%" in text:
            self.warn(node, f"{text!r} is computed at run time; a task to run next must be "
                            "named: ignored")
            return None
        return text

    # -- tasks -----------------------------------------------------------------------------

    def read_tasks(self, node: Located) -> None:
        if node.kind == "mapping":
            for key, (key_node, value) in node.value.items():
                self.read_task(value, key_node, None, str(key))
        elif node.kind == "list":
            for item in node.value:
                entry = None
                if item.kind == "mapping":
                    entry = item.value.get("taskName") or item.value.get("name")
                if entry is None:
                    self.read_task(item, None, None, None)
                else:
                    legacy = str(entry[1].value) if entry[1].kind in ("string", "number") else None
                    self.read_task(item, entry[1], entry[0], legacy)
        for task in self.tasks:
            if task.legacy is not None and task.legacy not in self.by_legacy:
                self.by_legacy[task.legacy] = task

    def read_task(
        self, node: Located, name: Located | None, name_key: Located | None, legacy: str | None
    ) -> None:
        task = _Task(legacy=legacy, name=name, name_key=name_key, node=node, steps=None,
                     steps_node=None, steps_key=None)
        self.tasks.append(task)
        if name is not None:
            native = self.name(name, "task name")
            task.native = native.value if native.kind == "string" else None
            task.name = native
        if node.kind != "mapping":
            return
        keys: dict[str, tuple[Located, Located]] = node.value
        what = f"task {legacy!r}" if legacy else "a task"
        has_steps = "steps" in keys
        single = not has_steps and ("plugin" in keys or "type" in keys)
        for key, (key_node, value) in keys.items():
            if key in ("taskName", "name") and name_key is not None:
                continue
            if key == "steps":
                task.steps_key, task.steps_node = key_node, value
                task.steps = self.read_steps(task, value)
            elif key == "switch":
                self.read_switch(task, value)
            elif key == "next":
                self.read_next(task, value, None)
            elif key in _TASK_DROPPED and (has_steps or key in ("nats", "inputSchema",
                                                                 "outputSchema")):
                self.warn(key_node, f"{key} of {what} dropped: {_TASK_DROPPED[key]}")
            elif key in _TASK_QUIET:
                continue
            elif not single:
                self.warn(key_node, f"{key!r} in {what} is not translated: dropped")
        if single:
            self.warn(node, f"{what} has no steps: its plugin and fields become one step "
                            f"named after the task")
            fields = {k: v for k, v in keys.items()
                      if k not in ("taskName", "name", "switch", "next", "nats", "inputSchema",
                                   "outputSchema", *_TASK_QUIET)}
            step = self.make_step(node, task.name, name_key, fields)
            task.steps = [step]
            if task.native is not None and task.legacy is not None:
                task.step_names[task.legacy] = task.native
                if step.plugin is not None:
                    task.step_plugins[task.legacy] = _native_plugin(step.plugin)

    def read_steps(self, task: _Task, node: Located) -> list[_Step] | None:
        steps: list[_Step] = []
        if node.kind == "mapping":
            for key_node, value in node.value.values():
                fields = value.value if value.kind == "mapping" else {}
                steps.append(self.make_step(value, key_node, None, fields, task))
        elif node.kind == "list":
            for item in node.value:
                fields = dict(item.value) if item.kind == "mapping" else {}
                entry = fields.pop("stepName", None) or fields.pop("name", None)
                name, name_key = (entry[1], entry[0]) if entry else (None, None)
                steps.append(self.make_step(item, name, name_key, fields, task))
        else:
            return None
        return steps

    def make_step(
        self,
        node: Located,
        name: Located | None,
        name_key: Located | None,
        keys: dict[str, tuple[Located, Located]],
        task: _Task | None = None,
    ) -> _Step:
        step = _Step(name=None, name_key=name_key, node=node, fields={}, plugin=None,
                     plugin_key=None)
        if name is not None:
            native = self.name(name, "step name")
            step.name = native
            if task is not None and name.kind in ("string", "number") \
                    and native.kind == "string":
                task.step_names[str(name.value)] = native.value
        for key, (key_node, value) in keys.items():
            if key == "plugin":
                step.plugin_key, step.plugin = key_node, value
            elif key == "type":
                if "plugin" not in keys:
                    step.plugin_key, step.plugin = key_node, value
            elif key == "next":
                if task is not None:
                    self.read_next(task, value, None)
            elif key in _STEP_QUIET:
                continue
            else:
                step.fields[key] = (key_node, value)
        if task is not None and name is not None and name.kind in ("string", "number") \
                and step.plugin is not None:
            task.step_plugins[str(name.value)] = _native_plugin(step.plugin)
        return step

    def read_switch(self, task: _Task, node: Located) -> None:
        if node.kind != "list":
            self.warn(node, "switch must list branches: dropped")
            return
        for branch in node.value:
            if branch.kind != "mapping":
                self.warn(branch, "a switch branch must be a mapping: dropped")
                continue
            keys = branch.value
            targets = keys.get("nextTask") or keys.get("next") or keys.get("task")
            before = len(task.routes)
            if targets is not None:
                self.read_next(task, targets[1], keys.get("params") or keys.get("args"))
            if "condition" not in keys:
                continue
            condition = keys["condition"][1]
            for route in task.routes[before:]:
                route.condition = condition
            if len(task.routes) == before:
                self.warn(condition, "condition dropped with its branch, which ended the "
                                     f"workflow after task {task.legacy!r} (conditions cannot "
                                     "be expressed natively yet)")

    def read_next(self, task: _Task, node: Located, params: tuple[Located, Located] | None
                  ) -> None:
        """Routes to the task(s) `node` names (a name, a list, or mappings with args)."""
        items = node.value if node.kind == "list" else [node]
        for item in items:
            target_node, args = item, params
            if item.kind == "mapping":
                keys = item.value
                named = keys.get("task") or keys.get("taskName") or keys.get("nextTask")
                if named is not None:
                    target_node = named[1]
                    args = keys.get("params") or keys.get("args") or args
                elif len(keys) == 1:
                    (key, (key_node, value)), = keys.items()
                    target_node = Located(key, key_node.line, key_node.col)
                    args = (key_node, value) if value.value not in (None, {}) else args
                else:
                    self.warn(item, "a next task must be named: ignored")
                    continue
            target = self.resolve(target_node)
            if target is None:
                continue
            if args is not None:
                self.warn(args[0], f"params for task {target!r} dropped: the native format "
                                   "passes data through vars and "
                                   "tasks.<task>.steps.<step>.output")
            if task.legacy is not None:
                task.routes.append(_Route(task.legacy, target, target_node))

    # -- needs -----------------------------------------------------------------------------

    def is_router(self, task: _Task) -> bool:
        """A task with no steps that only chose the next task (dropped; its routes pass on)."""
        return (task.legacy is not None and task.steps is None and task.steps_node is None
                and task.node.kind == "mapping" and bool(task.routes))

    def expand(self, route: _Route, seen: frozenset[str] = frozenset()) -> Iterator[_Route]:
        """The route(s) to real tasks that `route` leads to, through routers.

        A route through a router keeps the router's own condition when it
        has none.
        """
        router = self.by_legacy.get(route.target)
        if router is None or not self.is_router(router):
            yield route
            return
        if route.target in seen:
            return
        for onward in router.routes:
            yield from self.expand(
                _Route(route.source, onward.target, onward.at,
                       route.condition or onward.condition),
                seen | {route.target},
            )

    def plan(self, spec: dict[str, tuple[Located, Located]]) -> dict[str, list[Located]]:
        """Each legacy task's needs, as located native names, from the flow.

        Start tasks need nothing; a route from task A to task B makes B need A.
        Routes are followed breadth-first from the start, so that a route
        back (a loop) is the one dropped.
        """
        for task in self.tasks:
            if self.is_router(task):
                self.warn(task.name or task.node,
                          f"task {task.legacy!r} has no steps, it only chose the next task: "
                          "dropped, the tasks it routes to take its place")
        real = [t.legacy for t in self.tasks if t.legacy is not None and not self.is_router(t)]
        needs: dict[str, list[tuple[str, Located]]] = {name: [] for name in real}
        starts = self.starts(spec)

        def needs_transitively(task: str, other: str) -> bool:
            stack, seen = [task], {task}
            while stack:
                for need, _ in needs[stack.pop()]:
                    if need == other:
                        return True
                    if need not in seen:
                        seen.add(need)
                        stack.append(need)
            return False

        reached = set(starts)
        queue = deque(starts)
        conditions: dict[Located, list[tuple[str, str]]] = {}

        def walk() -> None:
            while queue:
                src = queue.popleft()
                for first in self.by_legacy[src].routes:
                    for route in self.expand(first):
                        dst, at = route.target, route.at
                        if route.condition is not None:
                            conditions.setdefault(route.condition, [])
                        if dst not in needs and dst in self.by_legacy[src].step_names:
                            continue  # a step of this task: its steps run in order anyway
                        if dst not in needs:
                            self.warn(at, f"next task {dst!r} of task {src!r} is not a task "
                                          "here: ignored")
                        elif dst == src or dst in starts or needs_transitively(src, dst):
                            condition = " with its condition" if route.condition else ""
                            self.warn(at, f"route from task {src!r} back to task {dst!r} "
                                          f"dropped{condition}: needs cannot form a cycle (a "
                                          "retry is a restart policy now)")
                        else:
                            if route.condition is not None:
                                conditions[route.condition].append((src, dst))
                            if all(need != src for need, _ in needs[dst]):
                                needs[dst].append((src, at))
                                if dst not in reached:
                                    reached.add(dst)
                                    queue.append(dst)

        walk()
        for name in real:
            if name in reached:
                continue
            if starts:
                task = self.by_legacy[name]
                self.warn(task.name or task.node,
                          f"task {name!r} is not reached from spec.initialSettings.start or "
                          "any next task: kept, it runs at the start")
            reached.add(name)
            queue.append(name)
            walk()

        for condition, kept in conditions.items():
            for src in dict.fromkeys(src for src, _ in kept):
                shown = " and ".join(repr(dst) for s, dst in kept if s == src)
                self.warn(condition, f"condition dropped: task {shown} now always runs after "
                                     f"task {src!r} (conditions cannot be expressed natively "
                                     "yet)")
        located: dict[str, list[Located]] = {}
        for name, entries in needs.items():
            if len(entries) > 1:
                task = self.by_legacy[name]
                shown = ", ".join(repr(src) for src, _ in entries)
                self.warn(task.name or task.node,
                          f"task {name!r} is reached from tasks {shown}: it now waits for all "
                          "of them (the old format ran it after whichever routed to it)")
            located[name] = [self.located_name(src, at) for src, at in entries]
        return located

    def starts(self, spec: dict[str, tuple[Located, Located]]) -> list[str]:
        """The start tasks named by spec.initialSettings.start (none: every root task)."""
        settings = _mapping_or_empty(spec.get("initialSettings"))
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
                    self.warn(key_node, f"input for start task {key!r} dropped: give run "
                                        "values with --set KEY=VALUE")
            target = self.resolve(target_node)
            if target is None:
                continue
            for route in self.expand(_Route("", target, target_node)):
                name, at = route.target, route.at
                task = self.by_legacy.get(name)
                if task is None or self.is_router(task):
                    self.warn(at, f"spec.initialSettings.start names {name!r}, which is not "
                                  "a task here: ignored")
                elif name in found:
                    self.warn(at, f"spec.initialSettings.start names task {name!r} again: "
                                  "it runs once")
                else:
                    found.append(name)
        return found

    def located_name(self, legacy: str, at: Located) -> Located:
        task = self.by_legacy.get(legacy)
        native = task.native if task is not None and task.native is not None else legacy
        return Located(native, at.line, at.col)

    # -- the native tree ----------------------------------------------------------------------

    def native_tasks(self, node: Located, spec: dict[str, tuple[Located, Located]]) -> Located:
        needs = self.plan(spec)
        items = [self.native_task(task, needs) for task in self.tasks
                 if not self.is_router(task)]
        return Located(items, node.line, node.col)

    def native_task(self, task: _Task, needs: dict[str, list[Located]]) -> Located:
        if task.node.kind != "mapping":
            return task.node
        at = task.node
        entries: list[tuple[str, Located, Located]] = []
        if task.name is not None:
            entries.append(("name", task.name_key or task.name, task.name))
        wanted = needs.get(task.legacy or "", [])
        if wanted:
            first = wanted[0]
            entries.append(("needs", first, Located(wanted, first.line, first.col)))
        if task.steps is not None:
            steps_at = task.steps_node or at
            steps = [self.native_step(step, task) for step in task.steps]
            entries.append(("steps", task.steps_key or steps_at,
                            Located(steps, steps_at.line, steps_at.col)))
        elif task.steps_node is not None:
            entries.append(("steps", task.steps_key or task.steps_node, task.steps_node))
        return Located({key: (key_node, value) for key, key_node, value in entries},
                       at.line, at.col)

    def native_step(self, step: _Step, task: _Task) -> Located:
        if step.node.kind != "mapping":
            return step.node
        at = step.node
        entries: list[tuple[str, Located, Located]] = []
        if step.name is not None:
            entries.append(("name", step.name_key or step.name, step.name))
        plugin = None
        if step.plugin is not None and step.plugin_key is not None:
            plugin_node = self.plugin(step.plugin)
            plugin = plugin_node.value if plugin_node.kind == "string" else None
            entries.append(("plugin", step.plugin_key, plugin_node))
        fields = self.plugin_fields(step, plugin)
        if fields:
            first = next(iter(fields.values()))[0]
            rewritten = {key: (key_node, self.rewrite(value, task))
                         for key, (key_node, value) in fields.items()}
            entries.append(("with", first, Located(rewritten, first.line, first.col)))
        return Located({key: (key_node, value) for key, key_node, value in entries},
                       at.line, at.col)

    def plugin(self, node: Located) -> Located:
        """``name:version`` -> the native plugin name, warning what changed."""
        if node.kind != "string":
            return node
        text = node.value.strip()
        base, _, version = text.partition(":")
        base = base.strip()
        native = _native_plugin(node)
        notes = []
        if native != base:
            notes.append(f"translated to {native!r}")
        if version:
            notes.append(f"its version {version!r} is ignored (native plugins are not "
                         "versioned)")
        if notes:
            self.warn(node, f"plugin {text!r}: {'; '.join(notes)}")
        return Located(native, node.line, node.col)

    def plugin_fields(self, step: _Step, plugin: str | None
                      ) -> dict[str, tuple[Located, Located]]:
        fields = dict(step.fields)
        for old, new in FIELD_RENAMES.get(plugin or "", {}).items():
            if old in fields and new not in fields:
                key_node, value = fields.pop(old)
                self.warn(key_node, f"{old!r} of plugin {plugin!r} becomes {new!r}")
                fields[new] = (Located(new, key_node.line, key_node.col), value)
        if "exitCode" in fields:
            key_node, value = fields.pop("exitCode")
            self.warn(key_node, f"exitCode {value.value!r} dropped: the expected exit status is "
                                "not an input of a native plugin")
        if plugin == "shell" and "command" in fields and "args" in fields:
            command_key, command = fields["command"]
            args_key, args = fields["args"]
            parts = [command, *args.value] if args.kind == "list" else [command, args]
            if all(part.kind in ("string", "number") for part in parts):
                del fields["args"]
                texts = [str(part.value) for part in parts]
                if any(op in text for text in texts for op in SHELL_OPERATORS):
                    line = " ".join(text.strip() for text in texts)
                    self.warn(args_key, "command and args joined into one shell command line "
                                        "(an argument holds a shell operator)")
                    fields["command"] = (command_key,
                                         Located(line, command.line, command.col))
                else:
                    fields["command"] = (command_key,
                                         Located(parts, command.line, command.col))
        return fields

    # -- templates ---------------------------------------------------------------------------

    def rewrite(self, node: Located, task: _Task | None) -> Located:
        """`node` with every legacy placeholder in its strings in the native form."""
        if node.kind == "string":
            inputs: set[str] = set()
            text = _BLOCK.sub(lambda m: self.rewrite_block(m.group(0), task, inputs), node.value)
            for name in sorted(inputs):
                self.warn(node, f"input.{name} (the run input) becomes vars.{name}: give it "
                                f"with --set {name}=VALUE")
            return Located(text, node.line, node.col)
        if node.kind == "mapping":
            return Located({key: (key_node, self.rewrite(value, task))
                            for key, (key_node, value) in node.value.items()},
                           node.line, node.col)
        if node.kind == "list":
            return Located([self.rewrite(item, task) for item in node.value],
                           node.line, node.col)
        return node

    def rewrite_block(self, block: str, task: _Task | None, inputs: set[str]) -> str:
        def data_chain(match: re.Match[str]) -> str:
            legacy = match.group("task")
            other = self.by_legacy.get(legacy)
            if other is None or legacy in ("tasks", "steps", "vars", "spec"):
                return match.group(0)
            return self.step_ref(other, match.group("step"), _segments(match.group("rest")),
                                 task)

        def chain(match: re.Match[str]) -> str:
            root, segments = match.group("root"), _segments(match.group("rest"))
            names = [name for name, raw in segments if raw is None]
            if root == "spec":
                if len(names) >= 2 and segments[0][0] == "vars" and segments[1][1] is None:
                    return "vars" + _join(segments[1:])
                return match.group(0)
            if root == "tasks":
                legacy, used = _longest(segments, self.by_legacy)
                other = self.by_legacy.get(legacy)
                if used and segments[used:used + 1] == [("steps", None)]:
                    step, taken = _longest(segments[used + 1:],
                                           other.step_names if other else {})
                    if taken:
                        return self.step_ref(other or legacy, step,
                                             segments[used + 1 + taken:], task)
                return "tasks" + _join(segments)
            if root == "steps" and task is not None:
                step, taken = _longest(segments, task.step_names)
                if taken:
                    return self.step_ref(task, step, segments[taken:], task)
            if root == "metadata" and segments and segments[0][0] in ("name", "playbookName"):
                return "workflow.name" + _join(segments[1:])
            if root == "input" and segments and segments[0][1] is None:
                inputs.add(segments[0][0])
                return "vars" + _join(segments)
            if root in ("vars", "tasks", "steps"):
                return root + _join(segments)
            return match.group(0)

        block = _DATA_CHAIN.sub(data_chain, block)
        return _CHAIN.sub(chain, block)

    def step_ref(self, other: _Task | str, step: str, tail: list[tuple[str, str | None]],
                 here: _Task | None) -> str:
        """``tasks.T.steps.S.<tail>`` of a legacy template, in the native form.

        `other` is the task (or the name of a task that does not exist, left
        for the loader to report); `here` the task the template is in.
        """
        if isinstance(other, str):
            step_name, task_name, plugin = step, other, ""
        else:
            step_name = other.step_names.get(step, step)
            task_name = other.native or other.legacy or ""
            plugin = other.step_plugins.get(step, "")
        if tail[:1] == [("response", None)] and plugin == "http":
            tail = [("body", None), *tail[1:]]  # the old http handler's response: the body
        elif tail[:1] in ([("response", None)], [("output", None)]):
            tail = tail[1:]
        ref = "steps" + _join([(step_name, None), ("output", None), *tail])
        if other is here:
            return ref
        return "tasks" + _join([(task_name, None)]) + "." + ref


# -- helpers ------------------------------------------------------------------------------------


def _scalar(keys: dict[str, tuple[Located, Located]], key: str) -> Any:
    entry = keys.get(key)
    return entry[1].value if entry is not None else None


def _native_plugin(node: Located) -> str:
    """The native name of a legacy plugin (``"http-handler:0_1_0"`` -> ``http``)."""
    if node.kind != "string":
        return ""
    base = str(node.value).strip().partition(":")[0].strip()
    return PLUGIN_ALIASES.get(base.lower(), base)


def _show(node: Located) -> str:
    return str(node.value) if node.kind in ("string", "number") else node.kind


def _mapping_or_empty(entry: tuple[Located, Located] | None) -> dict[str, tuple[Located, Located]]:
    if entry is None or entry[1].kind != "mapping":
        return {}
    value: dict[str, tuple[Located, Located]] = entry[1].value
    return value


def _segments(rest: str) -> list[tuple[str, str | None]]:
    """``.a.b['c'][x]`` -> [(a, None), (b, None), (c, None), ('', '[x]')]: names, or raw text."""
    found: list[tuple[str, str | None]] = []
    for match in _SEGMENT.finditer(rest):
        if match.group(1) is not None:
            found.append((match.group(1), None))
            continue
        inner = match.group(2).strip()
        if len(inner) >= 2 and inner[0] == inner[-1] and inner[0] in "'\"":
            found.append((inner[1:-1], None))
        else:
            found.append(("", f"[{match.group(2)}]"))
    return found


def _longest(segments: list[tuple[str, str | None]], known: Any) -> tuple[str, int]:
    """The name the first segments spell, longest known first (old names held dots).

    Returns the name and how many segments it takes; an unknown name is the
    first segment alone.
    """
    names: list[str] = []
    for name, raw in segments:
        if raw is not None:
            break
        names.append(name)
    for count in range(len(names), 0, -1):
        if ".".join(names[:count]) in known:
            return ".".join(names[:count]), count
    return (names[0], 1) if names else ("", 0)


def _join(segments: list[tuple[str, str | None]]) -> str:
    parts = []
    for name, raw in segments:
        if raw is not None:
            parts.append(raw)
        elif name.isidentifier() and not keyword.iskeyword(name) and name not in _JINJA_WORDS:
            parts.append(f".{name}")
        else:
            parts.append(f"[{name!r}]")
    return "".join(parts)
