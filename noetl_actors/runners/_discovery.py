"""Where plugins are found: the plugin path, searched in order, the first of a name wins.

1. every folder named by ``$NOETL_PLUGIN_PATH`` (``os.pathsep``-separated);
2. the `plugins/` folder of the source checkout this package runs from (a
   clone, or an editable install);
3. the plugins installed with the package: `setup.cfg` puts each built-in
   plugin folder in ``<prefix>/share/noetl-actors/plugins/``, found through
   the distribution's file list, so a plain ``pip install .`` (into a venv,
   ``--user`` or ``--prefix``) brings them along.

Each folder on the path holds plugin folders (``<dir>/<name>/plugin.yaml``).
"""

from __future__ import annotations

import functools
import os
import sys
import sysconfig
from collections.abc import Mapping, Sequence
from pathlib import Path

from noetl_actors.errors import PluginNotFound
from noetl_actors.runners._manifest import PluginInfo, read_manifest

__all__ = ["PLUGIN_PATH_ENV", "find_plugin", "find_plugins", "installed_plugins_dir",
           "plugin_path"]

PLUGIN_PATH_ENV = "NOETL_PLUGIN_PATH"
DISTRIBUTION = "noetl-actors"
_SHARE = ("share", "noetl-actors", "plugins")
_CHECKOUT = Path(__file__).resolve().parents[2]


def plugin_path() -> tuple[Path, ...]:
    """The folders searched for plugins, first match wins (see the module docstring)."""
    folders = [Path(entry) for entry in os.environ.get(PLUGIN_PATH_ENV, "").split(os.pathsep)
               if entry.strip()]
    if (_CHECKOUT / "setup.cfg").is_file() and (_CHECKOUT / "plugins").is_dir():
        folders.append(_CHECKOUT / "plugins")
    installed = installed_plugins_dir()
    if installed is not None:
        folders.append(installed)
    unique: dict[Path, None] = {}
    for folder in folders:
        unique.setdefault(folder.resolve() if folder.exists() else folder, None)
    return tuple(unique)


@functools.cache
def installed_plugins_dir() -> Path | None:
    """``<prefix>/share/noetl-actors/plugins`` of the installed distribution, if there is one.

    The distribution's RECORD says where pip really put the data files,
    whatever the install scheme; the sysconfig data folder is the fallback
    for installs without a file list. Looked up once per process.
    """
    from importlib import metadata  # here: slow to import, needed once per process

    try:
        files = metadata.distribution(DISTRIBUTION).files or []
    except metadata.PackageNotFoundError:
        files = []
    for file in files:
        parts = file.parts
        for i in range(len(parts) - len(_SHARE)):
            if parts[i:i + len(_SHARE)] == _SHARE:
                located = Path(str(file.locate()))
                return located.parents[len(parts) - i - len(_SHARE) - 1].resolve()
    for base in (sysconfig.get_path("data"), sys.prefix):
        candidate = Path(base, *_SHARE)
        if candidate.is_dir():
            return candidate
    return None


def find_plugins(path: Sequence[Path] | None = None) -> Mapping[str, PluginInfo]:
    """Every plugin on `path` (default: `plugin_path()`), by name; read once per path.

    Raises:
        ManifestError: a `plugin.yaml` on the path is invalid.
    """
    return _find(tuple(Path(p) for p in (plugin_path() if path is None else path)))


def find_plugin(name: str, path: Sequence[Path] | None = None) -> PluginInfo:
    """The plugin called `name`.

    Raises:
        PluginNotFound: no folder on the path holds it.
        ManifestError: a `plugin.yaml` on the path is invalid.
    """
    plugins = find_plugins(path)
    try:
        return plugins[name]
    except KeyError:
        searched = os.pathsep.join(str(p) for p in (plugin_path() if path is None else path))
        raise PluginNotFound(f"no plugin {name!r} on the plugin path ({searched}); "
                             f"known: {', '.join(sorted(plugins)) or 'none'}") from None


@functools.lru_cache(maxsize=8)
def _find(path: tuple[Path, ...]) -> Mapping[str, PluginInfo]:
    found: dict[str, PluginInfo] = {}
    for folder in path:
        for manifest in sorted(folder.glob("*/plugin.yaml")):
            if manifest.parent.name not in found:
                info = read_manifest(manifest)
                found[info.name] = info
    return found
