"""A lone node comes back: `kill -9` of `noetl node start` on its embedded NATS, then
the same command again (same `--name`, same `--state-dir`).

The embedded server comes back on the same store and the same port, the
node takes its former self's workflows back at once, and they finish: what
had succeeded is not run again and its output still feeds later steps. The
name stays refused while its node lives. Real node processes, real kill -9
(of the node's process alone: its embedded server must go by itself).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from noetl_actors._process import alive, started
from noetl_actors.bridge import encode
from tests.node_helpers import (
    START_TIMEOUT,
    Cli,
    Spawned,
    login,
    processes_with,
    running_server,
    spawn,
)
from tests.run_helpers import cli_command, kill_tree, noetl, wait_until, write_playbook
from tests.takeover_helpers import NODE, done_before, lines_of, moves

pytestmark = pytest.mark.timeout(150)

NAME = "lone"
UP = re.compile(r"^node (\S+) is up on (nats://\S+) \((.*)\)$")
SERVER_UP = re.compile(r"^nats-server on (nats://\S+) ")
TASKS, STEPS = 2, 4


@attrs.frozen
class Lone:
    """One `noetl node start --name lone` on its embedded server."""

    spawned: Spawned
    url: str
    said: str
    """What its "is up" line says in brackets (a port note, if any)."""

    @property
    def pid(self) -> int:
        return self.spawned.pid

    def kill(self) -> None:
        """kill -9 of the node's process only, as a user would; reaped at once."""
        os.kill(self.pid, signal.SIGKILL)
        self.spawned.proc.wait(10)


def server_of(state: Path) -> dict[str, Any]:
    """What the embedded server keeps in its state dir: its pid, owner and port."""
    data: dict[str, Any] = json.loads((state / "nats-server.json").read_text())
    return data


def nats_servers_on(state: Path) -> set[int]:
    """Every live nats-server whose store is in `state` (not their watchdogs)."""
    return {pid for pid, line in processes_with(str(state / "jetstream")).items()
            if "noetl-nats-watchdog" not in line}


@contextlib.contextmanager
def lone_node(folder: Path, run: str, *, name: str = NAME, state: Path | None = None,
              extra: tuple[str, ...] = ()) -> Iterator[Lone]:
    """`noetl node start --name NAME --state-dir <folder>/state`; logs in `<run>.out/err`.
    Stopped (or its leftovers killed) at the end, with any server left on that store."""
    state = state or folder / "state"
    config = folder / "node.yaml"
    config.write_text(NODE)
    spawned = spawn(cli_command("node", "start", "--name", name, "--state-dir", state,
                                "--config", config, *extra), folder, run)
    try:
        match = spawned.wait_for_line(UP, START_TIMEOUT)
        assert match.group(1) == name, match.group(0)
        yield Lone(spawned, match.group(2), match.group(3))
    finally:
        spawned.cleanup()
        for pid in processes_with(str(state)):  # a test that failed halfway: its servers
            kill_tree(pid)


def template_playbook(folder: Path, lines: Path, *, pause: float) -> Path:
    """`TASKS` tasks of `STEPS` shell steps, each appending its name to `lines` first.
    Each task's s0 prints a token made at its run (and appends it to `t<i>.token`); its
    last step writes what its template got of s0's output to `t<i>.got`."""
    body = "tasks:\n"
    for t in range(TASKS):
        body += f"  - name: t{t}\n    steps:\n"
        for s in range(STEPS):
            command = f"echo t{t}.s{s} >> {lines} && sleep {pause}"
            if s == 0:
                command += f" && echo $$-$(date +%s%N) | tee -a {folder}/t{t}.token"
            if s == STEPS - 1:
                template = "{{ steps.s0.output.stdout | trim }}"
                command += f" && echo '{template}' >> {folder}/t{t}.got"
            body += (f"      - name: s{s}\n        plugin: shell\n"
                     f"        with: {{command: \"{command}\"}}\n")
    return write_playbook(folder, "lone", body)


def second_step_started(lines: Path) -> list[str] | None:
    """The lines, once every task has started its second step (its first succeeded)."""
    seen = lines_of(lines)
    started_tasks = {line.split(".")[0] for line in seen if line.endswith(".s1")}
    return seen if len(started_tasks) == TASKS else None


