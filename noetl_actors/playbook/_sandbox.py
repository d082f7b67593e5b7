"""The template sandbox: what a template may touch, and how much it may compute.

Templates render inside the node, in the actor of the step they belong to,
so a template that computes for minutes or fills gigabytes takes the node
down with it. Jinja's `SandboxedEnvironment` keeps templates away from
Python's internals (attributes starting with ``_``, format strings reaching
them); this one also refuses, before computing them, results past
`TemplateLimits.output` characters or items (``'x' * 10**9``, ``7 ** 10**8``,
``'%1000000000s' | format(1)``, ``s.center(10**9)``, ``lipsum(10**9)``), and
stops a render that runs past its deadline (checked at each operator, call,
iteration of ``range`` and piece of output): a refusal is a `TemplateError`,
a step failure of type ``template``.
"""

from __future__ import annotations

import contextvars
import functools
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sized
from typing import Any

import attrs
import jinja2
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError
from jinja2.nodes import Concat
from jinja2.sandbox import SandboxedEnvironment, safe_range

__all__ = ["DEFAULT_LIMITS", "SandboxEnvironment", "TemplateLimits", "budget", "limited"]


@attrs.frozen
class TemplateLimits:
    """Bounds on one render (of one template string)."""

    output: int = 1_000_000
    """Characters of a string, items of a list, a template's output may have."""
    seconds: float = 5.0
    """Seconds one render may take (less if its step's timeout is sooner)."""
    int_bits: int = 100_000
    """Bits of the largest whole number an operator may make (~30,000 digits)."""


DEFAULT_LIMITS = TemplateLimits()

_BUDGET: contextvars.ContextVar[tuple[TemplateLimits, float]] = contextvars.ContextVar(
    "noetl_template_budget", default=(DEFAULT_LIMITS, float("inf")))


class limited:
    """Within this block, renders on this thread obey `limits`, and stop by `deadline`."""

    def __init__(self, limits: TemplateLimits, deadline: float) -> None:
        self._value = (limits, deadline)
        self._token: contextvars.Token[tuple[TemplateLimits, float]] | None = None

    def __enter__(self) -> limited:
        self._token = _BUDGET.set(self._value)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._token is not None
        _BUDGET.reset(self._token)


def budget() -> TemplateLimits:
    """The limits now; raises SecurityError once the render's deadline has passed."""
    limits, deadline = _BUDGET.get()
    if time.monotonic() > deadline:
        raise SecurityError(f"the template took longer than its {limits.seconds:g} s to "
                            f"render (or its step's timeout came first)")
    return limits


def _too_big(what: str, size: int, limits: TemplateLimits) -> SecurityError:
    return SecurityError(f"{what} would be {size:,} long, past the limit of "
                         f"{limits.output:,} (template limits)")


_SEQUENCES = (str, bytes, list, tuple)


def _check_binop(op: str, left: Any, right: Any, limits: TemplateLimits) -> None:
    """Refuse an operation whose result is too large, from its operands' sizes."""
    if op == "*":
        for seq, count in ((left, right), (right, left)):
            if isinstance(seq, _SEQUENCES) and isinstance(count, int):
                size = len(seq) * max(count, 0)
                if size > limits.output:
                    raise _too_big(f"{type(seq).__name__} * {count}", size, limits)
        if isinstance(left, int) and isinstance(right, int):
            bits = left.bit_length() + right.bit_length()
            if bits > limits.int_bits:
                raise SecurityError(f"a product of {bits:,} bits is past the limit of "
                                    f"{limits.int_bits:,} (template limits)")
    elif op == "**" and isinstance(left, int) and isinstance(right, int) and right > 0:
        bits = max(left.bit_length() - 1, 0) * right if abs(left) > 1 else 0
        if bits > limits.int_bits:
            raise SecurityError(f"{left} ** {right} has about {bits:,} bits, past the limit "
                                f"of {limits.int_bits:,} (template limits)")
    elif op == "+" and isinstance(left, _SEQUENCES) and isinstance(right, _SEQUENCES):
        size = len(left) + len(right)
        if size > limits.output:
            raise _too_big("a concatenation", size, limits)
    elif op == "%" and isinstance(left, str):
        _check_format(left, limits)


_WIDTHS = re.compile(r"%[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?|\{[^{}]*?:[^{}]*?(\d+)")


def _check_format(spec: str, limits: TemplateLimits) -> None:
    """Refuse a format string whose widths or precisions make output past the limit."""
    for match in _WIDTHS.finditer(spec):
        for width in match.groups():
            if width == "*":
                raise SecurityError("a '*' width in a format string is not allowed "
                                    "(template limits)")
            if (width and len(width) > 9) or (width and int(width) > limits.output):
                raise _too_big("a formatted field", int(width), limits)


def _check_args(name: str, args: tuple[Any, ...], kwargs: Mapping[str, Any],
                limits: TemplateLimits) -> None:
    """Refuse a call given a count past the limit (a width, a number of words...)."""
    for value in (*args, *kwargs.values()):
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > limits.output:
            raise SecurityError(f"{name} was given {value:,}, past the limit of "
                                f"{limits.output:,} (template limits)")


