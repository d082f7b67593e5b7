"""`YamlReader`: turns located YAML into values, collecting problems as file:line:col.

The playbook loader builds on it, and so does the node's configuration
(`noetl_actors.services`): both read supervision mappings the same way,
``use:`` of a named policy included. A reader never raises on a bad value;
it records a `Problem` through `error` and returns None, so every problem
of a file is found in one pass.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import attrs

from noetl_actors.playbook._durations import parse_duration
from noetl_actors.playbook._model import TASK_DEFAULT
from noetl_actors.playbook._names import did_you_mean, is_name
from noetl_actors.playbook._source import Located, Problem
from noetl_actors.supervision import Backoff, Strategy, SupervisorFlags

if TYPE_CHECKING:
    from noetl_actors.playbook._catalog import Catalog

__all__ = ["BACKOFF_KEYS", "SUPERVISION_KEYS", "YamlReader", "described", "located_at", "show"]

SUPERVISION_KEYS = ("use", "strategy", "max_restarts", "within", "backoff")
BACKOFF_KEYS = ("initial", "max", "multiplier", "jitter", "reset_after")

E = TypeVar("E", bound=enum.Enum)


class YamlReader:
    """Walks located YAML, collecting problems in `problems`.

    `catalog` gives the named policies that ``use:`` may name (and, to
    subclasses, the plugins). `error` is the one place a problem is recorded:
    a subclass overrides it to report a problem in another file.
    """

    def __init__(self, file: str, catalog: Catalog) -> None:
        self.file = file
        self.catalog = catalog
        self.problems: list[Problem] = []

    def error(self, at: Located, message: str) -> None:
        """Record a problem at `at`'s line and column."""
        self.problems.append(Problem(self.file, at.line, at.col, message))

    # -- shapes ------------------------------------------------------------------

    def expect(self, node: Located, kind: str, what: str) -> bool:
        if node.kind != kind:
            article = "an" if kind[0] in "aeiou" else "a"
            self.error(node, f"{what} must be {article} {kind} (got {described(node)})")
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
                self.error(key_node, f"unknown key {key!r} in {what}"
                                     f"{did_you_mean(str(key), allowed)}; "
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
        if value is not None and not is_name(value):
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
        self.error(node, f"{what} must be one of {', '.join(options)} "
                         f"(got {show(node.value)}){did_you_mean(str(node.value), options)}")
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
                self.error(keys["use"], f"unknown policy {name!r}{did_you_mean(name, known)}; "
                                        f"known: {', '.join(sorted(known)) or 'none'}")
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
                                  f"(got {show(value.value)})")
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
                    self.error(keys[key], f"backoff {key} must be a number (got {show(value)})")
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


def show(value: Any) -> str:
    """A value for a message: a mapping or list by its kind, a scalar by its repr."""
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def described(node: Located) -> str:
    """What a wrong value was, for "must be a ... (got ...)": ``a list``, ``number 3``."""
    return show(node.value) if node.kind in ("mapping", "list") else \
        f"{node.kind} {show(node.value)}"


def located_at(node: Located, path: tuple[str | int, ...]) -> Located:
    """The node at `path` (keys and indices) under `node`, as deep as it goes; a path
    that ends in ``("key", k)`` gives the key `k` itself rather than its value."""
    for index, step in enumerate(path):
        if step == "key" and index == len(path) - 2 and isinstance(node.value, dict):
            entry = node.value.get(path[-1])
            return entry[0] if entry else node
        if isinstance(node.value, dict) and step in node.value:
            node = node.value[step][1]
        elif isinstance(node.value, list) and isinstance(step, int) and step < len(node.value):
            node = node.value[step]
        else:
            return node
    return node
