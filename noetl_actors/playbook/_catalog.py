"""What a playbook may name: the plugins and the preset restart policies.

Plugins are the folders of `plugins/` (each with a `plugin.yaml`); presets
are the `kind: Policies` files of `supervisors/`. Both folders sit at the top
of the project; `$NOETL_PLUGINS_DIR` and `$NOETL_SUPERVISORS_DIR` point
elsewhere.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import yaml

from noetl_actors.errors import PlaybookError
from noetl_actors.playbook._source import Problem
from noetl_actors.supervision import SupervisorFlags

__all__ = ["Catalog", "PluginInfo", "project_dir"]

_PROJECT = Path(__file__).resolve().parents[2]


def project_dir(name: str) -> Path:
    """`plugins` or `supervisors`: from the environment, else the project's own."""
    override = os.environ.get(f"NOETL_{name.upper()}_DIR")
    return Path(override) if override else _PROJECT / name


@attrs.frozen(kw_only=True)
class PluginInfo:
    """A plugin's `plugin.yaml`: what the loader and the linter need to know."""

    name: str
    description: str = ""
    idempotent: bool = False
    """Safe to run again after a partial run (restarts of a group assume it)."""
    network: bool = False
    """Talks to other machines (so a step of it wants a timeout)."""
    modes: tuple[str, ...] = ("inproc",)
    inputs: Mapping[str, Any] = attrs.field(factory=dict)
    folder: Path | None = attrs.field(default=None, eq=False)


@attrs.frozen
class Catalog:
    plugins: Mapping[str, PluginInfo]
    presets: Mapping[str, SupervisorFlags]

    @classmethod
    def load(cls, plugins_dir: Path, supervisors_dir: Path) -> Catalog:
        """Read every plugin manifest and preset file; bad ones raise PlaybookError."""
        from noetl_actors.playbook._loader import parse_policies

        plugins = {}
        for manifest in sorted(plugins_dir.glob("*/plugin.yaml")):
            info = _plugin(manifest)
            plugins[info.name] = info
        presets: dict[str, SupervisorFlags] = {}
        for preset in sorted(supervisors_dir.glob("*.yaml")):
            text = preset.read_text(encoding="utf-8")
            if (yaml.safe_load(text) or {}).get("kind") == "Policies":
                presets.update(parse_policies(text, str(preset)))
        return cls(plugins=plugins, presets=presets)

    @classmethod
    def default(cls) -> Catalog:
        """The project's plugins and presets (read once per process)."""
        return _default_catalog(project_dir("plugins"), project_dir("supervisors"))


@functools.lru_cache(maxsize=4)
def _default_catalog(plugins_dir: Path, supervisors_dir: Path) -> Catalog:
    return Catalog.load(plugins_dir, supervisors_dir)


def _plugin(manifest: Path) -> PluginInfo:
    data = yaml.safe_load(manifest.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or "name" not in data:
        raise PlaybookError([Problem(str(manifest), 1, 1, "a plugin.yaml needs a 'name'")])
    if data["name"] != manifest.parent.name:
        raise PlaybookError([Problem(
            str(manifest), 1, 1,
            f"plugin name {data['name']!r} must match its folder {manifest.parent.name!r}",
        )])
    return PluginInfo(
        name=data["name"],
        description=data.get("description", ""),
        idempotent=bool(data.get("idempotent", False)),
        network=bool(data.get("network", False)),
        modes=tuple(data.get("modes", ("inproc",))),
        inputs=data.get("inputs") or {},
        folder=manifest.parent,
    )