def test_a_lone_node_killed_and_started_again_finishes_its_workflow_where_it_was(
        tmp_path: Path) -> None:
    lines = tmp_path / "lines.txt"
    playbook = template_playbook(tmp_path, lines, pause=0.4)
    state = tmp_path / "state"
    with contextlib.ExitStack() as nodes:  # the second node's cleanup first
        first = nodes.enter_context(lone_node(tmp_path, "first"))
        cli = Cli(first.url)
        workflow_id = cli.submit(playbook)
        seen = wait_until(lambda: second_step_started(lines), 30, "every task's s1", 0.02)
        old_server = server_of(state)["pid"]
        assert old_server in nats_servers_on(state)
        first.kill()
        done = done_before(seen)
        assert {f"t{t}.s0" for t in range(TASKS)} <= done, seen

        second = nodes.enter_context(lone_node(tmp_path, "second"))
        # the same store, on the same port: the URL other terminals kept still works
        assert second.url == first.url
        assert not alive(old_server), "the first node's nats-server outlived it"
        assert nats_servers_on(state) == {server_of(state)["pid"]}
        assert server_of(state)["owner"] == second.pid
        record = cli.wait_status(workflow_id, {"succeeded", "failed", "cancelled"}, timeout=60)
        assert record["status"] == "succeeded", record.get("error")
        assert (record["node"], record["epoch"]) == (NAME, 2)
        assert [(m["from"], m["to"], m["epoch"]) for m in record["moves"]] == [(NAME, NAME, 2)]
        assert f"took over workflow {workflow_id} from node {NAME} (epoch 2)" in \
            second.spawned.stderr()

        # no step that had succeeded ran again; every step ran
        ran = lines_of(lines)
        assert {step: ran.count(step) for step in done} == dict.fromkeys(done, 1), ran
        assert {f"t{t}.s{s}" for t in range(TASKS) for s in range(STEPS)} <= set(ran)
        steps = {f"{task}.{name}": step for task, data in record["tasks"].items()
                 for name, step in data["steps"].items()}
        assert {name: steps[name]["attempts"] for name in done} == dict.fromkeys(done, 1)
        # the last steps' templates got the outputs the first steps made before the crash
        for t in range(TASKS):
            token = (tmp_path / f"t{t}.token").read_text().split()
            assert len(token) == 1, token  # s0 ran once
            assert (tmp_path / f"t{t}.got").read_text().split() == token
            assert steps[f"t{t}.s0"]["output"]["stdout"].strip() == token[0]

        shown = cli.ok("status", workflow_id).stdout
        assert f"succeeded  on {NAME} (epoch 2)" in shown and "so far" not in shown, shown
        assert f"node {NAME} was started again and took it back (epoch 2)" in shown, shown
        moved = moves(cli.events(workflow_id))
        assert [(m["from"], m["to"], m["epoch"]) for m in moved] == [(NAME, NAME, 2)], moved


def test_a_workflow_taken_back_after_a_restart_can_be_cancelled(tmp_path: Path) -> None:
    lines = tmp_path / "lines.txt"
    marker = f"lone-{os.getpid()}-{tmp_path.name}"
    playbook = write_playbook(tmp_path, "long", f"""
        tasks:
          - name: t0
            steps:
              - name: quick
                plugin: shell
                with: {{command: "echo quick >> {lines}"}}
              - name: long
                plugin: shell
                with: {{command: "echo long >> {lines} && sleep 120 && echo {marker}"}}
        """)
    with contextlib.ExitStack() as nodes:
        first = nodes.enter_context(lone_node(tmp_path, "first"))
        cli = Cli(first.url)
        workflow_id = cli.submit(playbook)
        wait_until(lambda: "long" in lines_of(lines), 30, "the long step to start", 0.05)
        first.kill()
        second = nodes.enter_context(lone_node(tmp_path, "second"))
        assert second.url == first.url
        running = cli.wait_status(workflow_id, "running")
        wait_until(lambda: cli.status(workflow_id)["epoch"] == 2, 30, "the restarted node "
                   "to own the workflow", 0.1)
        assert running["node"] == NAME
        answer = cli("cancel", workflow_id)
        assert answer.returncode == 0, answer.stdout + answer.stderr
        assert "is not running on node" not in answer.stdout + answer.stderr
        record = cli.wait_status(workflow_id, {"cancelled", "succeeded", "failed"}, timeout=30)
        assert record["status"] == "cancelled", record
        assert (record["node"], record["epoch"]) == (NAME, 2)
        assert lines_of(lines).count("quick") == 1
        wait_until(lambda: not processes_with(marker), 20,
                   "every attempt's command of the long step to be killed", 0.1)


