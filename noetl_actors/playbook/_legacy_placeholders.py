"""Legacy placeholders in the native form.

``{{ spec.vars.X }}`` becomes ``{{ vars.X }}``,
``{{ tasks.T.steps.S.response }}`` becomes ``{{ tasks.T.steps.S.output }}``
(``steps.S.output`` inside task T), ``{{ input.X }}`` becomes ``{{ vars.X }}``
and ``{{ metadata.name }}`` becomes ``{{ workflow.name }}``.
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import jinja2

from noetl_actors.playbook._source import Located

if TYPE_CHECKING:
    from noetl_actors.playbook._legacy import Translator
    from noetl_actors.playbook._legacy_flow import Task

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
WHOLE_INPUT = re.compile(r"^\s*\{\{\s*input\.([A-Za-z0-9_-]+)\s*\}\}\s*$")
_JINJA_WORDS = {"and", "or", "not", "in", "is", "if", "else", "true", "false", "none",
                "True", "False", "None", "for", "recursive", "with"}


def resolve(translator: Translator, node: Located) -> str | None:
    """A task name, with ``{{ spec.vars.X }}`` read from the vars."""
    if node.kind not in ("string", "number"):
        return None
    text = str(node.value).strip()
    whole = _WHOLE_VAR.match(text)
    if whole:
        value = translator.raw_vars.get(whole.group(1))
        if isinstance(value, str) and "{{" not in value:
            return value.strip()
        translator.warn(node, f"{text!r} does not name a task (vars.{whole.group(1)} is not a "
                              "plain name): ignored")
        return None
    if "{{" in text or "{%" in text:
        translator.warn(node, f"{text!r} is computed at run time; a task to run next must be "
                              "named: ignored")
        return None
    return text


def rewrite(translator: Translator, node: Located, task: Task | None) -> Located:
    """`node` with every legacy placeholder in its strings in the native form."""

    def one(string: Located) -> Located:
        inputs: set[str] = set()
        notes: list[str] = []
        text = _BLOCK.sub(lambda m: rewrite_block(translator, m.group(0), task, inputs, notes),
                          string.value)
        for name in sorted(inputs):
            translator.warn(string, f"input.{name} (the run input) becomes vars.{name}: "
                                    f"give it with --set {name}=VALUE")
        for note in dict.fromkeys(notes):
            translator.warn(string, note)
        return Located(text, string.line, string.col)

    return _each_string(node, one)


def _each_string(node: Located, change: Callable[[Located], Located]) -> Located:
    """`node` with `change` applied to every string in it (mappings and lists walked)."""
    if node.kind == "string":
        return change(node)
    if node.kind == "mapping":
        return Located({key: (key_node, _each_string(value, change))
                        for key, (key_node, value) in node.value.items()},
                       node.line, node.col)
    if node.kind == "list":
        return Located([_each_string(item, change) for item in node.value],
                       node.line, node.col)
    return node


def condition(translator: Translator, node: Located, task: Task) -> Located | None:
    """A switch branch's condition in task `task`, as the `when` of a native route; None
    (with a warning that says why) if it cannot be one, so the route is always taken.

    The old dialect compared outside the braces (``{{ x.exitCode }} == 0``): each
    ``{{ expression }}`` becomes ``(expression)`` of one bare expression. Names of the
    task's own steps (``now.output``, ``steps.now``) read ``tasks.<task>.steps...``:
    a route is decided after its task, from its outputs.
    """
    if node.kind == "boolean":
        return node
    if node.kind != "string":
        translator.warn(node, f"condition {node.value!r} is not an expression: dropped, the "
                              "route is always taken")
        return None
    text = node.value.strip()
    if "{%" in text:
        translator.warn(node, "condition with a {% %} block dropped, the route is always "
                              "taken: a route's when is one expression")
        return None
    rewritten = _from_task(translator, Located(text, node.line, node.col), task).value
    blocks = re.findall(r"\{\{(.*?)\}\}", rewritten, flags=re.DOTALL)
    if blocks and re.fullmatch(r"\s*\{\{.*\}\}\s*", rewritten, flags=re.DOTALL) \
            and len(blocks) == 1:
        expression = blocks[0].strip()
    elif blocks:
        expression = re.sub(r"\{\{(.*?)\}\}", lambda m: f"({m.group(1).strip()})",
                            rewritten, flags=re.DOTALL).strip()
    else:
        expression = rewritten
    try:
        jinja2.Environment().parse("{{ " + expression + " }}")
    except jinja2.TemplateSyntaxError as error:
        translator.warn(node, f"condition {node.value!r} dropped, the route is always taken: "
                              f"it is not one expression ({error.message})")
        return None
    return Located(expression, node.line, node.col)


def inputs(translator: Translator, node: Located, task: Task) -> Located:
    """A branch's params, as the `with` of a native route (the next task's `inputs`):
    its placeholders read the task the route leaves, as a condition's do."""
    return _from_task(translator, node, task)


