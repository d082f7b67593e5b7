"""Helpers for the end-to-end tests: run `noetl` as a user would, watch processes.

Every `noetl` runs in its own session, so that whatever it leaves behind
(an embedded nats-server, a plugin's subprocess) can be found and killed.
Processes are looked up in /proc (Linux), by parent id.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
CLI_TIMEOUT = 60.0
"""No `noetl` invocation of these tests should come near this (they take about a second)."""


@attrs.frozen
class Result:
    """What one `noetl` invocation did."""

    returncode: int
    stdout: str
    stderr: str

    def document(self) -> dict[str, Any]:
        """The one JSON document on stdout (and nothing else: one line, one document)."""
        lines = self.stdout.splitlines()
        assert len(lines) == 1 and self.stdout.endswith("\n"), (
            f"stdout is not exactly one JSON document:\n{self.stdout}\nstderr:\n{self.stderr}")
        document = json.loads(lines[0])
        assert isinstance(document, dict), document
        return document


def cli_command(*args: str | os.PathLike[str]) -> list[str]:
    return [sys.executable, "-m", "noetl_actors.cli", *map(str, args)]


def environment(pythonpath: Path | None = None) -> dict[str, str]:
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(pythonpath), env.get("PYTHONPATH", "")) if p)
    return env


def noetl(*args: str | os.PathLike[str], cwd: Path, env: Mapping[str, str] | None = None,
          timeout: float = CLI_TIMEOUT) -> Result:
    """Run `noetl ARGS...` to its end (killing its whole session if it overruns)."""
    with subprocess.Popen(cli_command(*args), cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=True) as proc:
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_tree(proc.pid)
            stdout, stderr = proc.communicate()
            raise AssertionError(f"noetl {' '.join(map(str, args))} ran past {timeout}s; "
                                 f"stderr:\n{stderr}") from None
    return Result(proc.returncode, stdout, stderr)


def run_playbook(path: Path, state_dir: Path, *extra: str,
                 env: Mapping[str, str] | None = None) -> tuple[Result, dict[str, Any]]:
    """`noetl run PATH --json --state-dir STATE_DIR EXTRA...`: the result and its report."""
    result = noetl("run", path, "--json", "--state-dir", state_dir, *extra,
                   cwd=path.parent, env=env)
    return result, result.document()


def write_playbook(folder: Path, name: str, body: str) -> Path:
    """A playbook file `<name>.yaml` in `folder`: the header, then `body` (YAML)."""
    path = folder / f"{name}.yaml"
    path.write_text(f"apiVersion: noetl.io/v1\nkind: Playbook\nname: {name}\n"
                    + textwrap.dedent(body).lstrip("\n"))
    return path


def steps_of(document: Mapping[str, Any], task: str) -> dict[str, dict[str, Any]]:
    return dict(document["tasks"][task]["steps"])


def attempts(document: Mapping[str, Any]) -> dict[str, int]:
    """``{"task.step": attempts}`` for every step of a report."""
    return {f"{task}.{step}": data["attempts"]
            for task, tdata in document["tasks"].items()
            for step, data in tdata["steps"].items()}


def starts(document: Mapping[str, Any]) -> dict[str, int]:
    return {task: data["starts"] for task, data in document["tasks"].items()}


# -- processes (Linux /proc) ---------------------------------------------------------------


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, parent id) of a process, or None when there is no such process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = text[text.rindex(")") + 2:].split()
    return fields[0], int(fields[1])


def alive(pid: int) -> bool:
    """Running (a zombie, dead but not yet reaped, does not count)."""
    stat = _stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def descendants(pid: int) -> set[int]:
    """Every living process below `pid` (children, grandchildren, ...)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat is not None and stat[0] not in ("Z", "X"):
                children.setdefault(stat[1], []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def plugin_children(pid: int) -> set[int]:
    """The process runner's children (one per attempt) below `pid`."""
    return {p for p in descendants(pid) if "noetl_actors.runners._child" in cmdline(p)}


def wait_gone(pids: Iterable[int], timeout: float) -> set[int]:
    """Wait (bounded) until none of `pids` runs; those still running then."""
    deadline = time.monotonic() + timeout
    left = {p for p in pids if alive(p)}
    while left and time.monotonic() < deadline:
        time.sleep(0.02)
        left = {p for p in left if alive(p)}
    return left


def kill_tree(pid: int) -> None:
    """SIGKILL a process, its process group and every descendant (cleanup only)."""
    for p in descendants(pid) | {pid}:
        for kill in (os.killpg, os.kill):
            try:
                kill(p, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def wait_until(condition: Any, timeout: float, what: str, interval: float = 0.02) -> Any:
    """Poll `condition()` until it is truthy (its value is returned) or fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"waited {timeout}s for {what}")
        time.sleep(interval)
