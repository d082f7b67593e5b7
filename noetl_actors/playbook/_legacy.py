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

This module reads the legacy structure; `_legacy_flow` turns its routes into
``next:`` routes, `_legacy_native` builds the native tasks and steps, and
`_legacy_placeholders` rewrites the placeholders.
"""

from __future__ import annotations

from typing import Any

from noetl_actors.playbook._legacy_flow import Route, Step, Task, mapping_or_empty
from noetl_actors.playbook._legacy_native import PLUGIN_ALIASES, native_plugin, native_tasks
from noetl_actors.playbook._legacy_placeholders import WHOLE_INPUT, resolve, rewrite
from noetl_actors.playbook._model import API_VERSION
from noetl_actors.playbook._names import is_name, to_name
from noetl_actors.playbook._source import Located, Problem

__all__ = ["PLUGIN_ALIASES", "is_legacy", "translate_legacy"]

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
    "conditions": "spec-wide conditions are not translated (write when: on tasks)",
    "templates": "the 2022 template format is not translated",
    "input": "the run input is given with --set KEY=VALUE",
}
_SPEC_QUIET = ("transitions", "description", "id", "reference")


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
    translator = Translator(file)
    tree = translator.playbook(root)
    warnings = sorted(translator.warnings[1:], key=lambda p: (p.line, p.col))
    return tree, translator.warnings[:1] + warnings


# -- the translation ------------------------------------------------------------------------


class Translator:
    def __init__(self, file: str) -> None:
        self.file = file
        self.warnings: list[Problem] = []
        self.raw_vars: dict[str, Any] = {}
        self.tasks: list[Task] = []
        self.by_legacy: dict[str, Task] = {}
        self.exit_codes_read: set[tuple[str, str]] = set()
        """(task, step), native names, of the shell steps whose exitCode is read."""

    def warn(self, at: Located, message: str) -> None:
        self.warnings.append(Problem(self.file, at.line, at.col, message, warning=True))

    # -- the document --------------------------------------------------------------------

    def playbook(self, root: Located) -> Located:
        keys: dict[str, tuple[Located, Located]] = root.value
        self.announce(root, keys)
        metadata = mapping_or_empty(keys.get("metadata"))
        spec = mapping_or_empty(keys.get("spec"))
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
                tasks_node = native_tasks(self, tasks_node, spec)
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
        if is_name(text):
            return Located(text, node.line, node.col)
        fixed = to_name(text) or "unnamed"
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
            whole = WHOLE_INPUT.match(value.value) if value.kind == "string" else None
            if whole:
                self.warn(value, f"vars.{key} took the run input ({whole.group(1)}): it is not "
                                 f"defined here; give it with --set {key}=VALUE")
                continue
            kept[key] = (key_node, rewrite(self, value, None))
        return Located(kept, node.line, node.col)

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
        task = Task(legacy=legacy, name=name, name_key=name_key, node=node, steps=None,
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
                    task.step_plugins[task.legacy] = native_plugin(step.plugin)

    def read_steps(self, task: Task, node: Located) -> list[Step] | None:
        steps: list[Step] = []
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
        task: Task | None = None,
    ) -> Step:
        step = Step(name=None, name_key=name_key, node=node, fields={}, plugin=None,
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
            task.step_plugins[str(name.value)] = native_plugin(step.plugin)
        return step

    def read_switch(self, task: Task, node: Located) -> None:
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
                                     f"workflow after task {task.legacy!r} (a native workflow "
                                     "ends when its tasks have finished or been skipped)")

    def read_next(self, task: Task, node: Located, params: tuple[Located, Located] | None
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
            target = resolve(self, target_node)
            if target is None:
                continue
            given = args[1] if args is not None else None
            if args is not None and args[1].kind != "mapping":
                self.warn(args[0], f"params for task {target!r} dropped: not a mapping of "
                                   "names to values")
                given = None
            if task.legacy is not None:
                task.routes.append(Route(task.legacy, target, target_node, params=given))


# -- helpers ------------------------------------------------------------------------------------


def _scalar(keys: dict[str, tuple[Located, Located]], key: str) -> Any:
    entry = keys.get(key)
    return entry[1].value if entry is not None else None


def _show(node: Located) -> str:
    return str(node.value) if node.kind in ("string", "number") else node.kind
