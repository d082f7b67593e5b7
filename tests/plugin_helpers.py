"""What the plugin and runner tests share: attempts, runners, and checks on processes."""

from __future__ import annotations

import itertools
import os
import textwrap
import time
from pathlib import Path
from typing import Any

from noetl_actors.runners import (
    Attempt,
    Outcome,
    PluginInfo,
    Runner,
    find_plugins,
    read_manifest,
)

WAIT = 10.0
"""Upper bound for any one outcome; tests assert much tighter times where it matters."""

_numbers = itertools.count(1)


def attempt(plugin: str, *, number: int = 1, within: float | None = None,
            **input: Any) -> Attempt:
    """An attempt of `plugin` with `input`; `within` is its timeout."""
    return Attempt(workflow_id=f"wf{next(_numbers)}", task="t", step="s", number=number,
                   plugin=plugin, input=input, timeout=within)


def builtin(name: str) -> PluginInfo:
    return find_plugins()[name]


def run(runner: Runner, plugin: PluginInfo | str, *, number: int = 1,
        within: float | None = None, **input: Any) -> Outcome:
    """Start one attempt (timeout `within`) and wait, bounded, for its outcome."""
    info = builtin(plugin) if isinstance(plugin, str) else plugin
    outcome = runner.start(info, attempt(info.name, number=number, within=within,
                                         **input)).wait(WAIT)
    assert outcome is not None, f"no outcome within {WAIT}s"
    return outcome


def make_plugin(folder: Path, name: str, code: str, *, modes: str = "[inproc, process]",
                extra: str = "") -> PluginInfo:
    """Write `<folder>/<name>/` with a manifest and `code` as plugin.py; read it back."""
    root = folder / name
    root.mkdir(parents=True)
    (root / "plugin.yaml").write_text(
        f"name: {name}\nversion: '1'\ndescription: a test plugin\nmodes: {modes}\n{extra}",
        encoding="utf-8")
    (root / "plugin.py").write_text(textwrap.dedent(code), encoding="utf-8")
    return read_manifest(root / "plugin.yaml")


def gone(pid: int) -> bool:
    """The process no longer runs (absent, or a zombie waiting for a parent to reap it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def wait_gone(pid: int, timeout: float = 5.0) -> bool:
    """True once `pid` is gone; polls /proc, as nothing notifies us of a stranger's death."""
    deadline = time.monotonic() + timeout
    while not gone(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def reaped(pid: int) -> bool:
    """Our own child `pid` has been waited for (no zombie of ours is left)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return False
