"""Templating of a step's `with:`: sandboxed Jinja2 with strict undefined.

A template may use `vars`, `workflow` (`id`, `name`), `steps.<step>.output`
(earlier steps of its own task), `tasks.<task>.steps.<step>.output` (steps of
tasks it needs) and `attempt`. `references()` finds what a template refers
to, so the loader can refuse a reference to a step that does not run before.

A string that is exactly one ``{{ expression }}`` renders to the
expression's own value (a list stays a list); any other string renders to a
string.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Iterator, Mapping
from typing import Any

import attrs
import jinja2
from jinja2 import nodes

from noetl_actors.errors import TemplateError
from noetl_actors.playbook._sandbox import (
    DEFAULT_LIMITS,
    SandboxEnvironment,
    TemplateLimits,
    budget,
    limited,
)

__all__ = ["CONTEXT_NAMES", "DEFAULT_LIMITS", "LOOP_INDEX", "Reference", "TemplateLimits",
           "condition_holds", "condition_source", "references", "render_value"]

CONTEXT_NAMES = ("vars", "workflow", "steps", "tasks", "attempt", "inputs")
LOOP_INDEX = "iteration"
"""In the steps of a looped task: the index of its iteration (0, 1, ...); its item is
the loop's `as` name."""

class _DataEnvironment(SandboxEnvironment):
    """`output.items` is the output's key "items", not the dict's method.

    Templates here read data (step outputs, vars), so a key wins over an
    attribute of the same name; everything else is Jinja's usual lookup.
    """

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, Mapping) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)


_ENV = _DataEnvironment(undefined=jinja2.StrictUndefined, autoescape=False)
_WHOLE_EXPRESSION = re.compile(r"^\s*\{\{(.*)\}\}\s*$", re.DOTALL)


@attrs.frozen
class Reference:
    """One name a template uses, with the constant attribute path after it."""

    root: str
    path: tuple[str, ...]


def is_template(value: str) -> bool:
    return "{{" in value or "{%" in value


def references(source: str) -> list[Reference]:
    """What `source` refers to (names it does not define itself).

    Raises:
        TemplateError: the template does not parse (the message says where).
    """
    try:
        tree = _ENV.parse(source)
    except jinja2.TemplateSyntaxError as error:
        raise TemplateError(f"template syntax: {error.message}") from None
    local = {
        node.name for node in tree.find_all(nodes.Name) if node.ctx in ("store", "param")
    }
    local |= {macro.name for macro in tree.find_all(nodes.Macro)}
    if any(True for _ in tree.find_all(nodes.For)):
        local.add("loop")
    if any(True for _ in tree.find_all(nodes.Macro)):
        local |= {"caller", "varargs", "kwargs"}
    found: list[Reference] = []
    for root, path in _chains(tree):
        if root not in local and root not in _ENV.globals:
            found.append(Reference(root, path))
    return found


def _chains(node: nodes.Node) -> Iterator[tuple[str, tuple[str, ...]]]:
    """(name, constant attribute path) for each outermost attribute chain."""
    if isinstance(node, nodes.Getattr | nodes.Getitem):
        path: list[str] = []
        inner: nodes.Node = node
        while isinstance(inner, nodes.Getattr | nodes.Getitem):
            if isinstance(inner, nodes.Getattr):
                path.append(inner.attr)
            elif isinstance(inner.arg, nodes.Const):
                path.append(str(inner.arg.value))
            else:
                path.clear()  # a computed key: only the part before it is known
                yield from _chains(inner.arg)
            inner = inner.node
        if isinstance(inner, nodes.Name) and inner.ctx == "load":
            yield inner.name, tuple(reversed(path))
            return
        yield from _chains(inner)
        return
    if isinstance(node, nodes.Name):
        if node.ctx == "load":
            yield node.name, ()
        return
    for child in node.iter_child_nodes():
        yield from _chains(child)


