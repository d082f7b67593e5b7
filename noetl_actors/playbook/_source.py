"""YAML with positions: every value knows the line and column it came from.

PyYAML's composer already gives each node a start mark; this module turns
the node tree into plain values wrapped in `Located`, so the loader can say
``file:line:col: what is wrong`` about any key or value, and it reports
duplicate keys (which PyYAML silently overwrites).
"""

from __future__ import annotations

import datetime
from typing import Any

import attrs
import yaml

__all__ = ["Located", "Problem", "parse_yaml"]


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
        if isinstance(self.value, dict):
            return "mapping"
        if isinstance(self.value, list):
            return "list"
        return _scalar_kind(self.value)

    def plain(self) -> Any:
        """The value with every position stripped (for `vars` and `with`)."""
        if isinstance(self.value, dict):
            return {key: item.plain() for key, (_, item) in self.value.items()}
        if isinstance(self.value, list):
            return [item.plain() for item in self.value]
        return self.value


def _scalar_kind(value: Any) -> str:
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


def parse_yaml(text: str, file: str) -> tuple[Located | None, list[Problem]]:
    """Parse one YAML document; on a syntax error return the problem instead."""
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
    if node is None or (isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null")
                        and not node.value):
        return None, [Problem(file, 1, 1, "the file is empty")]
    problems: list[Problem] = []
    try:
        return _convert(loader, node, file, problems), problems
    finally:
        loader.dispose()


def _convert(loader: _Loader, node: yaml.Node, file: str, problems: list[Problem]) -> Located:
    line, col = node.start_mark.line + 1, node.start_mark.column + 1
    if isinstance(node, yaml.MappingNode):
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
            key = _convert(loader, key_node, file, problems)
            value = _convert(loader, value_node, file, problems)
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
    if isinstance(node, yaml.SequenceNode):
        return Located([_convert(loader, item, file, problems) for item in node.value], line, col)
    return Located(loader.construct_object(node, deep=True), line, col)
