"""YAML with positions: every value knows the line and column it came from.

PyYAML's composer already gives each node a start mark; this module turns
the node tree into plain values wrapped in `Located`, so the loader can say
``file:line:col: what is wrong`` about any key or value, and it reports
duplicate keys (which PyYAML silently overwrites).
"""

from __future__ import annotations

import contextlib
import datetime
import gc
from collections.abc import Iterator
from typing import Any

import attrs
import yaml

__all__ = ["Located", "Problem", "parse_yaml", "paused_gc"]


@attrs.frozen
class Problem:
    """One thing wrong with a playbook, where it is."""

    file: str
    line: int
    col: int
    message: str
    warning: bool = False

    def __str__(self) -> str:
        kind = "warning: " if self.warning else ""
        return f"{self.file}:{self.line}:{self.col}: {kind}{self.message}"


@attrs.frozen
class Located:
    """A YAML value and where it starts (1-based line and column).

    Mappings hold ``{key: (key Located, value Located)}``; sequences hold a
    list of Located; scalars hold the Python value (str, int, float, bool, None).
    """

    value: Any
    line: int
    col: int

    @property
    def kind(self) -> str:
        kind = _KINDS.get(type(self.value))  # the usual types, without a chain of isinstance
        return kind if kind is not None else _scalar_kind(self.value)

    def plain(self) -> Any:
        """The value with every position stripped (for `vars` and `with`)."""
        if isinstance(self.value, dict):
            return {key: item.plain() for key, (_, item) in self.value.items()}
        if isinstance(self.value, list):
            return [item.plain() for item in self.value]
        return self.value


_KINDS = {dict: "mapping", list: "list", str: "string", int: "number", float: "number",
          bool: "boolean", type(None): "null"}


def _scalar_kind(value: Any) -> str:
    if isinstance(value, dict):
        return "mapping"
    if isinstance(value, list):
        return "list"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, datetime.date):
        return "date"  # an unquoted 2024-01-01
    return type(value).__name__


class _Loader(yaml.SafeLoader):
    pass


# libyaml's parser (when PyYAML was built with it) composes the same nodes with
# the same marks and the same tag resolution, about 10x faster than the pure
# Python one: a 10,000-task playbook parses in a fraction of a second. Its error
# messages differ, so a file it rejects is parsed again by the Python loader,
# whose messages the users (and the tests) know.
_FastLoader: type | None = None
if getattr(yaml, "__with_libyaml__", False):
    class _FastLoader(yaml.CSafeLoader):  # type: ignore[no-redef]
        """libyaml's parser; a plain scalar's tag is resolved once per distinct text."""

        def __init__(self, stream: str) -> None:
            super().__init__(stream)
            self._plain_tags: dict[str, str] = {}

        def resolve(self, kind: type, value: Any, implicit: tuple[bool, bool]) -> str:
            if self.yaml_path_resolvers:
                resolved: str = super().resolve(kind, value, implicit)  # type: ignore[no-untyped-call]
                return resolved
            if kind is not yaml.ScalarNode:  # what Resolver.resolve gives them, sooner
                return self.DEFAULT_MAPPING_TAG if kind is yaml.MappingNode \
                    else self.DEFAULT_SEQUENCE_TAG
            if not implicit[0]:
                return self.DEFAULT_SCALAR_TAG
            tag = self._plain_tags.get(value)
            if tag is None:
                tag = self._plain_tags[value] = super().resolve(  # type: ignore[no-untyped-call]
                    kind, value, implicit)
            return tag

        def descend_resolver(self, current_node: Any, current_index: Any) -> None:
            if self.yaml_path_resolvers:
                super().descend_resolver(current_node, current_index)

        def ascend_resolver(self) -> None:
            if self.yaml_path_resolvers:
                super().ascend_resolver()


MAX_DEPTH = 64
"""Levels of nesting a playbook's YAML may have (deeper would run out of stack)."""
MAX_VALUES = 1_000_000
"""Values (mappings, lists, scalars) a playbook's YAML may have, its aliases expanded."""


def parse_yaml(text: str, file: str,
               depth: int = MAX_DEPTH) -> tuple[Located | None, list[Problem]]:
    """Parse one YAML document; on a syntax error, or nesting deeper than `depth`,
    return the problem instead."""
    if _FastLoader is not None:
        try:
            fast = _FastLoader(text)
            fast_node = fast.get_single_node()
        except Exception:
            pass
        else:
            return _located(fast, fast_node, file, depth)
    try:
        loader = _Loader(text)
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        what = error.problem or "invalid YAML"
        if error.context:
            what = f"{error.context}, {what}"
        return None, [Problem(file, line, col, f"YAML syntax: {what}")]
    except yaml.reader.ReaderError as error:  # a character YAML does not allow
        before = text[: error.position]
        line, col = before.count("\n") + 1, len(before) - (before.rfind("\n") + 1) + 1
        return None, [Problem(file, line, col,
                              f"YAML syntax: character {error.character!r} is not allowed")]
    except yaml.YAMLError as error:
        return None, [Problem(file, 1, 1, f"YAML syntax: {error}")]
    except RecursionError:
        return None, [Problem(file, 1, 1, f"nested deeper than {depth} levels "
                                          f"(playbook limits)")]
    return _located(loader, node, file, depth)


