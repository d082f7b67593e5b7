"""Load and check a playbook: every problem, with its file, line and column.

The checks run over YAML that keeps its positions (`_source`); nothing
is built into the model unless the whole file is valid. Problems are
collected, not raised one by one, so a user fixes a file in one pass.
`PlaybookReader` reads the playbook, its tasks and its steps on top of
`YamlReader` (`_reader`); the checks across tasks are in `_task_graph`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import attrs

from noetl_actors.errors import PlaybookError, TemplateError
from noetl_actors.playbook._catalog import Catalog
from noetl_actors.playbook._limits import DEFAULT_PLAYBOOK_LIMITS, count_problems, size_problem
from noetl_actors.playbook._model import (
    API_VERSION,
    MAX_ITEMS_DEFAULT,
    TASK_DEFAULT,
    WORKFLOW_DEFAULT,
    ErrorAction,
    Loop,
    Playbook,
    Route,
    Runner,
    Step,
    Task,
)
from noetl_actors.playbook._names import did_you_mean, is_name
from noetl_actors.playbook._reader import YamlReader, located_at, show
from noetl_actors.playbook._source import Located, Problem, parse_yaml, paused_gc
from noetl_actors.playbook._task_graph import check_needs, check_templates, value_at
from noetl_actors.playbook._templates import CONTEXT_NAMES, LOOP_INDEX, condition_source
from noetl_actors.runners import kube_problems
from noetl_actors.supervision import Restart, SupervisorFlags

__all__ = ["PlaybookReader", "load_playbook", "parse_playbook"]

BUILTIN_ERROR_TYPES = ("timeout", "crash", "template")

PLAYBOOK_KEYS = ("apiVersion", "kind", "name", "description", "vars", "policies",
                 "supervision", "tasks")
TASK_KEYS = ("name", "needs", "when", "supervision", "loop", "steps", "next")
STEP_KEYS = ("name", "plugin", "when", "with", "timeout", "restart", "runner", "on_error",
             "kubernetes")
NEED_KEYS = ("task", "succeeded")
ROUTE_KEYS = ("task", "when", "with")
LOOP_KEYS = ("over", "as", "max_in_flight", "max_items")

T = TypeVar("T")


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
    with paused_gc():
        return _parse_playbook(text, file, catalog, overrides)


def _parse_playbook(
    text: str,
    file: str,
    catalog: Catalog | None,
    overrides: Mapping[str, Any] | None,
) -> Playbook:
    limits = DEFAULT_PLAYBOOK_LIMITS
    too_big = size_problem(text, file, limits)
    if too_big is not None:
        raise PlaybookError([too_big])
    root, problems = parse_yaml(text, file, limits.depth)
    catalog = catalog or Catalog.default()
    playbook = None
    warnings: list[Problem] = []
    if root is not None:
        from noetl_actors.playbook._legacy import is_legacy, translate_legacy

        if is_legacy(root):
            root, warnings = translate_legacy(root, file)
        reader = PlaybookReader(file, catalog)
        playbook = reader.playbook(root, dict(overrides or {}))
        problems += reader.problems
        if playbook is not None:
            problems += count_problems(list(playbook.tasks), file, limits)
    if problems or playbook is None:
        # Warnings too: a translation's warning often explains the error next to it.
        raise PlaybookError(sorted(problems + warnings, key=lambda p: (p.line, p.col)))
    return attrs.evolve(playbook, warnings=tuple(warnings)) if warnings else playbook


class PlaybookReader(YamlReader):
    """Reads a playbook's located tree into the model, collecting problems."""

    # -- the playbook --------------------------------------------------------------

    def playbook(self, node: Located, overrides: dict[str, Any]) -> Playbook | None:
        keys = self.keys(node, PLAYBOOK_KEYS, "a playbook",
                         required=("apiVersion", "kind", "name", "tasks"))
        if node.kind != "mapping":
            return None
        if "apiVersion" in keys and keys["apiVersion"].value != API_VERSION:
            self.error(keys["apiVersion"], f"apiVersion must be {API_VERSION!r} "
                                           f"(got {show(keys['apiVersion'].value)})")
        if "kind" in keys and keys["kind"].value != "Playbook":
            self.error(keys["kind"], f"kind must be 'Playbook' (got {show(keys['kind'].value)})")
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
            check_needs(keys["tasks"], self.error)
            check_templates(keys["tasks"], variables, self.error)
        if name is None or tasks is None or supervision is None or self.problems:
            return None
        return Playbook(name=name, description=description, vars=variables, policies=policies,
                        supervision=supervision, tasks=tuple(tasks), file=self.file)

    def tasks(self, node: Located, policies: Mapping[str, SupervisorFlags]) -> list[Task] | None:
        return self.named_items(node, "task", lambda item: self.task(item, policies))

    def named_items(
        self, node: Located, what: str, read: Callable[[Located], T | None]
    ) -> list[T] | None:
        """A non-empty list of uniquely named items, each read by `read`; None if any is wrong."""
        if not self.expect(node, "list", f"{what}s"):
            return None
        if not node.value:
            self.error(node, f"{what}s must list at least one {what}")
            return None
        unique = self.unique_names(node, what)
        items = [item for entry in node.value if (item := read(entry))]
        return items if unique and len(items) == len(node.value) else None

    def unique_names(self, node: Located, what: str) -> bool:
        """Report repeated names among the list's items; True if there are none."""
        seen: dict[str, int] = {}
        unique = True
        for item in node.value:
            name = value_at(item, "name")
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
        succeeded: set[str] = set()
        if "needs" in keys:
            items = keys["needs"]
            for need in items.value if items.kind == "list" else [items]:
                value, must_succeed = self.need(need)
                if value is not None:
                    needs.append(value)
                    if must_succeed:
                        succeeded.add(value)
        when = self.when(keys["when"]) if "when" in keys else None
        supervision: SupervisorFlags | None = TASK_DEFAULT
        if "supervision" in keys:
            supervision = self.supervision(keys["supervision"], TASK_DEFAULT, policies)
        loop = self.loop(keys["loop"]) if "loop" in keys else None
        steps = self.steps(keys["steps"]) if "steps" in keys else None
        routes = self.routes(keys["next"]) if "next" in keys else []
        if name is None or steps is None or supervision is None or routes is None or (
                "when" in keys and when is None) or ("loop" in keys and loop is None):
            return None
        return Task(name=name, needs=tuple(needs), needs_succeeded=frozenset(succeeded),
                    when=when, next=tuple(routes), supervision=supervision, loop=loop,
                    steps=tuple(steps), line=node.line, col=node.col)

    def loop(self, node: Located) -> Loop | None:
        """A task's `loop:` (its `over`'s references are checked with the other templates)."""
        keys = self.keys(node, LOOP_KEYS, "a loop", required=("over",))
        if node.kind != "mapping":
            return None
        fields: dict[str, Any] = {}
        over = keys.get("over", node)
        if "over" not in keys:
            pass  # `keys` said so
        elif over.kind == "list":
            fields["over"] = tuple(over.plain())
        elif over.kind == "string":
            try:
                condition_source(over.value)
                fields["over"] = over.value
            except TemplateError as error:
                self.error(over, str(error).replace("when must", "loop: over must", 1)
                           .replace("true whenever it is not empty", "not a list"))
        else:
            self.error(over, f"loop: over must be a list or an expression that gives one "
                             f"(got {show(over.value)})")
        if "as" in keys:
            as_ = keys["as"].value
            if not isinstance(as_, str) or not as_.isidentifier() or not as_.isascii():
                self.error(keys["as"], f"loop: as must be a name a template can use: letters, "
                                       f"digits and '_', not first a digit (got {show(as_)})")
            elif as_ in (*CONTEXT_NAMES, LOOP_INDEX):
                self.error(keys["as"], f"loop: as {as_!r} is a name templates already use "
                                       f"({', '.join((*CONTEXT_NAMES, LOOP_INDEX))}): "
                                       f"choose another")
            else:
                fields["as_"] = as_
        for key in ("max_in_flight", "max_items"):
            if key in keys:
                value = keys[key].value
                if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                    self.error(keys[key], f"loop: {key} must be a whole number >= 1 "
                                          f"(got {show(value)})")
                else:
                    fields[key] = value
        limit = fields.get("max_items", MAX_ITEMS_DEFAULT)
        if isinstance(fields.get("over"), tuple) and len(fields["over"]) > limit:
            self.error(over, f"loop over {len(fields['over'])} items: more than max_items "
                             f"{limit}")
            return None
        if len(fields) != len(keys) or "over" not in fields:
            return None
        return Loop(**fields)

    def routes(self, node: Located) -> list[Route] | None:
        """A task's `next:`: one task name, or a list of names and ``{task: name, when:
        condition, with: inputs}`` (that the tasks exist, and no cycle, is
        `check_needs`'s)."""
        if node.kind not in ("string", "list"):
            self.error(node, f"next must be a task name or a list (got a {node.kind})")
            return None
        items = [node] if node.kind == "string" else node.value
        routes: list[Route] = []
        for item in items:
            if item.kind != "mapping":
                name = self.name(item, "next")
                if name is not None:
                    routes.append(Route(name))
                continue
            keys = self.keys(item, ROUTE_KEYS, "a next entry", required=("task",))
            name = self.name(keys["task"], "next") if "task" in keys else None
            when = self.when(keys["when"]) if "when" in keys else None
            given: dict[str, Any] | None = {}
            if "with" in keys:
                given = keys["with"].plain() if self.expect(keys["with"], "mapping",
                                                              "with") else None
            if name is not None and ("when" not in keys or when is not None) \
                    and given is not None:
                routes.append(Route(name, when, given))
        return routes if len(routes) == len(items) else None

    def need(self, node: Located) -> tuple[str | None, bool]:
        """One entry of `needs`: a task's name, or ``{task: name, succeeded: true}``."""
        if node.kind != "mapping":
            return self.name(node, "needs"), False
        keys = self.keys(node, NEED_KEYS, "a needs entry", required=("task",))
        name = self.name(keys["task"], "needs") if "task" in keys else None
        succeeded = False
        if "succeeded" in keys:
            if keys["succeeded"].kind != "boolean":
                self.error(keys["succeeded"], f"needs: succeeded must be true or false (got "
                                              f"{show(keys['succeeded'].value)})")
                return None, False
            succeeded = keys["succeeded"].value
        return name, succeeded

    def when(self, node: Located) -> str | bool | None:
        """A `when:`: a template expression (checked here for its form; its references
        with the other templates), or a boolean."""
        if node.kind not in ("string", "boolean"):
            self.error(node, f"when must be an expression or true/false "
                             f"(got {show(node.value)})")
            return None
        try:
            condition_source(node.value)
        except TemplateError as error:
            self.error(node, str(error))
            return None
        value: str | bool = node.value
        return value

    def steps(self, node: Located) -> list[Step] | None:
        return self.named_items(node, "step", self.step)

    def step(self, node: Located) -> Step | None:
        keys = self.keys(node, STEP_KEYS, "a step", required=("name", "plugin"))
        if node.kind != "mapping":
            return None
        name = self.name(keys["name"], "step name") if "name" in keys else None
        plugin = self.string(keys["plugin"], "plugin") if "plugin" in keys else None
        if plugin is not None and plugin not in self.catalog.plugins:
            suggestion = did_you_mean(plugin, self.catalog.plugins)
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
        if "when" in keys:
            fields["when"] = self.when(keys["when"])
        if "kubernetes" in keys:
            fields["kubernetes"] = self.kubernetes(keys["kubernetes"])
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
            fields.get(key) is None
            for key in ("timeout", "restart", "runner", "on_error", "when", "kubernetes")
            if key in fields
        ):
            return None
        return Step(name=name, plugin=plugin, line=node.line, col=node.col, **fields)

    def kubernetes(self, node: Located) -> dict[str, Any] | None:
        """A step's Job settings (`kube_problems`), each problem at its own key or value."""
        problems = kube_problems(node.plain())
        for path, message in problems:
            self.error(located_at(node, path), message)
        return None if problems else node.plain()

    def on_error(self, node: Located) -> dict[str, ErrorAction] | None:
        if not self.expect(node, "mapping", "on_error"):
            return None
        actions: dict[str, ErrorAction] = {}
        for key, (key_node, value) in node.value.items():
            if not isinstance(key, str) or not is_name(key.replace(".", "_")):
                self.error(key_node, f"on_error keys are error type names such as "
                                     f"{', '.join(BUILTIN_ERROR_TYPES)} (got {show(key)})")
                continue
            action = self.choice(value, ErrorAction, f"on_error {key!r}")
            if action is not None:
                actions[key] = action
        return actions if len(actions) == len(node.value) else None
