"""Load and check a playbook: every problem, with its file, line and column.

The checks run over YAML that keeps its positions (`_source`); nothing
is built into the model unless the whole file is valid. Problems are
collected, not raised one by one, so a user fixes a file in one pass.
"""

from __future__ import annotations

import difflib
import enum
import re
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any, TypeVar

import attrs

from noetl_actors.errors import PlaybookError, TemplateError
from noetl_actors.playbook._catalog import Catalog
from noetl_actors.playbook._durations import parse_duration
from noetl_actors.playbook._model import (
    API_VERSION,
    TASK_DEFAULT,
    WORKFLOW_DEFAULT,
    ErrorAction,
    Playbook,
    Runner,
    Step,
    Task,
)
from noetl_actors.playbook._source import Located, Problem, parse_yaml
from noetl_actors.playbook._templates import CONTEXT_NAMES, is_template, references
from noetl_actors.supervision import Backoff, Restart, Strategy, SupervisorFlags

__all__ = ["load_playbook", "parse_playbook", "parse_policies"]

NAME = re.compile(r"^[A-Za-z0-9_-]+$")
BUILTIN_ERROR_TYPES = ("timeout", "crash", "template")

PLAYBOOK_KEYS = ("apiVersion", "kind", "name", "description", "vars", "policies",
                 "supervision", "tasks")
TASK_KEYS = ("name", "needs", "supervision", "steps")
STEP_KEYS = ("name", "plugin", "with", "timeout", "restart", "runner", "on_error")
SUPERVISION_KEYS = ("use", "strategy", "max_restarts", "within", "backoff")
BACKOFF_KEYS = ("initial", "max", "multiplier", "jitter", "reset_after")

E = TypeVar("E", bound=enum.Enum)


