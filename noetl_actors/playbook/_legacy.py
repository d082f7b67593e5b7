"""NoETL's own 2023-24 playbook format, translated to the native one."""

from __future__ import annotations

from noetl_actors.playbook._source import Located, Problem

__all__ = ["is_legacy", "translate_legacy"]


def is_legacy(root: Located) -> bool:
    """A NATS-era NoETL playbook: ``type: Playbook`` with ``metadata`` and ``spec``."""
    if root.kind != "mapping":
        return False
    keys = root.value
    return "type" in keys and "apiVersion" not in keys and ("spec" in keys or "metadata" in keys)


def translate_legacy(root: Located, file: str) -> tuple[Located, list[Problem]]:
    raise NotImplementedError
