"""NATS goes away and comes back: workflows go on, nothing runs twice, nothing moves.

Real processes: `noetl server --state-dir D --port P` (its nats-server under
a watchdog), `noetl node start` nodes, the CLI. An outage is a kill -9 of the
nats-server process, or of `noetl server` itself, and a new `noetl server` on
the same port and store after a while. Shell steps append a line naming
themselves to a file (tests/takeover_helpers.py): a step run twice shows
there twice.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.node_helpers import (
    START_TIMEOUT,
    Cli,
    Spawned,
    cli_command,
    processes_with,
    running_node,
    spawn,
)
from tests.run_helpers import alive, wait_until, write_playbook
from tests.takeover_helpers import (
    NODE,
    appending_playbook,
    every_step,
    lines_of,
    moves,
    run_twice,
    step_records,
)

pytestmark = pytest.mark.timeout(180)

ISSUE_NODE = "heartbeat: 1s\nlease: 5s\n"
"""The issue's node: a step takes 3 s of silence for a lost worker."""
ENDED = {"succeeded", "failed", "cancelled"}
_SERVER_UP = re.compile(r"^nats-server on (nats://\S+) ")


class NatsProcess:
    """`noetl server` on a fixed port and store: killed, and started again where it was."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.state_dir = folder / "state"
        with socket.socket() as probe:  # a free loopback port, kept across restarts
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"nats://127.0.0.1:{self.port}"
        self.spawned: Spawned | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        spawned = spawn(cli_command("server", "--state-dir", self.state_dir, "--port",
                                    str(self.port)), self.folder, f"server-{self.starts}")
        self.spawned = spawned
        spawned.wait_for_line(_SERVER_UP, START_TIMEOUT)

    def nats_server_pid(self) -> int:
        [pid] = [pid for pid, line in processes_with(str(self.state_dir)).items()
                 if line.split()[0].endswith("nats-server")]
        return pid

    def kill_nats_server(self) -> None:
        """kill -9 of the nats-server process; its `noetl server` exits after it."""
        assert self.spawned is not None
        pid = self.nats_server_pid()
        os.kill(pid, signal.SIGKILL)
        self._wait_gone(pid)

    def kill(self) -> None:
        """kill -9 of `noetl server` (its watchdog then stops its nats-server)."""
        assert self.spawned is not None
        pid = self.nats_server_pid()
        os.kill(self.spawned.pid, signal.SIGKILL)
        self._wait_gone(pid)

    def _wait_gone(self, nats_pid: int) -> None:
        assert self.spawned is not None
        wait_until(lambda: not alive(nats_pid), 20, "the nats-server to be gone")
        wait_until(lambda: self.spawned is not None and self.spawned.proc.poll() is not None,
                   20, "`noetl server` to exit")

    def cleanup(self) -> None:
        if self.spawned is not None:
            self.spawned.cleanup()


@contextlib.contextmanager
def nats_process(folder: Path) -> Iterator[NatsProcess]:
    nats = NatsProcess(folder / "nats")
    try:
        nats.start()
        yield nats
    finally:
        nats.cleanup()


def kill_mid_steps(lines: Path, *, tasks: int, pause: float, kill: Callable[[], None]) -> list[str]:
    """Wait until every task runs a step (not its first: one has succeeded) that began
    0.3 s to `pause` - 0.5 s ago, then `kill()`: the outage finds attempts running that
    their workers took and announced, and ends to come during it. The lines seen then.

    Not in a step's first moments: a command no worker took yet is the step's other
    judgement (an unanswered command), not the silence of a worker."""
    first_seen: dict[str, float] = {}

    def mid_steps() -> bool:
        now = time.monotonic()
        for line in lines_of(lines):
            first_seen.setdefault(line, now)
        latest: dict[str, tuple[int, float]] = {}
        for step, at in first_seen.items():
            task, number = step.split(".")
            latest[task] = max(latest.get(task, (-1, 0.0)), (int(number[1:]), at))
        return (len(latest) == tasks and all(n >= 1 for n, _ in latest.values())
                and all(0.3 <= now - at <= pause - 0.5 for _, at in latest.values()))

    wait_until(mid_steps, 60, "every task to be in the middle of a step", 0.02)
    seen = lines_of(lines)
    kill()
    return seen


def back(nats: NatsProcess, cli: Cli, workflow_id: str) -> None:
    """Start NATS again where it was; return once a node answers for `workflow_id` (the
    nodes reconnect on their own, within a reconnect wait or so)."""
    nats.start()
    wait_until(lambda: cli("status", workflow_id, "--json").stdout, 30,
               "a node to answer again", 0.2)


# -- (a) a short outage ---------------------------------------------------------------


def test_a_2s_outage_of_nats_runs_no_step_twice(tmp_path: Path) -> None:
    # The issue: the steps' 3 s silence check took a 2 s outage for lost workers and
    # ran attempt 2 of non-idempotent shell steps while attempt 1 still ran.
    lines = tmp_path / "lines.txt"
    playbook = appending_playbook(tmp_path, lines, tasks=2, steps=3, pause=4.0)
    with nats_process(tmp_path) as nats, \
            running_node(tmp_path, "a", nats=nats.url, config=ISSUE_NODE) as node:
        cli = Cli(nats.url)
        workflow_id = cli.submit(playbook)
        seen = kill_mid_steps(lines, tasks=2, pause=4.0, kill=nats.kill_nats_server)
        time.sleep(2.0)  # the outage
        back(nats, cli, workflow_id)

        record = cli.wait_status(workflow_id, ENDED, timeout=90)
        assert record["status"] == "succeeded", record.get("error")
        assert run_twice(lines) == []
        assert set(lines_of(lines)) == every_step(2, 3)
        assert len(seen) < 6, "the outage came after the workflow"
        assert {name: step["attempts"] for name, step in step_records(record).items()} == {
            step: 1 for step in every_step(2, 3)}
        assert "crashed" not in node.stderr(), node.stderr()


# -- (b) noetl server killed, back on its store within 30 s ---------------------------


def test_noetl_server_killed_and_back_within_30s_moves_nothing_and_runs_nothing_twice(
        tmp_path: Path) -> None:
    lines = tmp_path / "lines.txt"
    playbook = appending_playbook(tmp_path, lines, tasks=2, steps=4, pause=3.0)
    # Two nodes with a lease (2 s) far shorter than the outage: the other node must not
    # take the workflow over when NATS is back, nor its owner let it go.
    with nats_process(tmp_path) as nats, \
            running_node(tmp_path, "a", nats=nats.url, config=NODE) as a, \
            running_node(tmp_path, "b", nats=nats.url, config=NODE) as b:
        cli = Cli(nats.url)
        workflow_id = cli.submit(playbook)
        owner = cli.wait_status(workflow_id, "running")["node"]
        seen = kill_mid_steps(lines, tasks=2, pause=3.0, kill=nats.kill)
        time.sleep(20.0)  # the outage: ten leases
        back(nats, cli, workflow_id)

        record = cli.wait_status(workflow_id, ENDED, timeout=120)
        assert record["status"] == "succeeded", record.get("error")
        assert run_twice(lines) == [], "a step ran twice (one that had succeeded, or in flight)"
        assert set(lines_of(lines)) == every_step(2, 4)
        assert len(seen) < 8, "the outage came after the workflow"
        assert (record["node"], record["epoch"]) == (owner, 1)
        assert not record.get("moves")
        assert moves(cli.events(workflow_id)) == []
        for node in (a, b):
            assert "took over" not in node.stderr() and "lost the lease" not in node.stderr()
            assert "crashed" not in node.stderr(), node.stderr()


# -- a workflow that ends as NATS comes back -------------------------------------------


def test_a_workflow_that_ends_as_nats_comes_back_is_recorded_as_ended(tmp_path: Path) -> None:
    # Its last step ends during an outage longer than the lease: its end comes in once
    # NATS is back, before its owner has renewed the lease. Its final record must still
    # be written (it was dropped, and the lease released: `running` for good).
    lines = tmp_path / "lines.txt"
    playbook = appending_playbook(tmp_path, lines, tasks=1, steps=2, pause=2.0)
    with nats_process(tmp_path) as nats, \
            running_node(tmp_path, "a", nats=nats.url, config=NODE) as node:
        cli = Cli(nats.url)
        workflow_id = cli.submit(playbook)
        wait_until(lambda: "t0.s1" in lines_of(lines), 60, "the last step to start", 0.02)
        time.sleep(0.3)  # its worker has taken it and said so
        nats.kill_nats_server()
        time.sleep(6.0)  # the outage: three leases, and the step ends in it
        back(nats, cli, workflow_id)

        record = cli.wait_status(workflow_id, ENDED, timeout=60)
        assert record["status"] == "succeeded", record.get("error")
        assert (record["node"], record["epoch"]) == (node.name, 1)
        assert lines_of(lines) == ["t0.s0", "t0.s1"]


# -- (c) the cluster commands while NATS is away ---------------------------------------


def test_cluster_commands_while_nats_is_away_say_so_in_one_line(tmp_path: Path) -> None:
    playbook = write_playbook(tmp_path, "quick", """
        tasks:
          - name: t
            steps:
              - {name: s, plugin: shell, with: {command: "echo hi"}}
    """)
    with nats_process(tmp_path) as nats, running_node(tmp_path, "a", nats=nats.url):
        cli = Cli(nats.url)
        workflow_id = cli.submit(playbook)
        cli.wait_status(workflow_id, "succeeded")
        nats.kill_nats_server()

        for args in (["status", workflow_id], ["list"], ["events", workflow_id],
                     ["cancel", workflow_id], ["tree"]):
            result = cli(*args)
            said = result.stderr.splitlines()
            assert result.returncode != 0, (args, result)
            assert len(said) == 1 and "Traceback" not in result.stderr, (args, result.stderr)
            assert nats.url in said[0] and "NATS does not answer" in said[0], (args, said)
            assert result.stdout == "", (args, result.stdout)

        back(nats, cli, workflow_id)  # the node reconnects and answers again
        assert cli.status(workflow_id)["status"] == "succeeded"

