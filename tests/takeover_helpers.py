"""Helpers of the takeover tests: nodes with a short lease, steps that leave a trace.

Every shell step appends a line naming itself (``t<task>.s<step>``) to a
file before it does anything else: a step run twice shows there twice.
"""

from __future__ import annotations

import collections
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.node_helpers import (
    HEARTBEAT,
    NodeProcess,
    Spawned,
    cli_command,
    running_node,
    running_server,
    spawn,
)
from tests.run_helpers import write_playbook

LEASE = 2.0
NODE = f"heartbeat: {HEARTBEAT}s\nlease: {LEASE}s\n"
"""Nodes with their own workers for every plugin."""
NO_SHELL = NODE + "workers:\n  plugins:\n    shell: {enabled: false}\n"
"""Nodes that run no shell worker: a `noetl worker` process runs the shell steps, and
lives on when an owner dies."""


def appending_playbook(folder: Path, lines: Path, *, tasks: int, steps: int,
                       pause: float, name: str = "appends") -> Path:
    """`tasks` tasks of `steps` shell steps; each appends its name to `lines`, waits
    `pause` seconds, then prints ``done <name>`` (its output's stdout)."""
    body = "tasks:\n"
    for t in range(tasks):
        body += f"  - name: t{t}\n    steps:\n"
        for s in range(steps):
            body += (f"      - name: s{s}\n        plugin: shell\n"
                     f"        with: {{command: \"echo t{t}.s{s} >> {lines} && sleep {pause}"
                     f" && echo done t{t}.s{s}\"}}\n")
    return write_playbook(folder, name, body)


def lines_of(lines: Path) -> list[str]:
    """The steps that ran, in the order they started (one entry per run)."""
    return lines.read_text().split() if lines.exists() else []


def run_twice(lines: Path) -> list[str]:
    """The steps whose line appears more than once."""
    return sorted(step for step, n in collections.Counter(lines_of(lines)).items() if n > 1)


def every_step(tasks: int, steps: int) -> set[str]:
    return {f"t{t}.s{s}" for t in range(tasks) for s in range(steps)}


def done_before(seen: list[str]) -> set[str]:
    """Of the lines seen at a kill, the steps that had succeeded by then: in each task
    every step but the last one started (its successor starts only once it succeeded)."""
    last: dict[str, str] = {}
    for step in seen:
        last[step.split(".")[0]] = step
    return set(seen) - set(last.values())


def moves(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The `moved` events of a workflow's history."""
    return [event for event in events if event.get("kind") == "moved"]


def step_records(record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``{"t0.s1": step}`` for every step of a record."""
    return {f"{task}.{name}": step for task, data in record["tasks"].items()
            for name, step in data["steps"].items()}


@contextlib.contextmanager
def shell_worker(folder: Path, url: str, name: str = "worker") -> Iterator[Spawned]:
    """A `noetl worker` process for the shell plugin, stopped at the end."""
    worker = spawn(cli_command("worker", "--nats", url, "--plugin", "shell"), folder, name)
    try:
        yield worker
    finally:
        worker.cleanup()


@contextlib.contextmanager
def two_nodes(folder: Path) -> Iterator[tuple[str, NodeProcess, NodeProcess]]:
    """A `noetl server`, nodes "a" and "b" on it that run no shell steps, and a `noetl
    worker` that does: the server's URL and the two nodes."""
    with running_server(folder) as url, \
            running_node(folder, "a", nats=url, config=NO_SHELL) as a, \
            running_node(folder, "b", nats=url, config=NO_SHELL) as b, \
            shell_worker(folder, url):
        yield url, a, b
