"""What a playbook may name: the plugins and the preset restart policies.

Plugins are found on the plugin path (`noetl_actors.runners.plugin_path()`:
`$NOETL_PLUGIN_PATH`, the project's `plugins/`, the installed package);
presets are the `kind: Policies` files of `supervisors/` at the top of the
project, or of `$NOETL_SUPERVISORS_DIR`, read by `parse_policies`.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import attrs
import yaml

from noetl_actors.errors import ManifestError, PlaybookError
from noetl_actors.playbook._reader import YamlReader
from noetl_actors.playbook._source import Problem, parse_yaml
from noetl_actors.runners import PluginInfo, find_plugins, installed_plugins_dir, plugin_path
from noetl_actors.supervision import SupervisorFlags

__all__ = ["Catalog", "PluginInfo", "parse_policies", "project_dir"]

_PROJECT = Path(__file__).resolve().parents[2]


def project_dir(name: str) -> Path:
    """`supervisors` (or another top-level folder): from ``$NOETL_<NAME>_DIR``, else the
    project's own. Plugins have a search path instead (`noetl_actors.runners.plugin_path`)."""
    override = os.environ.get(f"NOETL_{name.upper()}_DIR")
    if override:
        return Path(override)
    if (_PROJECT / name).is_dir():
        return _PROJECT / name
    installed = installed_plugins_dir()  # <prefix>/share/noetl-actors/plugins
    return installed.parent / name if installed is not None else _PROJECT / name


@attrs.frozen
class Catalog:
    plugins: Mapping[str, PluginInfo]
    presets: Mapping[str, SupervisorFlags]

    @classmethod
    def load(cls, plugin_dirs: Path | Sequence[Path], supervisors_dir: Path) -> Catalog:
        """Read the plugins of `plugin_dirs` (the first of a name wins) and the preset
        files of `supervisors_dir`; bad ones raise PlaybookError."""
        dirs = (plugin_dirs,) if isinstance(plugin_dirs, Path) else tuple(plugin_dirs)
        try:
            plugins = dict(find_plugins(dirs))
        except ManifestError as error:
            raise PlaybookError([Problem(error.file, 1, 1, error.problem)]) from None
        presets: dict[str, SupervisorFlags] = {}
        for preset in sorted(supervisors_dir.glob("*.yaml")):
            text = preset.read_text(encoding="utf-8")
            if (yaml.safe_load(text) or {}).get("kind") == "Policies":
                presets.update(parse_policies(text, str(preset)))
        return cls(plugins=plugins, presets=presets)

    @classmethod
    def default(cls) -> Catalog:
        """The plugins of the plugin path and the project's presets (read once per
        process and plugin path)."""
        return _default_catalog(plugin_path(), project_dir("supervisors"))


@functools.lru_cache(maxsize=4)
def _default_catalog(plugin_dirs: tuple[Path, ...], supervisors_dir: Path) -> Catalog:
    return Catalog.load(plugin_dirs, supervisors_dir)


def parse_policies(text: str, file: str) -> dict[str, SupervisorFlags]:
    """Named policies from a preset file (``kind: Policies``).

    Raises:
        PlaybookError: every problem found, each with file:line:col.
    """
    root, problems = parse_yaml(text, file)
    reader = YamlReader(file, Catalog(plugins={}, presets={}))
    policies: dict[str, SupervisorFlags] = {}
    if root is not None:
        keys = reader.keys(root, ("apiVersion", "kind", "policies"), "the preset file",
                           required=("kind", "policies"))
        if "kind" in keys and keys["kind"].value != "Policies":
            reader.error(keys["kind"], "kind must be Policies")
        if "policies" in keys:
            policies = reader.policies(keys["policies"])
        problems += reader.problems
    if problems:
        raise PlaybookError(problems)
    return policies
