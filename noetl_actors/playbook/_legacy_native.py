"""The native tree of a translated legacy playbook: tasks, steps and plugins."""

from __future__ import annotations

from typing import TYPE_CHECKING

from noetl_actors.playbook._legacy_flow import (
    Flow,
    Route,
    Step,
    Task,
    is_router,
    located_name,
    plan,
)
from noetl_actors.playbook._legacy_placeholders import condition, inputs, rewrite
from noetl_actors.playbook._source import Located

if TYPE_CHECKING:
    from noetl_actors.playbook._legacy import Translator

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


def native_tasks(
    translator: Translator, node: Located, spec: dict[str, tuple[Located, Located]]
) -> Located:
    flow = plan(translator, spec)
    items = [native_task(translator, task, flow) for task in translator.tasks
             if not is_router(translator, task)]
    items = [_unchecked(translator, item) for item in items]
    return Located(items, node.line, node.col)


def native_task(translator: Translator, task: Task, flow: Flow) -> Located:
    if task.node.kind != "mapping":
        return task.node
    at = task.node
    entries = _name_entry(task)
    if task.legacy in flow.unreached:  # not reached from the start: it does not run
        where = task.name or at
        entries.append(("when", where, Located(False, where.line, where.col)))
    routes = _routes(translator, task, flow.routes.get(task.legacy or "", []))
    if routes:
        first = routes[0]
        entries.append(("next", first, Located(routes, first.line, first.col)))
    if task.steps is not None:
        steps_at = task.steps_node or at
        steps = [native_step(translator, step, task) for step in task.steps]
        entries.append(("steps", task.steps_key or steps_at,
                        Located(steps, steps_at.line, steps_at.col)))
    elif task.steps_node is not None:
        entries.append(("steps", task.steps_key or task.steps_node, task.steps_node))
    return Located({key: (key_node, value) for key, key_node, value in entries},
                   at.line, at.col)


def _routes(translator: Translator, task: Task, routes: list[Route]) -> list[Located]:
    """A task's `next:` entries: one per target, its branches' conditions or-ed (a branch
    without one, or whose condition could not be translated, is always taken), its
    params the target's inputs (`with`)."""
    by_target: dict[str, tuple[Located, list[Located] | None, Located | None]] = {}
    for route in routes:
        target = located_name(translator, route.target, route.at)
        when = condition(translator, route.condition, task) if route.condition else None
        given = inputs(translator, route.params, task) if route.params else None
        seen = by_target.get(target.value)
        if seen is None:
            by_target[target.value] = (target, None if when is None else [when], given)
            continue
        whens = None if seen[1] is None or when is None else [*seen[1], when]
        by_target[target.value] = (seen[0], whens, seen[2] or given)
    entries = []
    for target, whens, given in by_target.values():
        if whens is None and given is None:
            entries.append(target)
            continue
        keys: dict[str, tuple[Located, Located]] = {"task": (target, target)}
        if whens is not None:
            text = whens[0].value if len(whens) == 1 else " or ".join(
                f"({w.value})" for w in whens)
            keys["when"] = (whens[0], Located(text, whens[0].line, whens[0].col))
        if given is not None:
            keys["with"] = (given, given)
        entries.append(Located(keys, target.line, target.col))
    return entries


def _unchecked(translator: Translator, task: Located) -> Located:
    """`task` with ``check: false`` in the `with:` of its shell steps whose exit code a
    template reads (the old runtime let a switch branch on a non-zero exit; a native
    shell step fails on one unless told not to). Done once every template is read."""
    if task.kind != "mapping" or "steps" not in task.value or "name" not in task.value:
        return task
    name = task.value["name"][1].value
    steps_key, steps = task.value["steps"]
    if steps.kind != "list":
        return task
    changed = []
    for step in steps.value:
        keys = step.value if step.kind == "mapping" else {}
        given = keys.get("with", (None, None))[1]
        if "name" in keys and given is not None and given.kind == "mapping" \
                and (name, keys["name"][1].value) in translator.exit_codes_read:
            at = keys["with"][0]
            given = Located({**given.value, "check": (Located("check", at.line, at.col),
                                                      Located(False, at.line, at.col))},
                            given.line, given.col)
            step = Located({**keys, "with": (keys["with"][0], given)}, step.line, step.col)
        changed.append(step)
    return Located({**task.value, "steps": (steps_key, Located(changed, steps.line,
                                                                steps.col))},
                   task.line, task.col)


def native_step(translator: Translator, step: Step, task: Task) -> Located:
    if step.node.kind != "mapping":
        return step.node
    at = step.node
    entries = _name_entry(step)
    plugin = None
    if step.plugin is not None and step.plugin_key is not None:
        plugin_node = translate_plugin(translator, step.plugin)
        plugin = plugin_node.value if plugin_node.kind == "string" else None
        entries.append(("plugin", step.plugin_key, plugin_node))
    fields = plugin_fields(translator, step, plugin)
    if fields:
        first = next(iter(fields.values()))[0]
        rewritten = {key: (key_node, rewrite(translator, value, task))
                     for key, (key_node, value) in fields.items()}
        entries.append(("with", first, Located(rewritten, first.line, first.col)))
    return Located({key: (key_node, value) for key, key_node, value in entries},
                   at.line, at.col)


def translate_plugin(translator: Translator, node: Located) -> Located:
    """``name:version`` -> the native plugin name, warning what changed."""
    if node.kind != "string":
        return node
    text = node.value.strip()
    base, _, version = text.partition(":")
    base = base.strip()
    native = native_plugin(node)
    notes = []
    if native != base:
        notes.append(f"translated to {native!r}")
    if version:
        notes.append(f"its version {version!r} is ignored (native plugins are not "
                     "versioned)")
    if notes:
        translator.warn(node, f"plugin {text!r}: {'; '.join(notes)}")
    return Located(native, node.line, node.col)


def plugin_fields(translator: Translator, step: Step, plugin: str | None
                  ) -> dict[str, tuple[Located, Located]]:
    fields = dict(step.fields)
    for old, new in FIELD_RENAMES.get(plugin or "", {}).items():
        if old in fields and new not in fields:
            key_node, value = fields.pop(old)
            translator.warn(key_node, f"{old!r} of plugin {plugin!r} becomes {new!r}")
            fields[new] = (Located(new, key_node.line, key_node.col), value)
    if "exitCode" in fields:
        key_node, value = fields.pop("exitCode")
        translator.warn(key_node, f"exitCode {value.value!r} dropped: the expected exit status is "
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
                translator.warn(args_key, "command and args joined into one shell command line "
                                          "(an argument holds a shell operator)")
                fields["command"] = (command_key,
                                     Located(line, command.line, command.col))
            else:
                fields["command"] = (command_key,
                                     Located(parts, command.line, command.col))
    return fields


def native_plugin(node: Located) -> str:
    """The native name of a legacy plugin (``"http-handler:0_1_0"`` -> ``http``)."""
    if node.kind != "string":
        return ""
    base = str(node.value).strip().partition(":")[0].strip()
    return PLUGIN_ALIASES.get(base.lower(), base)


def _name_entry(item: Task | Step) -> list[tuple[str, Located, Located]]:
    """The native ``name:`` entry of a translated task or step (none if it has no name)."""
    if item.name is None:
        return []
    return [("name", item.name_key or item.name, item.name)]
