"""Durable workflows: a dead owner's workflows go on on another node, nothing done twice.

Real `noetl server`, real node and worker processes, real kill -9. Every shell
step appends a line naming itself to a file: a step run twice shows there.
"""

from __future__ import annotations

import collections
import signal
from pathlib import Path

from tests.node_helpers import (
    HEARTBEAT,
    Cli,
    cli_command,
    running_node,
    running_server,
    spawn,
)
from tests.run_helpers import wait_until, write_playbook

LEASE = 2.0
NODE = f"heartbeat: {HEARTBEAT}s\nlease: {LEASE}s\n"
NO_SHELL = NODE + "workers:\n  plugins:\n    shell: {enabled: false}\n"
"""Nodes that run no shell worker: a `noetl worker` process runs the shell steps, and
lives on when an owner dies."""


def appending_playbook(folder: Path, lines: Path, *, tasks: int, steps: int,
                       pause: float) -> Path:
    body = "tasks:\n"
    for t in range(tasks):
        body += f"  - name: t{t}\n    steps:\n"
        for s in range(steps):
            body += (f"      - name: s{s}\n        plugin: shell\n"
                     f"        with: {{command: \"echo t{t}.s{s} >> {lines} && sleep {pause}\"}}\n")
    return write_playbook(folder, "appends", body)


def test_a_killed_owner_s_workflow_goes_on_elsewhere_and_no_step_runs_twice(
        tmp_path: Path) -> None:
    lines = tmp_path / "lines.txt"
    playbook = appending_playbook(tmp_path, lines, tasks=3, steps=8, pause=0.2)
    with running_server(tmp_path) as url, \
            running_node(tmp_path, "a", nats=url, config=NO_SHELL) as a, \
            running_node(tmp_path, "b", nats=url, config=NO_SHELL) as b:
        worker = spawn(cli_command("worker", "--nats", url, "--plugin", "shell"),
                       tmp_path, "worker")
        try:
            cli = Cli(url)
            workflow_id = cli.submit(playbook)
            owner = cli.wait_status(workflow_id, "running")["node"]
            first, other = (a, b) if owner == "a" else (b, a)
            wait_until(lambda: lines.exists() and len(lines.read_text().split()) >= 6, 30,
                       "six steps done", 0.05)
            first.spawned.kill()
            assert first.proc.returncode == -signal.SIGKILL

            record = cli.wait_status(workflow_id, {"succeeded", "failed"}, timeout=60)
            assert record["status"] == "succeeded", record.get("error")
            assert record["node"] == other.name and record["epoch"] == 2
            counts = collections.Counter(lines.read_text().split())
            assert set(counts) == {f"t{t}.s{s}" for t in range(3) for s in range(8)}
            assert [step for step, n in counts.items() if n > 1] == []
            steps = [step for task in record["tasks"].values()
                     for step in task["steps"].values()]
            assert all(step["status"] == "succeeded" for step in steps), steps
            assert f"took over workflow {workflow_id} from node {first.name}" in other.stderr()
        finally:
            worker.terminate()