def condition_source(when: str | bool) -> str:
    """The template of a `when:`: a Jinja expression, bare (``vars.n > 1``) or in braces
    (``{{ vars.n > 1 }}``), or a YAML boolean.

    Raises:
        TemplateError: it is text around a template (``{{ x }} == 0``), whose value
            would be a string, true whenever it is not empty.
    """
    if isinstance(when, bool):
        return "{{ true }}" if when else "{{ false }}"
    whole = _WHOLE_EXPRESSION.match(when)
    if whole and "{{" not in whole.group(1) and "}}" not in whole.group(1):
        return when
    if is_template(when):
        bare = re.sub(r"\{\{\s*|\s*\}\}", "", when).strip()
        raise TemplateError(f"when must be one expression, such as {bare!r} or "
                            f"'{{{{ {bare} }}}}' (got {when!r}: text around a template is a "
                            f"string, true whenever it is not empty)")
    return "{{ " + when + " }}"


def condition_holds(when: str | bool, context: Mapping[str, Any]) -> bool:
    """Whether a `when:` is true in `context`: the truth of its value, as Jinja's `if`
    takes it (a string is true unless it is empty; compare it: ``x.stdout | trim == 'y'``).

    Raises:
        TemplateError: it does not render (an undefined name, say).
    """
    return bool(render_value(condition_source(when), context))


def render_value(value: Any, context: Mapping[str, Any], *,
                 limits: TemplateLimits = DEFAULT_LIMITS,
                 timeout: float | None = None) -> Any:
    """Render every template string inside `value` (dicts and lists walked), within
    `limits` (`TemplateLimits`): all of it within `limits.seconds`, or `timeout` if
    that is sooner (what is left of its step's timeout).

    Raises:
        TemplateError: a template failed: undefined name, syntax, sandbox, a limit.
    """
    seconds = limits.seconds if timeout is None else min(limits.seconds, timeout)
    with limited(limits, time.monotonic() + seconds):
        return _render(value, context)


def _render(value: Any, context: Mapping[str, Any]) -> Any:
    if isinstance(value, str):
        return _render_string(value, context) if is_template(value) else value
    if isinstance(value, Mapping):
        return {key: _render(item, context) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_render(item, context) for item in value]
    return value


def _render_string(source: str, context: Mapping[str, Any]) -> Any:
    try:
        whole = _WHOLE_EXPRESSION.match(source)
        if whole and "{{" not in whole.group(1) and "}}" not in whole.group(1):
            result = _expression(whole.group(1))(**context)
            if isinstance(result, jinja2.Undefined):
                str(result)  # raises UndefinedError with its message
            return result
        return _bounded(_template(source).generate(**context))
    except jinja2.TemplateError as error:
        raise TemplateError(f"{_short(source)}: {error.message or error}") from None
    except RecursionError:
        raise TemplateError(f"{_short(source)}: it recurses too deep") from None
    except MemoryError:
        raise TemplateError(f"{_short(source)}: it ran out of memory") from None
    except Exception as error:  # 1/0, "a" + 1, range(10**10): the template's fault
        raise TemplateError(f"{_short(source)}: {type(error).__name__}: {error}") from None


def _bounded(pieces: Iterator[str]) -> str:
    """A template's output, piece by piece: refused past the output limit or deadline."""
    out: list[str] = []
    size = 0
    for piece in pieces:
        size += len(piece)
        limits = budget()
        if size > limits.output:
            raise jinja2.exceptions.SecurityError(
                f"its output is past the limit of {limits.output:,} characters "
                f"(template limits)")
        out.append(piece)
    return "".join(out)


def _short(source: str) -> str:
    """A template's source for an error message: at most 200 characters of it."""
    return repr(source) if len(source) <= 200 else repr(source[:200]) + "..."


# Jinja compiles a template to Python each time it is given one as a string
# (~0.7 ms for a small one); a step renders the same `with:` at every attempt
# of every run, so the compiled forms are kept, by source.


@functools.lru_cache(maxsize=4096)
def _expression(source: str) -> Any:
    return _ENV.compile_expression(source, undefined_to_none=False)


@functools.lru_cache(maxsize=4096)
def _template(source: str) -> jinja2.Template:
    return _ENV.from_string(source)
