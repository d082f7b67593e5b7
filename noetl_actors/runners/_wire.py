"""The process runner's wire format: the request a child reads on stdin (schema version 1).

Kept apart from `_child` so that the parent never imports the module that
``python -m`` runs in the child.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from noetl_actors.runners._attempt import SCHEMA_VERSION, Attempt
from noetl_actors.runners._manifest import PluginInfo

__all__ = ["plugin_from_json", "request"]


def request(plugin: PluginInfo, attempt: Attempt) -> dict[str, Any]:
    """The JSON document the parent writes on the child's stdin."""
    return {
        "schema_version": SCHEMA_VERSION,
        "plugin": {
            "name": plugin.name, "version": plugin.version, "description": plugin.description,
            "idempotent": plugin.idempotent, "network": plugin.network,
            "instant": plugin.instant,
            "modes": list(plugin.modes), "runner": plugin.runner, "image": plugin.image,
            "inputs": {name: dict(spec) for name, spec in plugin.inputs.items()},
            "folder": str(plugin.folder) if plugin.folder else None,
            "entry": str(plugin.entry) if plugin.entry else None,
        },
        "attempt": attempt.to_json(),
    }


def plugin_from_json(data: dict[str, Any]) -> PluginInfo:
    return PluginInfo(
        name=data["name"], version=data["version"], description=data["description"],
        idempotent=data["idempotent"], network=data["network"],
        instant=data.get("instant", False), modes=tuple(data["modes"]),
        runner=data["runner"], image=data["image"], inputs=data["inputs"],
        folder=Path(data["folder"]) if data["folder"] else None,
        entry=Path(data["entry"]) if data["entry"] else None,
    )

LIFELINE_ENV = "NOETL_LIFELINE_FD"
"""The child's read end of a pipe only its worker writes to (see `_process.launch`)."""
