"""Durable workflows: a dead owner's workflows go on elsewhere, and no step runs twice.

Real `noetl server`, real node and worker processes, real kill -9. Every shell
step appends a line naming itself to a file: a step run twice shows there.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.node_helpers import Cli, running_node, running_server
from tests.run_helpers import wait_until
from tests.takeover_helpers import (
    NO_SHELL,
    NODE,
    appending_playbook,
    done_before,
    every_step,
    lines_of,
    moves,
    run_twice,
    shell_worker,
    step_records,
    two_nodes,
)

pytestmark = pytest.mark.timeout(120)


def test_a_killed_owner_s_workflow_goes_on_elsewhere_and_no_step_runs_twice(
        tmp_path: Path) -> None:
    lines = tmp_path / "lines.txt"
    playbook = appending_playbook(tmp_path, lines, tasks=3, steps=8, pause=0.2)
    with two_nodes(tmp_path) as (url, a, b):
        cli = Cli(url)
        workflow_id = cli.submit(playbook)
        owner = cli.wait_status(workflow_id, "running")["node"]
        first, other = (a, b) if owner == "a" else (b, a)
        wait_until(lambda: len(lines_of(lines)) >= 6, 30, "six steps done", 0.05)
        first.spawned.kill()
        assert first.proc.returncode == -signal.SIGKILL

        record = cli.wait_status(workflow_id, {"succeeded", "failed"}, timeout=60)
        assert record["status"] == "succeeded", record.get("error")
        assert record["node"] == other.name and record["epoch"] == 2
        assert set(lines_of(lines)) == every_step(3, 8)
        assert run_twice(lines) == []
        steps = step_records(record)
        assert all(step["status"] == "succeeded" for step in steps.values()), steps
        assert f"took over workflow {workflow_id} from node {first.name}" in other.stderr()


def test_an_owner_stopped_with_on_stop_hand_over_leaves_its_workflow_to_another_node(
        tmp_path: Path) -> None:
    """SIGTERM (a rolling update) of an owner set to `on_stop: hand_over`: its workflow
    is not cancelled; the other node takes it over and finishes it, no step run twice."""
    lines = tmp_path / "lines.txt"
    playbook = appending_playbook(tmp_path, lines, tasks=2, steps=8, pause=0.2)
    config = NO_SHELL + "on_stop: hand_over\n"
    with running_server(tmp_path) as url, \
            running_node(tmp_path, "a", nats=url, config=config) as a, \
            running_node(tmp_path, "b", nats=url, config=config) as b, \
            shell_worker(tmp_path, url):
        cli = Cli(url)
        workflow_id = cli.submit(playbook)
        owner = cli.wait_status(workflow_id, "running")["node"]
        first, other = (a, b) if owner == "a" else (b, a)
        wait_until(lambda: len(lines_of(lines)) >= 4, 30, "four steps done", 0.05)
        first.proc.send_signal(signal.SIGTERM)
        assert first.stop(timeout=60) == 0, first.stderr()
        assert f"workflow {workflow_id} is handed over" in first.stderr()

        record = cli.wait_status(workflow_id, {"succeeded", "failed", "cancelled"}, timeout=90)
        assert record["status"] == "succeeded", record.get("error")
        assert record["node"] == other.name and record["epoch"] == 2
        assert set(lines_of(lines)) == every_step(2, 8)
        assert run_twice(lines) == []


def test_of_three_nodes_one_takes_the_workflow_over_and_it_moves_once(tmp_path: Path) -> None:
    lines = tmp_path / "lines.txt"
    playbook = appending_playbook(tmp_path, lines, tasks=3, steps=6, pause=0.2)
    with running_server(tmp_path) as url, \
            running_node(tmp_path, "a", nats=url, config=NO_SHELL) as a, \
            running_node(tmp_path, "b", nats=url, config=NO_SHELL) as b, \
            running_node(tmp_path, "c", nats=url, config=NO_SHELL) as c, \
            shell_worker(tmp_path, url):
        nodes = {node.name: node for node in (a, b, c)}
        cli = Cli(url)
        workflow_id = cli.submit(playbook)
        owner = nodes.pop(cli.wait_status(workflow_id, "running")["node"])
        wait_until(lambda: len(lines_of(lines)) >= 5, 30, "five steps done", 0.05)
        owner.spawned.kill()

        record = cli.wait_status(workflow_id, {"succeeded", "failed"}, timeout=60)
        assert record["status"] == "succeeded", record.get("error")
        assert record["node"] in nodes and record["epoch"] == 2
        heir = nodes[record["node"]]
        moved = moves(cli.events(workflow_id))
        assert [(m["from"], m["to"], m["epoch"]) for m in moved] == [
            (owner.name, heir.name, 2)], moved
        assert [(m["from"], m["to"], m["epoch"]) for m in record["moves"]] == [
            (owner.name, heir.name, 2)]
        assert f"took over workflow {workflow_id} from node {owner.name}" in heir.stderr()
        (bystander,) = set(nodes) - {heir.name}
        assert f"took over workflow {workflow_id}" not in nodes[bystander].stderr()
        assert set(lines_of(lines)) == every_step(3, 6)
        assert run_twice(lines) == []


def test_steps_done_before_the_owner_and_its_worker_died_run_once(tmp_path: Path) -> None:
    """The owner ran the shell steps on its own worker and dies with it: the attempts in
    flight are lost (and run again), those that had succeeded are not."""
    lines = tmp_path / "lines.txt"
    playbook = appending_playbook(tmp_path, lines, tasks=3, steps=6, pause=0.3)
    with running_server(tmp_path) as url, \
            running_node(tmp_path, "a", nats=url, config=NODE) as a:
        cli = Cli(url)
        workflow_id = cli.submit(playbook)
        assert cli.wait_status(workflow_id, "running")["node"] == "a"
        seen = wait_until(lambda: len(lines_of(lines)) >= 5 and lines_of(lines), 30,
                          "five steps started", 0.05)
        a.spawned.kill()  # the node, its worker and the shell commands it ran
        done = done_before(seen)
        assert done, seen
        # two nodes with their own workers come up on the NATS the dead owner used
        with running_node(tmp_path, "b", nats=url, config=NODE) as b, \
                running_node(tmp_path, "c", nats=url, config=NODE) as c:
            record = cli.wait_status(workflow_id, {"succeeded", "failed"}, timeout=60)
            assert record["status"] == "succeeded", record.get("error")
            assert record["node"] in ("b", "c") and record["epoch"] == 2
            heir = b if record["node"] == "b" else c
            assert f"took over workflow {workflow_id} from node a" in heir.stderr()
        counts = {step: lines_of(lines).count(step) for step in every_step(3, 6)}
        assert {step for step, n in counts.items() if n == 0} == set()
        assert {step: counts[step] for step in done} == dict.fromkeys(done, 1)
        steps = step_records(record)
        assert {name for name, step in steps.items() if step["status"] != "succeeded"} == set()
        assert {name: steps[name]["attempts"] for name in done} == dict.fromkeys(done, 1)
