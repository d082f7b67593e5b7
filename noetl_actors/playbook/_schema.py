"""The JSON Schema of the playbook format, for editors (YAML language server).

It describes shapes and names; the loader checks the rest (references,
cycles, templates). It reads the allowed keys from the key lists of the
loader and of `YamlReader`, so the two cannot drift apart on what a key is called.
"""

from __future__ import annotations

from typing import Any

from noetl_actors.playbook._catalog import Catalog
from noetl_actors.playbook._loader import (
    LOOP_KEYS,
    NEED_KEYS,
    PLAYBOOK_KEYS,
    ROUTE_KEYS,
    STEP_KEYS,
    TASK_KEYS,
)
from noetl_actors.playbook._model import API_VERSION, MAX_ITEMS_DEFAULT, ErrorAction, Runner
from noetl_actors.playbook._names import NAME_PATTERN
from noetl_actors.playbook._reader import BACKOFF_KEYS, SUPERVISION_KEYS
from noetl_actors.supervision import Restart, Strategy

__all__ = ["playbook_schema"]

_DURATION: dict[str, Any] = {
    "description": "250ms, 30s, 5m, 1h, or a number of seconds",
    "anyOf": [
        {"type": "number", "minimum": 0},
        {"type": "string", "pattern": r"^\s*(\d+(\.\d+)?|\.\d+)\s*(ms|s|m|h)?\s*$"},
    ],
}
_NAME: dict[str, Any] = {"type": "string", "pattern": NAME_PATTERN.pattern}
_WHEN: dict[str, Any] = {
    "description": "run only if this Jinja expression holds (bare, or in {{ }}); else skipped",
    "type": ["string", "boolean"],
}

_STRINGS: dict[str, Any] = {"type": "object", "additionalProperties": {"type": "string"}}
_KUBERNETES: dict[str, Any] = {
    "description": "the step's Kubernetes Job settings, over its plugin's (docs/kubernetes.md)",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "resources": {"type": "object", "additionalProperties": False, "properties": {
            "requests": {"type": "object"}, "limits": {"type": "object"}}},
        "env": {"type": "object",
                "additionalProperties": {"type": ["string", "number", "boolean"]}},
        "service_account": {"type": "string"},
        "node_selector": _STRINGS,
        "tolerations": {"type": "array", "items": {"type": "object"}},
    },
}


def _object(properties: dict[str, Any], keys: tuple[str, ...], required: tuple[str, ...] = ()
            ) -> dict[str, Any]:
    assert set(properties) == set(keys), set(properties) ^ set(keys)
    schema: dict[str, Any] = {
        "type": "object", "properties": properties, "additionalProperties": False,
    }
    if required:
        schema["required"] = list(required)
    return schema


def playbook_schema(catalog: Catalog | None = None) -> dict[str, Any]:
    """A JSON Schema (2020-12) of ``kind: Playbook`` files."""
    catalog = catalog or Catalog.default()
    backoff = _object({
        "initial": _DURATION, "max": _DURATION, "reset_after": _DURATION,
        "multiplier": {"type": "number", "minimum": 1},
        "jitter": {"type": "number", "minimum": 0},
    }, BACKOFF_KEYS)
    supervision = _object({
        "use": {"type": "string", "description": "a named policy: the playbook's or a preset",
                "examples": sorted(catalog.presets)},
        "strategy": {"enum": [s.value for s in Strategy]},
        "max_restarts": {"type": "integer", "minimum": 0},
        "within": _DURATION,
        "backoff": {"$ref": "#/$defs/backoff"},
    }, SUPERVISION_KEYS)
    step = _object({
        "name": _NAME,
        "plugin": {"enum": sorted(catalog.plugins)} if catalog.plugins else {"type": "string"},
        "with": {"type": "object", "description": "the plugin's input; strings may be templates"},
        "timeout": _DURATION,
        "restart": {"enum": [r.value for r in Restart], "default": "transient"},
        "runner": {"enum": [r.value for r in Runner]},
        "on_error": {"type": "object",
                     "additionalProperties": {"enum": [a.value for a in ErrorAction]}},
        "when": _WHEN,
        "kubernetes": _KUBERNETES,
    }, STEP_KEYS, required=("name", "plugin"))
    need = _object({"task": _NAME, "succeeded": {"type": "boolean"}}, NEED_KEYS,
                   required=("task",))
    route = _object({"task": _NAME, "when": _WHEN, "with": {
        "type": "object", "description": "the inputs the task gets (templates may read its "
                                         "outputs): inputs.<key> in its templates"}},
        ROUTE_KEYS, required=("task",))
    loop = _object({
        "over": {"description": "the items: a list, or a Jinja expression that gives one "
                                "(bare, or in {{ }}), read when the task starts",
                 "type": ["array", "string"]},
        "as": {"type": "string", "pattern": r"^[A-Za-z_][A-Za-z0-9_]*$", "default": "item",
               "description": "the item's name in the templates of the task's steps"},
        "max_in_flight": {"type": "integer", "minimum": 1,
                          "description": "at most this many iterations at once (default: all)"},
        "max_items": {"type": "integer", "minimum": 1, "default": MAX_ITEMS_DEFAULT},
    }, LOOP_KEYS, required=("over",))
    task = _object({
        "name": _NAME,
        "needs": {"anyOf": [_NAME, {"type": "array", "items": {"anyOf": [_NAME, need]}}]},
        "when": _WHEN,
        "supervision": {"$ref": "#/$defs/supervision"},
        "loop": loop,
        "steps": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/step"}},
        "next": {"anyOf": [_NAME, {"type": "array", "items": {"anyOf": [_NAME, route]}}]},
    }, TASK_KEYS, required=("name", "steps"))
    playbook = _object({
        "apiVersion": {"const": API_VERSION},
        "kind": {"const": "Playbook"},
        "name": _NAME,
        "description": {"type": "string"},
        "vars": {"type": "object"},
        "policies": {"type": "object", "additionalProperties": {"$ref": "#/$defs/supervision"}},
        "supervision": {"$ref": "#/$defs/supervision"},
        "tasks": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/task"}},
    }, PLAYBOOK_KEYS, required=("apiVersion", "kind", "name", "tasks"))
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://noetl.io/schemas/playbook-v1.json",
        "title": "noetl-actors playbook",
        **playbook,
        "$defs": {"backoff": backoff, "supervision": supervision, "step": step, "task": task},
    }