def test_the_name_is_refused_while_its_node_lives(tmp_path: Path) -> None:
    with lone_node(tmp_path, "first") as first:
        # on the same NATS: the live node's presence is recent, and it runs
        other = noetl("node", "start", "--name", NAME, "--nats", first.url,
                      "--state-dir", tmp_path / "other", cwd=tmp_path, timeout=60)
        assert other.returncode != 0
        assert (f"a node named {NAME} already runs (on {socket.gethostname()}, pid "
                f"{first.pid}); give this one another --name") in other.stderr, other.stderr
        # on its own state dir: that store is the live node's server's
        state = tmp_path / "state"
        again = noetl("node", "start", "--name", NAME, "--state-dir", state, cwd=tmp_path,
                      timeout=60)
        assert again.returncode != 0
        assert f"state dir {state} is in use by the nats-server of process {first.pid}" in \
            again.stderr, again.stderr
        assert first.spawned.proc.poll() is None
        assert nats_servers_on(state) == {server_of(state)["pid"]}
        assert Cli(first.url).ok("list").returncode == 0


def test_a_recent_record_of_a_dead_or_reused_pid_does_not_block_the_name(
        tmp_path: Path) -> None:
    """The record is fresh (a 5 s heartbeat, written just now) and names a process of this
    machine: the name is refused while that process is the node, free once it is gone
    or its pid belongs to another process."""
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"],
                                start_new_session=True)
    dead = subprocess.Popen(["true"])
    dead.wait(10)
    try:
        with running_server(tmp_path) as url:
            def record(pid: int, start: str | None) -> None:
                put_presence(url, NAME, {"name": NAME, "host": socket.gethostname(),
                                         "pid": pid, "heartbeat": 5.0, "at": time.time(),
                                         "process": start})

            record(stranger.pid, started(stranger.pid))  # the live process itself
            refused = noetl("node", "start", "--name", NAME, "--nats", url, cwd=tmp_path,
                            timeout=60)
            assert refused.returncode != 0
            assert (f"a node named {NAME} already runs (on {socket.gethostname()}, pid "
                    f"{stranger.pid})") in refused.stderr, refused.stderr

            for run, (pid, start) in {"reused": (stranger.pid, "another-boot:12345"),
                                      "dead": (dead.pid, None)}.items():
                record(pid, start)
                with lone_node(tmp_path, run, extra=("--nats", url)) as node:
                    assert node.url == url
                    assert f"node {NAME} (pid {pid} on this machine) is gone" in \
                        node.spawned.stderr()
    finally:
        stranger.kill()
        stranger.wait(10)


def test_the_port_of_the_last_start_if_taken_is_replaced_and_said(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with lone_node(tmp_path, "first") as first:
        port = int(first.url.rsplit(":", 1)[1])
        old_server = server_of(state)["pid"]
        first.kill()
    wait_until(lambda: not alive(old_server), 20, "the first node's server to exit", 0.05)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        with lone_node(tmp_path, "second") as second:
            assert second.url != first.url
            assert f"port {port} of its last start is taken" in second.said
            assert Cli(second.url).ok("list").returncode == 0
    with lone_node(tmp_path, "third") as third:  # remembered: the port it had last
        assert third.url == second.url


def test_a_server_left_behind_by_its_dead_node_is_stopped_at_the_next_start(
        tmp_path: Path) -> None:
    """Its watchdog died too (killed with the node): nothing stopped it; the next start
    on its store does, and the node comes back on its port."""
    state = tmp_path / "state"
    with contextlib.ExitStack() as nodes:
        first = nodes.enter_context(lone_node(tmp_path, "first"))
        old_server = server_of(state)["pid"]
        for pid, line in processes_with(str(state / "jetstream")).items():
            if "noetl-nats-watchdog" in line:
                os.kill(pid, signal.SIGKILL)
        first.kill()
        assert alive(old_server)  # an orphan: no one will stop it
        second = nodes.enter_context(lone_node(tmp_path, "second"))
        assert second.url == first.url
        assert not alive(old_server)
        assert f"the nats-server of a former start (pid {old_server}) outlived its owner" in \
            second.spawned.stderr()


def test_noetl_server_comes_back_on_its_port(tmp_path: Path) -> None:
    urls = []
    for run in ("first", "second"):
        spawned = spawn(cli_command("server", "--state-dir", tmp_path / "state"), tmp_path, run)
        try:
            urls.append(spawned.wait_for_line(SERVER_UP, START_TIMEOUT).group(1))
        finally:
            assert spawned.terminate() == 0
            spawned.cleanup()
    assert urls[0] == urls[1]


def put_presence(url: str, name: str, record: dict[str, Any]) -> None:
    """Write a node's presence record into ``noetl-nodes`` as a node would."""
    import nats

    async def go() -> None:
        nc = await nats.connect(url, allow_reconnect=False, max_reconnect_attempts=0,
                                **login(url))
        try:
            kv = await nc.jetstream().create_key_value(bucket="noetl-nodes")  # or the one there
            await kv.put(name, encode(record))
        finally:
            await nc.close()

    asyncio.run(go())
