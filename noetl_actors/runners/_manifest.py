"""`PluginInfo`: a plugin folder's `plugin.yaml`, read and checked.

The manifest is the one place a plugin states its facts: the validator
reads `inputs` (required ones) and `modes` (which runners it accepts), the
linter `idempotent` and `network`, the runners `entry` and `runner`, the
Kubernetes runner `image` and `kubernetes` (the Job's resources, env,
placement), and nodes `mode` (a `service` plugin runs in workers of its
own, a Deployment: `build_deployment`). Unknown keys are refused, so a typo
(`idempotant: true`) cannot silently leave a fact at its default.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from noetl_actors.errors import ManifestError
from noetl_actors.runners._kube_settings import KubeSettings, kube_problems

__all__ = ["INPUT_TYPES", "MODES", "PLUGIN_MODES", "PluginInfo", "read_manifest"]

MODES = ("inproc", "process", "kubernetes")
"""The runners a plugin can name in `modes:`, in the order the docs list them."""

PLUGIN_MODES = ("job", "service")
"""How a plugin is deployed (`mode:`): ``job``, each attempt where its step's runner says
(a node's worker, or a Kubernetes Job); ``service``, in long-lived workers of its own
(``noetl worker --plugin NAME`` in its image, a Deployment) and on no node."""

INPUT_TYPES = ("string", "number", "integer", "boolean", "object", "array", "any")
_MANIFEST_KEYS = ("name", "version", "description", "inputs", "runner", "modes", "image",
                  "idempotent", "network", "entry", "instant", "waits", "kubernetes",
                  "mode")
_INPUT_KEYS = ("type", "required", "default", "description", "enum")


@attrs.frozen(kw_only=True)
class PluginInfo:
    """A plugin's `plugin.yaml`: what the loader, the linter and the runners need to know."""

    name: str
    version: str = "0"
    description: str = ""
    idempotent: bool = False
    """Safe to run again after a partial run (restarts of a group assume it)."""
    network: bool = False
    """Talks to other machines (so a step of it wants a timeout)."""
    instant: bool = False
    """Ends at once, never blocks (echo): the inproc runner calls it on the caller's
    thread, not on its pool. Not timed: an instant plugin ends long before any timeout."""
    waits: bool = False
    """Only waits (sleep), its ``run`` an ``async def``: the inproc runner awaits it on its
    event loop, holding no thread, so a node's workers run up to `WAITING_CONCURRENCY`
    of its attempts at once unless the node's config says otherwise."""
    modes: tuple[str, ...] = ("inproc",)
    """The runners it supports."""
    runner: str = attrs.field()
    """The runner a step uses when it names none; one of `modes` (default: the first)."""
    image: str | None = None
    """Container image that runs it under the Kubernetes runner, or as a service."""
    mode: str = "job"
    """``job`` or ``service`` (`PLUGIN_MODES`): a service plugin's commands are taken by
    workers of its own (`noetl worker --plugin NAME`, its Deployment), never a node's."""
    kubernetes: KubeSettings = attrs.field(factory=KubeSettings)
    """Its Job's resources, env, service account and placement (a step may override)."""
    inputs: Mapping[str, Mapping[str, Any]] = attrs.field(factory=dict)
    """Input name -> {type, required, default, description, enum} (all optional)."""
    folder: Path | None = attrs.field(default=None, eq=False)
    entry: Path | None = attrs.field(default=None, eq=False)
    """The file that defines ``run(input, ctx)`` (default: `plugin.py` in `folder`)."""

    @runner.default
    def _first_mode(self) -> str:
        return self.modes[0] if self.modes else "inproc"

    @property
    def service(self) -> bool:
        """Whether it runs as a service (`mode: service`): nodes run no worker for it."""
        return self.mode == "service"


def read_manifest(manifest: Path) -> PluginInfo:
    """Read `<folder>/plugin.yaml` into a `PluginInfo`.

    Raises:
        ManifestError: not YAML, not a mapping, a missing or unknown key, a
            wrong type, a name that differs from its folder, a runner that is
            not one of its modes, a `kubernetes` mode without an image, or a
            missing entry file.
    """
    import yaml  # here, not at the top: the process runner's child never reads a manifest

    file = str(manifest)
    try:
        data = yaml.safe_load(manifest.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise ManifestError(file, f"cannot be read: {error}") from None
    if not isinstance(data, dict) or "name" not in data:
        raise ManifestError(file, "a plugin.yaml needs a 'name'")
    unknown = sorted(str(key) for key in data if key not in _MANIFEST_KEYS)
    if unknown:
        raise ManifestError(file, f"unknown key(s) {', '.join(unknown)}; "
                                  f"known: {', '.join(_MANIFEST_KEYS)}")
    name = data["name"]
    if name != manifest.parent.name:
        raise ManifestError(file, f"plugin name {name!r} must match its folder "
                                  f"{manifest.parent.name!r}")
    modes = _modes(file, data.get("modes", ["inproc"]))
    runner = data.get("runner", modes[0])
    if runner not in modes:
        raise ManifestError(file, f"runner {runner!r} must be one of its modes "
                                  f"({', '.join(modes)})")
    image = data.get("image")
    if image is not None and not isinstance(image, str):
        raise ManifestError(file, f"image must be a string (got {image!r})")
    if "kubernetes" in modes and not image:
        raise ManifestError(file, "mode 'kubernetes' needs an 'image'")
    mode = data.get("mode", "job")
    if mode not in PLUGIN_MODES:
        raise ManifestError(file, f"mode must be job or service (got {mode!r})")
    if mode == "service" and not image:
        raise ManifestError(file, "mode 'service' needs an 'image': its Deployment runs it")
    if mode == "service" and "kubernetes" in modes:
        raise ManifestError(file, "a service plugin runs its attempts in its own workers' "
                                  "pods: its modes are inproc and process, not kubernetes")
    kube = data.get("kubernetes")
    problems = kube_problems(kube) if kube is not None else []
    if problems:
        raise ManifestError(file, problems[0][1])
    entry = manifest.parent / _string(file, data, "entry", "plugin.py")
    if not entry.is_file():
        raise ManifestError(file, f"its entry file {entry.name!r} is missing")
    return PluginInfo(
        name=name,
        version=_string(file, data, "version", "0"),
        description=_string(file, data, "description", ""),
        idempotent=_bool(file, data, "idempotent"),
        network=_bool(file, data, "network"),
        instant=_bool(file, data, "instant"),
        waits=_bool(file, data, "waits"),
        modes=modes,
        runner=runner,
        image=image,
        mode=mode,
        kubernetes=KubeSettings.from_mapping(kube),
        inputs=_inputs(file, data.get("inputs") or {}),
        folder=manifest.parent,
        entry=entry,
    )


def _string(file: str, data: Mapping[str, Any], key: str, default: str) -> str:
    value = data.get(key, default)
    if isinstance(value, int | float) and not isinstance(value, bool) and key == "version":
        value = str(value)  # `version: 1` or `version: 1.2` in YAML
    if not isinstance(value, str):
        raise ManifestError(file, f"{key} must be a string (got {value!r})")
    return value


def _bool(file: str, data: Mapping[str, Any], key: str) -> bool:
    value = data.get(key, False)
    if not isinstance(value, bool):
        raise ManifestError(file, f"{key} must be true or false (got {value!r})")
    return value


def _modes(file: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or any(m not in MODES for m in value):
        raise ManifestError(file, f"modes must be a non-empty list of {', '.join(MODES)} "
                                  f"(got {value!r})")
    return tuple(value)


def _inputs(file: str, value: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(value, dict):
        raise ManifestError(file, f"inputs must be a mapping of input name to schema "
                                  f"(got {value!r})")
    inputs: dict[str, dict[str, Any]] = {}
    for name, spec in value.items():
        spec = {} if spec is None else spec
        where = f"inputs.{name}"
        if not isinstance(spec, dict):
            raise ManifestError(file, f"{where} must be a mapping (got {spec!r})")
        unknown = sorted(str(key) for key in spec if key not in _INPUT_KEYS)
        if unknown:
            raise ManifestError(file, f"{where}: unknown key(s) {', '.join(unknown)}; "
                                      f"known: {', '.join(_INPUT_KEYS)}")
        if spec.get("type", "any") not in INPUT_TYPES:
            raise ManifestError(file, f"{where}.type must be one of {', '.join(INPUT_TYPES)} "
                                      f"(got {spec['type']!r})")
        if not isinstance(spec.get("required", False), bool):
            raise ManifestError(file, f"{where}.required must be true or false")
        if "enum" in spec and not isinstance(spec["enum"], list):
            raise ManifestError(file, f"{where}.enum must be a list")
        inputs[str(name)] = dict(spec)
    return inputs
