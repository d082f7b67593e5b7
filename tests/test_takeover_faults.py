"""Takeover under faults: a paused owner, a cancel while no one owns, a crash loop,
the record seen while a workflow changes hands.

Real `noetl server`, node and worker processes; every process a test starts,
it stops; signals go only to those. Shell steps append a line naming
themselves to a file (tests/takeover_helpers.py): a step run twice shows there.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.node_helpers import Cli, read_record, running_node, running_server
from tests.run_helpers import wait_until, write_playbook
from tests.takeover_helpers import (
    LEASE,
    NO_SHELL,
    NODE,
    appending_playbook,
    every_step,
    lines_of,
    moves,
    run_twice,
    shell_worker,
    step_records,
    two_nodes,
)

pytestmark = pytest.mark.timeout(120)


# -- 2. a paused owner ------------------------------------------------------------------


def test_an_owner_paused_past_its_lease_lets_its_workflow_go_when_it_continues(
        tmp_path: Path) -> None:
    lines = tmp_path / "lines.txt"
    playbook = appending_playbook(tmp_path, lines, tasks=2, steps=12, pause=0.3)
    with two_nodes(tmp_path) as (url, a, b):
        cli = Cli(url)
        workflow_id = cli.submit(playbook)
        owner = cli.wait_status(workflow_id, "running")["node"]
        paused, heir = (a, b) if owner == "a" else (b, a)
        wait_until(lambda: len(lines_of(lines)) >= 4, 30, "four steps started", 0.05)
        os.kill(paused.pid, signal.SIGSTOP)
        try:
            # the paused node still sits in the API's queue group: read the bucket
            taken = wait_until(lambda: (r := read_record(url, workflow_id)) is not None
                               and r["node"] == heir.name and r, 30, "the takeover", 0.1)
            assert taken["epoch"] == 2 and taken["status"] == "running"
            before = len(lines_of(lines))
            wait_until(lambda: len(lines_of(lines)) >= before + 2, 30,
                       "the new owner to go on", 0.05)
        finally:
            os.kill(paused.pid, signal.SIGCONT)
        assert paused.proc.poll() is None

        let_go = (f"lost the lease of workflow {workflow_id} (epoch 1): node {heir.name} "
                  f"holds it (epoch 2); letting it go")
        records: list[dict[str, Any]] = []

        def ended() -> bool:
            record = read_record(url, workflow_id)
            assert record is not None
            records.append(record)
            return record["status"] != "running" and let_go in paused.stderr()

        wait_until(ended, 60, "the workflow to end and the paused node to let go", 0.05)
        assert {(r["node"], r["epoch"]) for r in records} == {(heir.name, 2)}, records[-1]
        record = cli.status(workflow_id)
        assert record["status"] == "succeeded", record.get("error")
        assert (record["node"], record["epoch"]) == (heir.name, 2)
        assert run_twice(lines) == []
        assert set(lines_of(lines)) == every_step(2, 12)
        assert [(m["from"], m["to"]) for m in moves(cli.events(workflow_id))] == [
            (paused.name, heir.name)]
        assert cli.tree()[paused.name]["workflows"] == []


# -- 3. a cancel while no one owns the workflow ----------------------------------------


def test_a_cancel_sent_while_the_owner_is_dead_cancels_the_workflow_once_taken_over(
        tmp_path: Path) -> None:
    lines = tmp_path / "lines.txt"
    # one task: once a step's line is there, the next starts only `pause` later
    playbook = appending_playbook(tmp_path, lines, tasks=1, steps=6, pause=1.5)
    with running_server(tmp_path) as url, \
            running_node(tmp_path, "a", nats=url, config=NO_SHELL) as a, \
            running_node(tmp_path, "b", nats=url, config=NO_SHELL) as b, \
            shell_worker(tmp_path, url) as worker:
        cli = Cli(url)
        workflow_id = cli.submit(playbook)
        owner = cli.wait_status(workflow_id, "running")["node"]
        dead, heir = (a, b) if owner == "a" else (b, a)
        wait_until(lambda: "t0.s1" in lines_of(lines), 30, "the second step to start", 0.02)
        dead.spawned.kill()
        seen = lines_of(lines)

        cancelled = cli("cancel", workflow_id)
        assert cancelled.returncode == 0, cancelled.stderr
        assert cancelled.stdout.strip() == f"{workflow_id} cancelling"
        assert f"node {dead.name}" in cancelled.stderr, cancelled.stderr
        assert "the node that takes it over cancels it" in cancelled.stderr

        record = cli.wait_status(workflow_id, {"cancelled", "succeeded", "failed"}, timeout=30)
        assert record["status"] == "cancelled", record.get("error")
        assert (record["node"], record["epoch"]) == (heir.name, 2)
        worker.terminate()  # nothing can append a line from here on
        assert lines_of(lines) == seen
        steps = record["tasks"]["t0"]["steps"]
        # s1, in flight at the kill, may have ended on the worker before the takeover
        assert steps["s0"]["status"] == "succeeded"
        assert steps["s1"]["status"] in ("succeeded", "cancelled"), steps["s1"]
        # and nothing after it was begun: no command of s2 reached the worker
        sent = [(e["step_id"], e["status"]) for e in cli.events(workflow_id)
                if e.get("type") == "event" and e["step_id"] not in ("t0=s0", "t0=s1")]
        assert sent == []
        assert steps["s2"]["status"] in ("not_started", "cancelled"), steps["s2"]
        assert {name: step["status"] for name, step in steps.items() if name > "s2"} == {
            f"s{n}": "not_started" for n in range(3, 6)}, steps
        again = cli("cancel", workflow_id)
        assert again.returncode == 1
        assert f"workflow {workflow_id} is cancelled: nothing to cancel" in again.stderr


# -- 4. a crash loop across takeovers ----------------------------------------------------


def test_a_step_crashing_across_two_takeovers_stops_at_its_restart_limit(
        tmp_path: Path) -> None:
    playbook = write_playbook(tmp_path, "crashloop", f"""
        tasks:
          - name: t
            supervision:
              strategy: one_for_one
              max_restarts: 3
              within: 5m
              backoff: {{initial: {LEASE}s, max: {LEASE}s}}
            steps:
              - name: boom
                plugin: fail
        """)
    with running_server(tmp_path) as url, \
            running_node(tmp_path, "a", nats=url, config=NODE) as a, \
            running_node(tmp_path, "b", nats=url, config=NODE) as b, \
            running_node(tmp_path, "c", nats=url, config=NODE) as c:
        nodes = {node.name: node for node in (a, b, c)}
        cli = Cli(url)
        workflow_id = cli.submit(playbook)

        def attempts_at_least(n: int) -> dict[str, Any] | None:
            record = cli.status(workflow_id)
            return record if record["tasks"]["t"]["steps"]["boom"]["attempts"] >= n else None

        killed = []
        for attempts in (2, 3):
            record = wait_until(lambda n=attempts: attempts_at_least(n), 30,
                                f"attempt {attempts}", 0.1)
            if record["status"] != "running":
                break
            killed.append(record["node"])
            nodes.pop(record["node"]).spawned.kill()
            wait_until(lambda: cli.status(workflow_id)["node"] in nodes, 30, "a takeover", 0.1)

        record = cli.wait_status(workflow_id, {"succeeded", "failed", "cancelled"}, timeout=60)
        assert len(killed) >= 1, record
        assert record["status"] == "failed"
        assert "gave up: more than 3 restarts within 300s" in record["error"]["reason"]
        assert "failed on purpose (attempt 4)" in record["error"]["reason"]
        boom = record["tasks"]["t"]["steps"]["boom"]
        assert boom["attempts"] == 4 and boom["status"] == "failed", boom
        events = cli.events(workflow_id)
        tried = sorted(e["attempt"] for e in events
                       if e.get("type") == "event" and e.get("status") == "failed")
        assert tried == [1, 2, 3, 4], tried
        assert [m["from"] for m in moves(events)] == killed


# -- 5. the record while the workflow changes hands ----------------------------------------


def test_the_record_tells_the_truth_through_a_takeover(tmp_path: Path) -> None:
    lines = tmp_path / "lines.txt"
    step = "      - name: s{n}\n        plugin: shell\n        with: {{command: \"{cmd}\"}}\n"
    body = "tasks:\n  - name: t0\n    steps:\n" + "".join(
        # s2 starts on the heir and runs long enough for a status to see it running
        step.format(n=n, cmd=f"echo t0.s{n} >> {lines} && sleep {8 if n == 2 else 1} "
                             f"&& echo done t0.s{n}")
        for n in range(3))
    body += step.format(n=3, cmd=f"echo t0.s3 >> {lines} && echo got {{{{ "
                        "steps.s1.output.stdout }}")
    playbook = write_playbook(tmp_path, "truthful", body)
    with two_nodes(tmp_path) as (url, a, b):
        cli = Cli(url)
        workflow_id = cli.submit(playbook)
        owner = cli.wait_status(workflow_id, "running")["node"]
        dead, heir = (a, b) if owner == "a" else (b, a)
        wait_until(lambda: "t0.s1" in lines_of(lines), 30, "the second step to start", 0.02)
        dead.spawned.kill()  # s1 ends on the worker while no one owns the workflow

        shown: list[str] = []

        def status_shown() -> bool:
            text = cli("status", workflow_id)
            shown.append(text.stdout + text.stderr)
            assert "Traceback" not in text.stdout + text.stderr, text
            assert text.returncode == 0, text
            return f"on {heir.name} (epoch 2)," in text.stdout

        wait_until(status_shown, 30, "status to show the new owner", 0.05)
        moved = cli.status(workflow_id)
        assert moved["status"] == "running" and moved["finished_at"] is None
        s1 = moved["tasks"]["t0"]["steps"]["s1"]
        wait_until(lambda: cli.status(workflow_id)["tasks"]["t0"]["steps"]["s1"]["status"]
                   == "succeeded", 10, "s1, done while no one owned it, to be succeeded", 0.1)

        record = cli.wait_status(workflow_id, {"succeeded", "failed"}, timeout=30)
        assert record["status"] == "succeeded", record.get("error")
        steps = step_records(record)
        assert {name: s["status"] for name, s in steps.items()} == dict.fromkeys(
            ["t0.s0", "t0.s1", "t0.s2", "t0.s3"], "succeeded"), (s1, steps)
        for n in range(3):
            assert steps[f"t0.s{n}"]["output"]["stdout"] == f"done t0.s{n}\n"
            assert steps[f"t0.s{n}"]["attempts"] == 1
        assert steps["t0.s3"]["output"]["stdout"] == "got done t0.s1\n"
        assert run_twice(lines) == []
        (move,) = moves(cli.events(workflow_id))
        assert record["finished_at"] is not None and record["finished_at"] > move["at"]
        assert record["tasks"]["t0"]["status"] == "succeeded"
        assert record["tasks"]["t0"]["finished_at"] > move["at"]
        text = cli.ok("status", workflow_id).stdout
        assert "so far" not in text and f"on {heir.name} (epoch 2)," in text