def _from_task(translator: Translator, node: Located, task: Task) -> Located:
    """`node` rewritten as a route of `task` reads it: names of the task's own steps
    (``now.output``, ``steps.now``) read ``tasks.<task>.steps...``, a route being
    decided after its task, in the workflow, from its outputs."""
    own = sorted(task.step_names, key=len, reverse=True)
    legacy = task.legacy or ""

    def qualify(match: re.Match[str]) -> str:
        inner = re.sub(r"(?<![\w.\]'\"$-])steps(?=[.\[])", f"tasks.{legacy}.steps",
                       match.group(1))
        for step in own:
            inner = re.sub(rf"(?<![\w.\]'\"$-]){re.escape(step)}(?=[.\[])",
                           f"tasks.{legacy}.steps.{step}", inner)
        return "{{" + inner + "}}"

    def one(string: Located) -> Located:
        text = re.sub(r"\{\{(.*?)\}\}", qualify, string.value, flags=re.DOTALL)
        return rewrite(translator, Located(text, string.line, string.col), None)

    return _each_string(node, one)


def rewrite_block(translator: Translator, block: str, task: Task | None, inputs: set[str],
                  notes: list[str]) -> str:
    """One ``{{ }}`` or ``{% %}`` block in the native form; the run inputs it reads are
    added to `inputs`, and what the reader should be warned of to `notes`."""
    def data_chain(match: re.Match[str]) -> str:
        legacy = match.group("task")
        other = translator.by_legacy.get(legacy)
        if other is None or legacy in ("tasks", "steps", "vars", "spec"):
            return match.group(0)
        return step_ref(translator, other, match.group("step"),
                        _segments(match.group("rest")), task, notes)

    def chain(match: re.Match[str]) -> str:
        root, segments = match.group("root"), _segments(match.group("rest"))
        names = [name for name, raw in segments if raw is None]
        if root == "spec":
            if len(names) >= 2 and segments[0][0] == "vars" and segments[1][1] is None:
                return "vars" + _join(segments[1:])
            return match.group(0)
        if root == "tasks":
            legacy, used = _longest(segments, translator.by_legacy)
            other = translator.by_legacy.get(legacy)
            if used and segments[used:used + 1] == [("steps", None)]:
                step, taken = _longest(segments[used + 1:],
                                       other.step_names if other else {})
                if taken:
                    return step_ref(translator, other or legacy, step,
                                    segments[used + 1 + taken:], task, notes)
            return "tasks" + _join(segments)
        if root == "steps" and task is not None:
            step, taken = _longest(segments, task.step_names)
            if taken:
                return step_ref(translator, task, step, segments[taken:], task, notes)
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


def step_ref(translator: Translator, other: Task | str, step: str,
             tail: list[tuple[str, str | None]], here: Task | None,
             notes: list[str] | None = None) -> str:
    """``tasks.T.steps.S.<tail>`` of a legacy template, in the native form.

    `other` is the task (or the name of a task that does not exist, left
    for the loader to report); `here` the task the template is in. A shell
    step whose ``exitCode`` is read is noted in the translator's
    ``exit_codes_read``: it gets ``check: false``, so that a non-zero exit is
    read, as the old runtime let a switch read it, rather than a failure. The
    ``exitCode`` of a step that is not a shell step becomes ``0``, with a note:
    its native plugin has no exit code, and a native step that failed fails
    its task before any later step or route reads it.
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
    if tail[:1] == [("exitCode", None)] and plugin == "shell":
        tail = [("exit_code", None), *tail[1:]]  # the shell plugin's output says exit_code
        translator.exit_codes_read.add((task_name, step_name))  # so: check: false
    elif tail == [("exitCode", None)] and plugin and notes is not None:
        notes.append(f"exitCode of {plugin} step {step!r} becomes 0: a native {plugin} step "
                     "has no exit code, and one that failed fails its task before a later "
                     "step or a route reads it")
        return "0"
    ref = "steps" + _join([(step_name, None), ("output", None), *tail])
    if other is here:
        return ref
    return "tasks" + _join([(task_name, None)]) + "." + ref


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