def load_playbook(
    path: str | Path,
    *,
    catalog: Catalog | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Playbook:
    """Read and check a playbook file.

    `overrides` replace top-level `vars` (``--set key=value``).

    Raises:
        PlaybookError: every problem found, each with file:line:col.
        OSError: the file cannot be read.
    """
    text = Path(path).read_text(encoding="utf-8")
    return parse_playbook(text, str(path), catalog=catalog, overrides=overrides)


def parse_playbook(
    text: str,
    file: str = "<playbook>",
    *,
    catalog: Catalog | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Playbook:
    """Check playbook text; see `load_playbook`."""
    root, problems = parse_yaml(text, file)
    catalog = catalog or Catalog.default()
    playbook = None
    warnings: list[Problem] = []
    if root is not None:
        from noetl_actors.playbook._legacy import is_legacy, translate_legacy

        if is_legacy(root):
            root, warnings = translate_legacy(root, file)
        reader = _Reader(file, catalog)
        playbook = reader.playbook(root, dict(overrides or {}))
        problems += reader.problems
    if problems or playbook is None:
        # Warnings too: a translation's warning often explains the error next to it.
        raise PlaybookError(sorted(problems + warnings, key=lambda p: (p.line, p.col)))
    return attrs.evolve(playbook, warnings=tuple(warnings)) if warnings else playbook


def parse_policies(text: str, file: str) -> dict[str, SupervisorFlags]:
    """Named policies from a preset file (``kind: Policies``)."""
    root, problems = parse_yaml(text, file)
    reader = _Reader(file, Catalog(plugins={}, presets={}))
    policies: dict[str, SupervisorFlags] = {}
    if root is not None:
        keys = reader.keys(root, ("apiVersion", "kind", "policies"), "the preset file",
                           required=("kind", "policies"))
        if "kind" in keys and keys["kind"].value != "Policies":
            reader.error(keys["kind"], "kind must be Policies")
        if "policies" in keys:
            policies = reader.policies(keys["policies"])
        problems += reader.problems
    if problems:
        raise PlaybookError(problems)
    return policies


class _Reader:
    """Walks located YAML, collecting problems, building the model."""

    def __init__(self, file: str, catalog: Catalog) -> None:
        self.file = file
        self.catalog = catalog
        self.problems: list[Problem] = []

    def error(self, at: Located, message: str) -> None:
        self.problems.append(Problem(self.file, at.line, at.col, message))

    # -- shapes ------------------------------------------------------------------

    def expect(self, node: Located, kind: str, what: str) -> bool:
        if node.kind != kind:
            article = "an" if kind[0] in "aeiou" else "a"
            got = _show(node.value) if node.kind in ("mapping", "list") else \
                f"{node.kind} {_show(node.value)}"
            self.error(node, f"{what} must be {article} {kind} (got {got})")
            return False
        return True

    def keys(
        self,
        node: Located,
        allowed: Collection[str],
        what: str,
        *,
        required: Collection[str] = (),
    ) -> dict[str, Located]:
        """The mapping's values by key; unknown keys and missing ones are problems."""
        if not self.expect(node, "mapping", what):
            return {}
        found: dict[str, Located] = {}
        for key, (key_node, value) in node.value.items():
            if key not in allowed:
                hint = difflib.get_close_matches(str(key), allowed, n=1)
                suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
                self.error(key_node, f"unknown key {key!r} in {what}{suggestion}; "
                                     f"allowed: {', '.join(allowed)}")
                continue
            found[key] = value
        for key in required:
            if key not in found and key not in node.value:
                self.error(node, f"{what} needs {key!r}")
        return found

    def string(self, node: Located, what: str) -> str | None:
        return node.value if self.expect(node, "string", what) else None

    def name(self, node: Located, what: str) -> str | None:
        value = self.string(node, what)
        if value is not None and not NAME.fullmatch(value):
            self.error(node, f"{what} {value!r} may hold only letters, digits, '_' and '-' "
                             "(it becomes a NATS subject token)")
            return None
        return value

    def duration(self, node: Located, what: str) -> float | None:
        try:
            return parse_duration(node.value)
        except ValueError as error:
            self.error(node, f"{what}: {error}")
            return None

    def choice(self, node: Located, enum_type: type[E], what: str) -> E | None:
        options = [member.value for member in enum_type]
        if node.kind == "string" and node.value in options:
            return enum_type(node.value)
        hint = difflib.get_close_matches(str(node.value), options, n=1)
        suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
        self.error(node, f"{what} must be one of {', '.join(options)} "
                         f"(got {_show(node.value)}){suggestion}")
        return None

    # -- supervision -------------------------------------------------------------

    def policies(self, node: Located) -> dict[str, SupervisorFlags]:
        policies: dict[str, SupervisorFlags] = {}
        if not self.expect(node, "mapping", "policies"):
            return policies
        for key, (key_node, value) in node.value.items():
            name = self.name(key_node, "policy name")
            flags = self.supervision(value, TASK_DEFAULT, {}, f"policy {key!r}")
            if name is not None and flags is not None:
                policies[name] = flags
        return policies

    def supervision(
        self,
        node: Located,
        default: SupervisorFlags,
        policies: Mapping[str, SupervisorFlags],
        what: str = "supervision",
    ) -> SupervisorFlags | None:
        keys = self.keys(node, SUPERVISION_KEYS, what)
        if node.kind != "mapping":
            return None
        base = default
        if "use" in keys:
            name = self.string(keys["use"], "use")
            known = {**self.catalog.presets, **policies}
            if name is not None and name not in known:
                hint = difflib.get_close_matches(name, known, n=1)
                suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
                self.error(keys["use"], f"unknown policy {name!r}{suggestion}; known: "
                                        f"{', '.join(sorted(known)) or 'none'}")
            elif name is not None:
                base = known[name]
        changes: dict[str, Any] = {}
        if "strategy" in keys:
            changes["strategy"] = self.choice(keys["strategy"], Strategy, "strategy")
        if "max_restarts" in keys:
            value = keys["max_restarts"]
            if isinstance(value.value, bool) or not isinstance(value.value, int) \
                    or value.value < 0:
                self.error(value, f"max_restarts must be a whole number >= 0 "
                                  f"(got {_show(value.value)})")
            else:
                changes["max_restarts"] = value.value
        if "within" in keys:
            within = self.duration(keys["within"], "within")
            if within == 0:
                self.error(keys["within"], "within must be longer than 0")
            elif within is not None:
                changes["within"] = within
        if "backoff" in keys:
            changes["backoff"] = self.backoff(keys["backoff"], base.backoff)
        if any(value is None for value in changes.values()):
            return None
        return attrs.evolve(base, **changes)

    def backoff(self, node: Located, base: Backoff) -> Backoff | None:
        keys = self.keys(node, BACKOFF_KEYS, "backoff")
        changes: dict[str, Any] = {}
        for key in ("initial", "max", "reset_after"):
            if key in keys:
                changes[key] = self.duration(keys[key], f"backoff {key}")
        for key, least in (("multiplier", 1.0), ("jitter", 0.0)):
            if key in keys:
                value = keys[key].value
                if isinstance(value, bool) or not isinstance(value, int | float):
                    self.error(keys[key], f"backoff {key} must be a number (got {_show(value)})")
                    changes[key] = None
                elif value < least:
                    self.error(keys[key], f"backoff {key} must be >= {least:g} (got {value!r})")
                    changes[key] = None
                else:
                    changes[key] = float(value)
        if any(value is None for value in changes.values()):
            return None
        if base.initial == 0 and "initial" not in changes and changes:
            self.error(node, "backoff needs 'initial' (the first delay)")
            return None
        try:
            return attrs.evolve(base, **changes)
        except ValueError as error:
            self.error(node, f"backoff: {error}")
            return None

    # -- the playbook --------------------------------------------------------------

    def playbook(self, node: Located, overrides: dict[str, Any]) -> Playbook | None:
        keys = self.keys(node, PLAYBOOK_KEYS, "a playbook",
                         required=("apiVersion", "kind", "name", "tasks"))
        if node.kind != "mapping":
            return None
        if "apiVersion" in keys and keys["apiVersion"].value != API_VERSION:
            self.error(keys["apiVersion"], f"apiVersion must be {API_VERSION!r} "
                                           f"(got {_show(keys['apiVersion'].value)})")
        if "kind" in keys and keys["kind"].value != "Playbook":
            self.error(keys["kind"], f"kind must be 'Playbook' (got {_show(keys['kind'].value)})")
        name = self.name(keys["name"], "the playbook name") if "name" in keys else None
        description = ""
        if "description" in keys:
            description = self.string(keys["description"], "description") or ""
        variables: dict[str, Any] = {}
        if "vars" in keys and self.expect(keys["vars"], "mapping", "vars"):
            variables = keys["vars"].plain()
        variables.update(overrides)
        policies = self.policies(keys["policies"]) if "policies" in keys else {}
        supervision: SupervisorFlags | None = WORKFLOW_DEFAULT
        if "supervision" in keys:
            supervision = self.supervision(keys["supervision"], WORKFLOW_DEFAULT, policies)
        tasks = self.tasks(keys["tasks"], policies) if "tasks" in keys else None
        if "tasks" in keys and keys["tasks"].kind == "list":
            self.check_needs(keys["tasks"])
            self.check_templates(keys["tasks"], variables)
        if name is None or tasks is None or supervision is None or self.problems:
            return None
        return Playbook(name=name, description=description, vars=variables, policies=policies,
                        supervision=supervision, tasks=tuple(tasks), file=self.file)

    def tasks(self, node: Located, policies: Mapping[str, SupervisorFlags]) -> list[Task] | None:
        if not self.expect(node, "list", "tasks"):
            return None
        if not node.value:
            self.error(node, "tasks must list at least one task")
            return None
        unique = self.unique_names(node, "task")
        tasks = [task for item in node.value if (task := self.task(item, policies))]
        return tasks if unique and len(tasks) == len(node.value) else None

    def unique_names(self, node: Located, what: str) -> bool:
        """Report repeated names among the list's items; True if there are none."""
        seen: dict[str, int] = {}
        unique = True
        for item in node.value:
            name = _at(item, "name")
            if name is item or name.kind != "string":
                continue
            if name.value in seen:
                self.error(name, f"duplicate {what} name {name.value!r} "
                                 f"(first at line {seen[name.value]})")
                unique = False
            else:
                seen[name.value] = name.line
        return unique

    def task(self, node: Located, policies: Mapping[str, SupervisorFlags]) -> Task | None:
        keys = self.keys(node, TASK_KEYS, "a task", required=("name", "steps"))
        if node.kind != "mapping":
            return None
        name = self.name(keys["name"], "task name") if "name" in keys else None
        needs: list[str] = []
        if "needs" in keys:
            items = keys["needs"]
            for need in items.value if items.kind == "list" else [items]:
                value = self.name(need, "needs")
                if value is not None:
                    needs.append(value)
        supervision: SupervisorFlags | None = TASK_DEFAULT
        if "supervision" in keys:
            supervision = self.supervision(keys["supervision"], TASK_DEFAULT, policies)
        steps = self.steps(keys["steps"]) if "steps" in keys else None
        if name is None or steps is None or supervision is None:
            return None
        return Task(name=name, needs=tuple(needs), supervision=supervision, steps=tuple(steps),
                    line=node.line, col=node.col)

    def steps(self, node: Located) -> list[Step] | None:
        if not self.expect(node, "list", "steps"):
            return None
        if not node.value:
            self.error(node, "steps must list at least one step")
            return None
        unique = self.unique_names(node, "step")
        steps = [step for item in node.value if (step := self.step(item))]
        return steps if unique and len(steps) == len(node.value) else None

    def step(self, node: Located) -> Step | None:
        keys = self.keys(node, STEP_KEYS, "a step", required=("name", "plugin"))
        if node.kind != "mapping":
            return None
        name = self.name(keys["name"], "step name") if "name" in keys else None
        plugin = self.string(keys["plugin"], "plugin") if "plugin" in keys else None
        if plugin is not None and plugin not in self.catalog.plugins:
            hint = difflib.get_close_matches(plugin, self.catalog.plugins, n=1)
            suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
            self.error(keys["plugin"], f"unknown plugin {plugin!r}{suggestion}; known: "
                                       f"{', '.join(sorted(self.catalog.plugins)) or 'none'}")
            plugin = None
        fields: dict[str, Any] = {}
        if "with" in keys and self.expect(keys["with"], "mapping", "with"):
            fields["with_"] = keys["with"].plain()
        if "timeout" in keys:
            fields["timeout"] = self.duration(keys["timeout"], "timeout")
            if fields["timeout"] == 0:
                self.error(keys["timeout"], "timeout must be longer than 0")
                fields["timeout"] = None
        if "restart" in keys:
            fields["restart"] = self.choice(keys["restart"], Restart, "restart")
        if "runner" in keys:
            fields["runner"] = self.choice(keys["runner"], Runner, "runner")
        if "on_error" in keys:
            fields["on_error"] = self.on_error(keys["on_error"])
        info = self.catalog.plugins.get(plugin) if plugin is not None else None
        if info is not None:
            runner = fields.get("runner")
            if runner is not None and runner.value not in info.modes:
                self.error(keys["runner"], f"plugin {plugin!r} cannot run {runner.value} "
                                           f"(its modes: {', '.join(info.modes)})")
            given = fields.get("with_", {})
            for input_name, spec in info.inputs.items():
                if isinstance(spec, dict) and spec.get("required") and input_name not in given:
                    self.error(keys.get("with", node),
                               f"plugin {plugin!r} needs with.{input_name}")
        if name is None or plugin is None or any(
            fields.get(key) is None for key in ("timeout", "restart", "runner", "on_error")
            if key in fields
        ):
            return None
        return Step(name=name, plugin=plugin, line=node.line, col=node.col, **fields)

    def on_error(self, node: Located) -> dict[str, ErrorAction] | None:
        if not self.expect(node, "mapping", "on_error"):
            return None
        actions: dict[str, ErrorAction] = {}
        for key, (key_node, value) in node.value.items():
            if not isinstance(key, str) or not NAME.fullmatch(key.replace(".", "_")):
                self.error(key_node, f"on_error keys are error type names such as "
                                     f"{', '.join(BUILTIN_ERROR_TYPES)} (got {_show(key)})")
                continue
            action = self.choice(value, ErrorAction, f"on_error {key!r}")
            if action is not None:
                actions[key] = action
        return actions if len(actions) == len(node.value) else None

    # -- across tasks ----------------------------------------------------------------

    def check_needs(self, node: Located) -> None:
        """`needs` name tasks of this playbook, and never in a cycle (raw YAML: always runs)."""
        graph: dict[str, list[tuple[str, Located]]] = {}
        for item in node.value:
            name_node = _at(item, "name")
            if name_node is item or name_node.kind != "string":
                continue
            needs = _at(item, "needs")
            entries = [] if needs is item else needs.value if needs.kind == "list" else [needs]
            graph.setdefault(name_node.value, []).extend(
                (need.value, need) for need in entries if need.kind == "string"
            )
        for name, pairs in graph.items():
            for need, at in pairs:
                if need == name:
                    self.error(at, f"task {name!r} needs itself")
                elif need not in graph:
                    hint = difflib.get_close_matches(need, graph, n=1)
                    suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
                    self.error(at, f"task {name!r} needs {need!r}, "
                                   f"which is not a task here{suggestion}")
        cycle = _find_cycle({
            name: [need for need, _ in pairs if need in graph and need != name]
            for name, pairs in graph.items()
        })
        if cycle:
            at = next(at for need, at in graph[cycle[0]] if need == cycle[1])
            self.error(at, f"needs form a cycle: {' -> '.join(cycle)}")

    def check_templates(self, node: Located, variables: Mapping[str, Any]) -> None:
        """Template references, on the raw YAML: reported even when other things are wrong."""
        layout = _Layout.of(node)
        for task_node in node.value:
            task = _name_of(task_node)
            steps = _at(task_node, "steps")
            if task is None or steps is task_node or steps.kind != "list":
                continue
            for step_node in steps.value:
                step = _name_of(step_node)
                with_node = _at(step_node, "with")
                if step is None or with_node is step_node:
                    continue
                for located in _strings(with_node):
                    self.check_template(located, task, step, layout, variables)

    def check_template(
        self, node: Located, task: str, step: str, layout: _Layout, variables: Mapping[str, Any]
    ) -> None:
        try:
            found = references(node.value)
        except TemplateError as error:
            self.error(node, str(error))
            return
        for ref in found:
            problem = _reference_problem(ref.root, ref.path, task, step, layout, variables)
            if problem:
                self.error(node, problem)


@attrs.frozen
class _Layout:
    """Task and step names, their order and needs, read off the raw YAML."""

    steps: Mapping[str, list[str]]
    before: Mapping[str, set[str]]

    @classmethod
    def of(cls, node: Located) -> _Layout:
        steps: dict[str, list[str]] = {}
        needs: dict[str, list[str]] = {}
        for task_node in node.value:
            task = _name_of(task_node)
            if task is None:
                continue
            step_list = _at(task_node, "steps")
            steps[task] = [name for s in (step_list.value if step_list.kind == "list" else [])
                           if (name := _name_of(s)) is not None]
            need_node = _at(task_node, "needs")
            entries = [] if need_node is task_node else (
                need_node.value if need_node.kind == "list" else [need_node])
            needs[task] = [n.value for n in entries if n.kind == "string"]
        return cls(steps, _transitive_needs(needs))


def _name_of(node: Located) -> str | None:
    name = _at(node, "name")
    return name.value if name is not node and name.kind == "string" else None


def _reference_problem(
    root: str,
    path: tuple[str, ...],
    task: str,
    step: str,
    layout: _Layout,
    variables: Mapping[str, Any],
) -> str | None:
    if root not in CONTEXT_NAMES:
        return (f"unknown name {root!r} in a template "
                f"(use {', '.join(CONTEXT_NAMES)})")
    if root == "vars" and path and path[0] not in variables:
        return f"vars.{path[0]} is not defined in vars (nor given with --set)"
    if root == "workflow" and path and path[0] not in ("id", "name"):
        return f"workflow.{path[0]}: workflow has only id and name"
    if root == "steps" and path:
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
        if other == task:
            return f"tasks.{other} is this task: use steps.<step> for its earlier steps"
        if other not in layout.before.get(task, set()):
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


def _at(node: Located, key: str) -> Located:
    entry = node.value.get(key) if isinstance(node.value, dict) else None
    return entry[1] if entry else node


def _find_cycle(graph: Mapping[str, list[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(name: str) -> list[str] | None:
        state[name] = 1
        stack.append(name)
        for need in graph.get(name, []):
            if state.get(need) == 1:
                return [*stack[stack.index(need):], need]
            if need not in state:
                found = visit(need)
                if found:
                    return found
        stack.pop()
        state[name] = 2
        return None

    for name in graph:
        if name not in state:
            cycle = visit(name)
            if cycle:
                return cycle
    return None


def _transitive_needs(needs: Mapping[str, list[str]]) -> dict[str, set[str]]:
    """Every task that runs before each task (what it needs, and what those need)."""
    result: dict[str, set[str]] = {}
    for task in needs:
        seen: set[str] = set()
        todo = [n for n in needs[task] if n in needs]
        while todo:
            need = todo.pop()
            if need not in seen and need != task:
                seen.add(need)
                todo.extend(n for n in needs.get(need, []) if n in needs)
        result[task] = seen
    return result


def _show(value: Any) -> str:
    """A value for a message: a mapping or list by its kind, a scalar by its repr."""
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."