def _estimate(name: str, obj: Any, args: tuple[Any, ...]) -> int:
    """The size of what a growing call returns, computed before it is called."""
    if name == "replace" and isinstance(obj, str) and len(args) >= 2 \
            and isinstance(args[0], str) and isinstance(args[1], str):
        count = obj.count(args[0]) if args[0] else len(obj) + 1
        return len(obj) + count * max(len(args[1]) - len(args[0]), 0)
    if name == "join" and isinstance(obj, str) and args and isinstance(args[0], Sized):
        items = args[0]
        inner = sum(len(item) for item in items if isinstance(item, str)) \
            if isinstance(items, list | tuple) else 0
        return len(obj) * max(len(items) - 1, 0) + inner
    return 0


_SIZED_BY_ARGS = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs",
                            "generate_lorem_ipsum"})
"""Calls whose result grows with a number they are given (a width, a count of words)."""


def _checked_call(name: str, function: Callable[..., Any], obj: Any,
                  args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
    limits = budget()
    if name in _SIZED_BY_ARGS:
        _check_args(name, args, kwargs, limits)
    if name in ("format", "format_map") and isinstance(obj, str):
        _check_format(obj, limits)
    return _within_output(f"the result of {name}", _estimate(name, obj, args), limits,
                          lambda: function(*args, **kwargs))


def _checked_filter(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """A filter that checks its arguments and its result (`pass_*` markers kept)."""

    @functools.wraps(function)
    def checked(*args: Any, **kwargs: Any) -> Any:
        limits = budget()
        # The filtered value comes first, after any context or environment.
        values = [arg for arg in args if not isinstance(
            arg, jinja2.Environment | jinja2.runtime.Context | jinja2.nodes.EvalContext)]
        obj, rest = (values[0], tuple(values[1:])) if values else (None, ())
        what = f"the {name!r} filter"
        if name in ("center", "indent", "wordwrap"):
            _check_args(what, rest, kwargs, limits)
        if name == "format" and isinstance(obj, str):
            _check_format(obj, limits)
        if name == "replace" and isinstance(obj, str):
            size = _estimate("replace", obj, tuple(str(arg) for arg in rest[:2]))
        elif name == "join" and isinstance(obj, Sized):
            joiner = str(rest[0]) if rest else str(kwargs.get("d", ""))
            size = len(joiner) * max(len(obj) - 1, 0)
        else:
            size = 0
        return _within_output(f"the result of {what}", size, limits,
                              lambda: function(*args, **kwargs))

    return checked


def _within_output(what: str, size: int, limits: TemplateLimits,
                   call: Callable[[], Any]) -> Any:
    """`call()`, refused before it runs if its estimated `size` is over the output limit,
    and after it if what it returned is."""
    if size > limits.output:
        raise _too_big(what, size, limits)
    result = call()
    if isinstance(result, _SEQUENCES) and len(result) > limits.output:
        raise _too_big(what, len(result), limits)
    return result


_GROWING_FILTERS = ("center", "indent", "wordwrap", "format", "replace", "join", "list",
                    "string", "tojson", "sum", "reverse", "sort", "unique")


def _checked_range(*args: int) -> Iterator[int]:
    """`range`, as Jinja's sandbox bounds it, stopping at the render's deadline."""
    numbers = safe_range(*args)
    for count, number in enumerate(numbers):
        if count % 256 == 0:
            budget()
        yield number


def str_join(pieces: tuple[Any, ...]) -> str:
    """``a ~ b``: refused past the output limit (Jinja's own join is unchecked)."""
    limits = budget()
    text = "".join(map(str, pieces))
    if len(text) > limits.output:
        raise _too_big("a '~' concatenation", len(text), limits)
    return text


class _Generator(CodeGenerator):
    """Jinja's code generator, but ``~`` goes through `str_join` here."""

    def visit_Concat(self, node: Concat, frame: Frame) -> None:
        self.write("environment.checked_join((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


class SandboxEnvironment(SandboxedEnvironment):
    """Jinja's sandbox with bounded operators, calls, filters and loops; unsafe
    attributes (``__class__``, ``__globals__``...) raise at once."""

    code_generator_class = _Generator
    intercepted_binops = frozenset({"*", "**", "+", "%"})
    checked_join = staticmethod(str_join)

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.globals["range"] = _checked_range
        for name in _GROWING_FILTERS:
            if name in self.filters:
                self.filters[name] = _checked_filter(name, self.filters[name])

    def call_binop(self, context: jinja2.runtime.Context, operator_: str, left: Any,
                   right: Any) -> Any:
        _check_binop(operator_, left, right, budget())
        return self.binop_table[operator_](left, right)

    def call(__self, __context: jinja2.runtime.Context, __obj: Any,
             *args: Any, **kwargs: Any) -> Any:
        if not __self.is_safe_callable(__obj):
            raise SecurityError(f"{__obj!r} is not safely callable")
        name = getattr(__obj, "__name__", type(__obj).__name__)
        # str.format arrives wrapped by the sandbox (`wrap_str_format`): its string
        # is the wrapped method's.
        owner = getattr(getattr(__obj, "__wrapped__", __obj), "__self__", None)
        return _checked_call(name, functools.partial(__context.call, __obj), owner,
                             args, kwargs)

    def unsafe_undefined(self, obj: Any, attribute: str) -> jinja2.Undefined:
        raise SecurityError(f"access to attribute {attribute!r} of a "
                            f"{type(obj).__name__!r} object is unsafe (not allowed in templates)")