def _located(loader: Any, node: yaml.Node | None,
             file: str, depth: int) -> tuple[Located | None, list[Problem]]:
    if node is None or (isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null")
                        and not node.value):
        return None, [Problem(file, 1, 1, "the file is empty")]
    too_deep = _too_deep(node, file, depth)
    if too_deep is not None:
        loader.dispose()
        return None, [too_deep]
    problems: list[Problem] = []
    try:
        return _convert(loader, node, file, problems), problems
    finally:
        loader.dispose()


def _convert(loader: Any, node: yaml.Node, file: str, problems: list[Problem]) -> Located:
    mark = node.start_mark
    line, col = mark.line + 1, mark.column + 1
    kind = type(node)
    if kind is yaml.ScalarNode and node.tag == _STR_TAG:
        return Located(node.value, line, col)  # what construct_object gives, without its books
    if kind is yaml.MappingNode or isinstance(node, yaml.MappingNode):
        items: dict[Any, tuple[Located, Located]] = {}
        merged: dict[Any, tuple[Located, Located]] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base` merges, as safe_load
                sources = value_node.value if isinstance(value_node, yaml.SequenceNode) \
                    else [value_node]
                for source in sources:
                    base = _convert(loader, source, file, problems)
                    if base.kind != "mapping":
                        problems.append(Problem(file, base.line, base.col,
                                                "'<<' merges only mappings"))
                        continue
                    for key, entry in base.value.items():
                        merged.setdefault(key, entry)
                continue
            key = _scalar(key_node) or _convert(loader, key_node, file, problems)
            value = _scalar(value_node) or _convert(loader, value_node, file, problems)
            if not isinstance(key.value, str | int | float | bool) and key.value is not None:
                problems.append(Problem(file, key.line, key.col, "a key must be a plain value"))
                continue
            if key.value in items:
                first = items[key.value][0]
                problems.append(Problem(
                    file, key.line, key.col,
                    f"duplicate key {key.value!r} (first at line {first.line})",
                ))
                continue
            items[key.value] = (key, value)
        for key, entry in merged.items():
            items.setdefault(key, entry)
        return Located(items, line, col)
    if kind is yaml.SequenceNode or isinstance(node, yaml.SequenceNode):
        return Located([_convert(loader, item, file, problems) for item in node.value], line, col)
    return Located(loader.construct_object(node, deep=True), line, col)


_STR_TAG = "tag:yaml.org,2002:str"


def _scalar(node: yaml.Node) -> Located | None:
    """A string scalar, the most common node, without a call of `_convert`."""
    if node.tag == _STR_TAG and type(node) is yaml.ScalarNode:
        mark = node.start_mark
        return Located(node.value, mark.line + 1, mark.column + 1)
    return None


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """No cyclic garbage collection while a playbook is read.

    Reading a 10,000-task playbook allocates about a million objects and frees
    almost none, so the collector runs again and again over a growing heap
    that holds no cycles: about half of the time went there. The collector is
    enabled again after (if it was on before: a caller that turned it off
    keeps it off).
    """
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()


def _too_deep(node: yaml.Node, file: str, limit: int) -> Problem | None:
    """Where `node` is nested deeper than `limit`, its aliases expand it past `MAX_VALUES`
    values (a "billion laughs"), or an alias holds itself; None if nowhere.

    Walked without recursion, each node once (its depth and size kept by id), so an
    alias used a million times costs what one does.
    """
    shape: dict[int, tuple[int, int]] = {}
    """id(node) -> (its depth, its values with aliases expanded)."""
    inside: set[int] = set()
    todo: list[tuple[Any, bool]] = [(node, False)]
    while todo:
        current, finished = todo.pop()
        key = id(current)
        mark = current.start_mark
        if finished:
            inside.discard(key)
            kids = _children(current)
            depth = 1 + max((shape[id(kid)][0] for kid in kids), default=0)
            size = 1 + sum(shape[id(kid)][1] for kid in kids)
            shape[key] = (depth, size)
            if depth > limit:
                return Problem(file, mark.line + 1, mark.column + 1,
                               f"nested deeper than {limit} levels (playbook limits)")
            if size > MAX_VALUES:
                return Problem(file, mark.line + 1, mark.column + 1,
                               f"its aliases expand to more than {MAX_VALUES:,} values "
                               f"(playbook limits)")
            continue
        if key in shape:
            continue
        if key in inside:
            return Problem(file, mark.line + 1, mark.column + 1, "an alias holds itself")
        inside.add(key)
        todo.append((current, True))
        todo.extend((kid, False) for kid in _children(current))
    return None


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []
