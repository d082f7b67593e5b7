"""The input a plugin receives: its `with:` mapping checked against the manifest's `inputs`.

Defaults are filled in, required inputs must be there, and typed inputs
must have their type. A template inside a longer string renders to a string,
so ``number``, ``integer`` and ``boolean`` inputs also accept the string
forms (``"2.5"``, ``"3"``, ``"true"``). Inputs the manifest does not name
pass through unchecked.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from noetl_actors.errors import PluginError
from noetl_actors.runners._attempt import INPUT_ERROR
from noetl_actors.runners._manifest import PluginInfo

__all__ = ["prepare_input"]

_BOOLEANS = {"true": True, "false": False}


def prepare_input(plugin: PluginInfo, given: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `given` with defaults added and declared types checked.

    Raises:
        PluginError: error type ``InputError``; the message names the input
            and what was expected.
    """
    result = dict(given)
    for name, spec in plugin.inputs.items():
        if name not in result or result[name] is None:
            if spec.get("required"):
                raise PluginError(f"plugin {plugin.name!r} needs input {name!r}",
                                  error_type=INPUT_ERROR)
            if "default" in spec:
                result[name] = copy.deepcopy(spec["default"])
            continue
        result[name] = _typed(plugin.name, name, spec, result[name])
    return result


def _typed(plugin: str, name: str, spec: Mapping[str, Any], value: Any) -> Any:
    kind = spec.get("type", "any")
    converted = _convert(kind, value)
    if converted is _WRONG:
        raise PluginError(f"plugin {plugin!r}: input {name!r} must be {_article(kind)} "
                          f"(got {value!r}, a {type(value).__name__})", error_type=INPUT_ERROR)
    if "enum" in spec and converted not in spec["enum"]:
        raise PluginError(f"plugin {plugin!r}: input {name!r} must be one of "
                          f"{', '.join(map(str, spec['enum']))} (got {value!r})",
                          error_type=INPUT_ERROR)
    return converted


_WRONG = object()


def _convert(kind: str, value: Any) -> Any:
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "string":
        return value if isinstance(value, str) else _WRONG
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        return _BOOLEANS.get(value.strip().lower(), _WRONG) if isinstance(value, str) else _WRONG
    if kind in ("number", "integer"):
        if isinstance(value, str):
            try:
                value = float(value) if kind == "number" else int(value)
            except ValueError:
                return _WRONG
            is_number = True
        if not is_number:
            return _WRONG
        if kind == "integer" and value != int(value):
            return _WRONG
        return int(value) if kind == "integer" else value
    if kind == "object":
        return value if isinstance(value, Mapping) else _WRONG
    if kind == "array":
        return value if isinstance(value, list | tuple) else _WRONG
    return value


def _article(kind: str) -> str:
    return f"an {kind}" if kind[0] in "aeiou" else f"a {kind}"
