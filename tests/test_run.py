"""Playbooks run end to end: `noetl run` over a real nats-server, real workers, real processes.

Most tests drive the command line as a user would (`noetl run FILE --json`)
and read the run's report; the worker-killed test runs a `Node` in this
process, with the plugin's worker in another process that it kills.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from collections import Counter
from itertools import combinations
from pathlib import Path
from typing import Any

import pytest

from noetl_actors.bridge import ConnectOptions, EmbeddedNatsServer
from noetl_actors.playbook import Catalog, load_playbook
from noetl_actors.services import Node
from noetl_actors.services._claims import BucketClaims, LocalClaims
from noetl_actors.supervision import EventKind, ExitKind
from tests.helpers import Recorder
from tests.run_helpers import (
    EXAMPLES,
    alive,
    attempts,
    cli_command,
    cmdline,
    descendants,
    environment,
    kill_tree,
    noetl,
    plugin_children,
    run_playbook,
    starts,
    steps_of,
    wait_gone,
    wait_until,
    write_playbook,
)

SLEEP = 0.3
"""Seconds each `sleep` step of the timing tests waits."""
GONE_WAIT = 5.0
"""How long a process may take to disappear once it should."""


# -- tasks in parallel, steps in sequence --------------------------------------------------


def test_tasks_overlap_in_time_while_the_steps_of_a_task_never_do(tmp_path: Path) -> None:
    tasks = "".join(f"""
          - name: {name}
            steps:
              - {{name: one, plugin: sleep, with: {{seconds: {SLEEP}}}}}
              - {{name: two, plugin: sleep, with: {{seconds: {SLEEP}}}}}
        """ for name in ("red", "green", "blue"))
    path = write_playbook(tmp_path, "overlap", "tasks:" + tasks)

    result, report = run_playbook(path, tmp_path / "nats")

    assert result.returncode == 0, result.stderr
    assert report["status"] == "succeeded"
    for name, task in report["tasks"].items():
        one, two = task["steps"]["one"], task["steps"]["two"]
        for step in (one, two):
            assert step["finished_at"] - step["started_at"] >= SLEEP * 0.95, (name, step)
        assert one["finished_at"] <= two["started_at"], f"steps of {name} overlap"
        assert two["finished_at"] <= task["finished_at"]
    for a, b in combinations(report["tasks"].values(), 2):
        assert a["started_at"] < b["finished_at"] and b["started_at"] < a["finished_at"]
    firsts = [task["steps"]["one"] for task in report["tasks"].values()]
    assert max(s["started_at"] for s in firsts) < min(s["finished_at"] for s in firsts), (
        "the first steps of the three tasks never ran at the same time")
    assert report["finished_at"] - report["started_at"] < 6 * SLEEP


def test_a_step_that_waits_for_a_busy_worker_says_so_and_starts_when_it_really_runs(
    tmp_path: Path,
) -> None:
    # The shell plugin's worker runs 4 attempts at once (supervisors/node.yaml):
    # of 6 at once, 2 wait in its queue for one of the first 4 to end.
    tasks = "".join(f"""
          - name: t{i}
            steps:
              - {{name: s, plugin: shell, with: {{command: "sleep {SLEEP}"}}}}
        """ for i in range(6))
    path = write_playbook(tmp_path, "queued", "tasks:" + tasks)

    result, report = run_playbook(path, tmp_path / "nats")

    assert result.returncode == 0, result.stderr
    steps = [task["steps"]["s"] for task in report["tasks"].values()]
    for step in steps:
        assert step["queued_at"] <= step["started_at"], step
        assert step["queued"] == round(step["started_at"] - step["queued_at"], 3), step
        assert step["finished_at"] - step["started_at"] >= SLEEP * 0.95, step
    waited = sorted(step["queued"] for step in steps)[-2:]
    assert all(q >= SLEEP * 0.9 for q in waited), steps


def test_sleeps_hold_no_thread_so_200_run_at_once(tmp_path: Path) -> None:
    # A pool thread each would run them 32 at a time (the inproc runner's pool).
    tasks = "".join(f"""
          - name: t{i}
            steps: [{{name: s, plugin: sleep, with: {{seconds: 3}}}}]
        """ for i in range(200))
    path = write_playbook(tmp_path, "sleepers", "tasks:" + tasks)

    result, report = run_playbook(path, tmp_path / "nats")

    assert result.returncode == 0, result.stderr
    steps = [task["steps"]["s"] for task in report["tasks"].values()]
    assert max(s["started_at"] for s in steps) < min(s["finished_at"] for s in steps), (
        "some sleep started only after another had ended")


# -- strategies within a task ----------------------------------------------------------------


@pytest.fixture(scope="module")
def task_strategies(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One run: three tasks, one per strategy, each with a step failing its first two attempts."""
    folder = tmp_path_factory.mktemp("strategies")
    tasks = "".join(f"""
          - name: {strategy}
            supervision: {{strategy: {strategy}, max_restarts: 3, within: 1m}}
            steps:
              - {{name: first, plugin: echo, with: {{tx: "{{{{ attempt }}}}"}}}}
              - {{name: flaky, plugin: fail, with: {{until_attempt: 3}}}}
              - {{name: last, plugin: echo, with: {{tx: "{{{{ steps.first.output.tx }}}}"}}}}
        """ for strategy in ("one_for_one", "one_for_all", "rest_for_one"))
    path = write_playbook(folder, "strategies", "tasks:" + tasks)
    result, report = run_playbook(path, folder / "nats")
    assert result.returncode == 0, result.stderr
    assert report["status"] == "succeeded"
    return report


def test_one_for_one_in_a_task_restarts_only_the_failed_step(
        task_strategies: dict[str, Any]) -> None:
    steps = steps_of(task_strategies, "one_for_one")
    assert {name: s["attempts"] for name, s in steps.items()} == {
        "first": 1, "flaky": 3, "last": 1}
    assert steps["flaky"]["output"] == {"attempt": 3}
    assert steps["last"]["output"] == {"tx": 1}
    assert task_strategies["tasks"]["one_for_one"]["starts"] == 1


def test_one_for_all_in_a_task_runs_its_earlier_steps_again(
        task_strategies: dict[str, Any]) -> None:
    steps = steps_of(task_strategies, "one_for_all")
    assert {name: s["attempts"] for name, s in steps.items()} == {
        "first": 3, "flaky": 3, "last": 1}
    assert steps["first"]["output"] == {"tx": 3}
    assert steps["last"]["output"] == {"tx": 3}, "the last step saw an output of a discarded run"
    assert task_strategies["tasks"]["one_for_all"]["starts"] == 1


def test_rest_for_one_in_a_task_restarts_the_failed_step_and_not_the_earlier_ones(
        task_strategies: dict[str, Any]) -> None:
    steps = steps_of(task_strategies, "rest_for_one")
    assert {name: s["attempts"] for name, s in steps.items()} == {
        "first": 1, "flaky": 3, "last": 1}
    assert steps["last"]["output"] == {"tx": 1}
    assert task_strategies["tasks"]["rest_for_one"]["starts"] == 1


# -- strategies of a workflow over its tasks ------------------------------------------------

SHAKY_TASK = """
          - name: shaky
            supervision: {use: fail-fast}
            steps:
              - {name: pause, plugin: sleep, with: {seconds: 0.2}}
              - {name: call, plugin: fail, with: {until_attempt: 2}}
"""
"""A task (indented to fit the playbooks below) that gives up once, after 0.2 s."""


def test_one_for_one_in_a_workflow_restarts_only_the_task_that_gave_up(tmp_path: Path) -> None:
    path = write_playbook(tmp_path, "wf-one-for-one", """
        supervision: {strategy: one_for_one, max_restarts: 2, within: 1m}
        tasks:
          - name: steady
            steps:
              - {name: wait, plugin: sleep, with: {seconds: 0.6}}
        """ + SHAKY_TASK)

    result, report = run_playbook(path, tmp_path / "nats")

    assert result.returncode == 0, result.stderr
    assert report["status"] == "succeeded"
    assert starts(report) == {"steady": 1, "shaky": 2}
    assert attempts(report) == {"steady.wait": 1, "shaky.pause": 2, "shaky.call": 2}


def test_one_for_all_in_a_workflow_restarts_every_running_task_but_not_finished_ones(
        tmp_path: Path) -> None:
    path = write_playbook(tmp_path, "wf-one-for-all", """
        supervision: {strategy: one_for_all, max_restarts: 1, within: 1m}
        tasks:
          - name: quick
            steps:
              - {name: say, plugin: echo, with: {msg: done early}}
          - name: long
            steps:
              - {name: wait, plugin: sleep, with: {seconds: 0.6}}
        """ + SHAKY_TASK)

    result, report = run_playbook(path, tmp_path / "nats")

    assert result.returncode == 0, result.stderr
    assert report["status"] == "succeeded"
    assert starts(report) == {"quick": 1, "long": 2, "shaky": 2}
    assert attempts(report) == {
        "quick.say": 1, "long.wait": 2, "shaky.pause": 2, "shaky.call": 2}


def test_rest_for_one_in_a_workflow_restarts_the_task_that_gave_up_and_those_after_it(
        tmp_path: Path) -> None:
    path = write_playbook(tmp_path, "wf-rest-for-one", """
        supervision: {strategy: rest_for_one, max_restarts: 1, within: 1m}
        tasks:
          - name: before
            steps:
              - {name: wait, plugin: sleep, with: {seconds: 0.6}}
        """ + SHAKY_TASK + """
          - name: after
            steps:
              - {name: wait, plugin: sleep, with: {seconds: 0.6}}
        """)

    result, report = run_playbook(path, tmp_path / "nats")

    assert result.returncode == 0, result.stderr
    assert report["status"] == "succeeded"
    assert starts(report) == {"before": 1, "shaky": 2, "after": 2}
    assert attempts(report) == {
        "before.wait": 1, "shaky.pause": 2, "shaky.call": 2, "after.wait": 2}


# -- restart types ---------------------------------------------------------------------------


def test_a_transient_step_is_restarted_after_a_failure_and_a_temporary_one_is_not(
        tmp_path: Path) -> None:
    path = write_playbook(tmp_path, "restart-types", """
        tasks:
          - name: fetch
            steps:
              - {name: call, plugin: fail, with: {until_attempt: 2}}
              - {name: store, plugin: echo, with: {got: "{{ steps.call.output }}"}}
          - name: notify
            steps:
              - {name: post, plugin: fail, restart: temporary, with: {message: smtp down}}
              - {name: after, plugin: echo, with: {seen: "{{ steps.post.output }}"}}
        """)

    result, report = run_playbook(path, tmp_path / "nats")

    assert result.returncode == 0, result.stderr
    assert report["status"] == "succeeded"
    assert attempts(report) == {
        "fetch.call": 2, "fetch.store": 1, "notify.post": 1, "notify.after": 1}
    assert starts(report) == {"fetch": 1, "notify": 1}
    post, after = steps_of(report, "notify")["post"], steps_of(report, "notify")["after"]
    assert post["status"] == "failed"
    assert post["error"] == {"type": "PluginError", "message": "smtp down (attempt 1)"}
    assert after["status"] == "succeeded"
    assert after["output"] == {
        "seen": {"error": {"type": "PluginError", "message": "smtp down (attempt 1)"}}}
    assert steps_of(report, "fetch")["store"]["output"] == {"got": {"attempt": 2}}


PERMANENT = """
    tasks:
      - name: loop
        supervision: {max_restarts: 2, within: 1m}
        steps:
          - {name: tick, plugin: echo, restart: permanent, with: {n: "{{ attempt }}"}}
          - {name: next, plugin: echo, with: {msg: never reached}}
"""


def test_noetl_lint_warns_about_a_permanent_step(tmp_path: Path) -> None:
    path = write_playbook(tmp_path, "permanent", PERMANENT)

    result = noetl("lint", path, cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert re.search(rf"^{re.escape(str(path))}:\d+:\d+: warning: step loop.tick is permanent",
                     result.stdout, re.MULTILINE), result.stdout


def test_a_permanent_step_that_succeeds_is_restarted_until_its_task_gives_up(
        tmp_path: Path) -> None:
    path = write_playbook(tmp_path, "permanent", PERMANENT)

    result, report = run_playbook(path, tmp_path / "nats")

    assert result.returncode == 1
    assert report["status"] == "failed"
    tick, after = steps_of(report, "loop")["tick"], steps_of(report, "loop")["next"]
    assert tick["attempts"] == 3
    assert tick["output"] == {"n": 3}
    assert after["status"] == "not_started" and after["attempts"] == 0
    assert report["tasks"]["loop"]["status"] == "failed"
    chain = report["error"]["chain"]
    assert "loop gave up: more than 2 restarts" in chain[1]


# -- intensity and escalation ------------------------------------------------------------------


def test_a_task_past_its_intensity_escalates_and_the_workflow_fails_with_the_chain(
        tmp_path: Path) -> None:
    path = write_playbook(tmp_path, "intensity", """
        supervision: {strategy: one_for_one, max_restarts: 1, within: 1m}
        tasks:
          - name: load
            supervision: {strategy: one_for_one, max_restarts: 2, within: 1m}
            steps:
              - {name: insert, plugin: fail, with: {message: disk full}}
        """)

    result, report = run_playbook(path, tmp_path / "nats")

    assert result.returncode == 1
    assert report["status"] == "failed"
    assert starts(report) == {"load": 2}
    assert attempts(report) == {"load.insert": 6}, "3 attempts in each of 2 runs of the task"
    insert = steps_of(report, "load")["insert"]
    assert insert["status"] == "failed"
    assert insert["error"] == {"type": "PluginError", "message": "disk full (attempt 6)"}
    workflow = f"/node/workflows/{report['workflow_id']}"
    chain = report["error"]["chain"]
    assert len(chain) == 3, chain
    assert chain[0].startswith(f"{workflow} gave up: more than 1 restart within 60s")
    assert chain[1].startswith(f"{workflow}/load gave up: more than 2 restarts within 60s")
    assert chain[2].startswith(f"{workflow}/load/insert crashed: PluginError: disk full")
    assert report["error"]["reason"] == " <- ".join(chain)


# -- timeouts ---------------------------------------------------------------------------------


def test_a_step_past_its_timeout_fails_as_a_timeout_and_its_process_is_gone(
        tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    path = write_playbook(tmp_path, "timeouts", """
        vars: {pids: ""}
        tasks:
          - name: slow
            supervision: {max_restarts: 1, within: 1m}
            steps:
              - name: hang
                plugin: shell
                timeout: 2s
                with: {command: "echo $$ >> {{ vars.pids }}; exec sleep 30"}
        """)

    result, report = run_playbook(path, tmp_path / "nats", "--set", f"pids={pids}")

    assert result.returncode == 1
    assert report["status"] == "failed"
    hang = steps_of(report, "slow")["hang"]
    assert hang["attempts"] == 2
    assert hang["error"]["type"] == "timeout", hang
    # Killed at its timeout, long before its sleep would have ended.
    assert 1.9 <= hang["finished_at"] - hang["started_at"] < 30, hang
    assert "ran past its timeout of 2s" in report["error"]["chain"][-1]
    spawned = [int(line) for line in pids.read_text().split()]
    assert len(spawned) == 2, "one process per attempt"
    assert not wait_gone(spawned, GONE_WAIT), "a timed out attempt's process still runs"


@pytest.fixture(scope="module")
def timed_out_and_went_on(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Three tasks whose first step hangs until its timeout, recorded (temporary), then go on.

    Two clocks see the timeout: the step actor (checking every half
    heartbeat, so at 1.0 s exactly with the CLI's heartbeat of 1 s) and the
    worker's runner (from when it started the process, a little later).
    When the step actor comes first it cancels the attempt, and the worker
    answers `failed: cancelled` after the step has exited as a timeout.
    The next step keeps the run going long enough for that late answer to
    reach the report.
    """
    folder = tmp_path_factory.mktemp("timeouts")
    tasks = "".join(f"""
          - name: {name}
            steps:
              - {{name: hang, plugin: fail, runner: process, timeout: 1s, restart: temporary,
                 with: {{mode: hang}}}}
              - {{name: after, plugin: sleep, with: {{seconds: 0.3}}}}
              - {{name: seen, plugin: echo, with: {{error: "{{{{ steps.hang.output.error }}}}"}}}}
        """ for name in ("a", "b", "c"))
    path = write_playbook(folder, "timeouts-go-on", "tasks:" + tasks)
    result, report = run_playbook(path, folder / "nats")
    assert result.returncode == 0, result.stderr
    assert report["status"] == "succeeded"
    return report


def test_a_timed_out_step_stays_reported_as_a_timeout_after_its_worker_answers_the_cancel(
        timed_out_and_went_on: dict[str, Any]) -> None:
    errors = {task: steps_of(timed_out_and_went_on, task)["hang"]["error"]
              for task in ("a", "b", "c")}
    assert {task: error["type"] for task, error in errors.items()} == {
        "a": "timeout", "b": "timeout", "c": "timeout"}, errors


def test_a_timed_out_temporary_step_leaves_an_error_of_type_timeout_as_its_output(
        timed_out_and_went_on: dict[str, Any]) -> None:
    for task in ("a", "b", "c"):
        seen = steps_of(timed_out_and_went_on, task)["seen"]["output"]["error"]
        assert seen["type"] == "timeout", seen


# -- a plugin process that dies ----------------------------------------------------------------


def test_a_plugin_process_that_dies_is_a_crash_and_is_restarted_while_the_node_runs_on(
        tmp_path: Path) -> None:
    path = write_playbook(tmp_path, "crashes", """
        tasks:
          - name: recovers
            steps:
              - {name: oom, plugin: fail, runner: process, with: {mode: exit, until_attempt: 2}}
              - {name: after, plugin: echo, with: {got: "{{ steps.oom.output }}"}}
          - name: dies
            steps:
              - {name: oom, plugin: fail, runner: process, restart: temporary,
                 with: {mode: exit, message: out of memory}}
          - name: bystander
            needs: [dies]
            steps:
              - {name: say, plugin: echo, with: {msg: still here}}
        """)

    result, report = run_playbook(path, tmp_path / "nats")

    assert result.returncode == 0, result.stderr
    assert report["status"] == "succeeded"
    recovers = steps_of(report, "recovers")
    assert recovers["oom"]["attempts"] == 2
    assert recovers["oom"]["output"] == {"attempt": 2}
    assert recovers["after"]["output"] == {"got": {"attempt": 2}}
    died = steps_of(report, "dies")["oom"]
    assert died["status"] == "failed" and died["attempts"] == 1
    assert died["error"]["type"] == "crash"
    assert "exited with code 137" in died["error"]["message"]
    assert "out of memory" in died["error"]["message"]
    assert steps_of(report, "bystander")["say"]["output"] == {"msg": "still here"}


# -- a worker killed mid-attempt -------------------------------------------------------------


def _start_worker(url: str, folder: Path, name: str) -> tuple[subprocess.Popen[bytes], Path]:
    log = folder / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cli_command("worker", "--nats", url, "--plugin", "sleep", "--heartbeat", "0.2",
                        "--accept-unfenced"),  # the test's node holds no leases
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True, cwd=folder)
    return proc, log


def _stop_worker(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            kill_tree(proc.pid)
            proc.wait()


def test_a_node_on_its_embedded_server_claims_in_process_and_on_a_shared_one_in_nats(
        nats_server: EmbeddedNatsServer, tmp_path: Path) -> None:
    alone = Node(state_dir=tmp_path / "alone", workers=["echo"])
    shared = Node(options=ConnectOptions(servers=(nats_server.url,)), workers=["echo"])
    try:
        alone.start()
        shared.start()
        assert isinstance(alone.claims, LocalClaims)
        assert isinstance(shared.claims, BucketClaims)
    finally:
        shared.stop()
        alone.stop()


def _events(node: Node, workflow_id: str, step_id: str) -> list[tuple[int, str]]:
    return [(e["attempt"], e["status"]) for e in node.history(workflow_id)
            if e.get("type") == "event" and e["step_id"] == step_id]


def test_a_worker_killed_mid_attempt_is_found_out_by_its_missed_heartbeats(
        nats_server: EmbeddedNatsServer, tmp_path: Path) -> None:
    path = write_playbook(tmp_path, "lost-worker", """
        tasks:
          - name: load
            steps:
              - name: wait
                plugin: sleep
                runner: process
                with: {seconds: "{{ 30 if attempt == 1 else 0.2 }}"}
        """)
    playbook = load_playbook(path)
    others = [name for name in Catalog.default().plugins if name != "sleep"]
    recorder = Recorder()
    node = Node(options=ConnectOptions(servers=(nats_server.url,)), workers=others,
                heartbeat=0.2, observers=[recorder])
    workers: list[subprocess.Popen[bytes]] = []
    orphans: set[int] = set()
    try:
        first, first_log = _start_worker(nats_server.url, tmp_path, "first")
        workers.append(first)
        wait_until(lambda: b"workers for sleep" in first_log.read_bytes(), 20,
                   "the first worker to start")
        node.start()
        run = node.run(playbook)
        step = f"/node/workflows/{run.workflow_id}/load/wait"

        wait_until(lambda: (1, "started") in _events(node, run.workflow_id, "load=wait"), 10,
                   "attempt 1 to start on the first worker")
        orphans = wait_until(lambda: plugin_children(first.pid), 5,
                             "the first worker's plugin process")
        first.kill()  # SIGKILL: no goodbye, no last event
        killed_at, killed_at_wall = time.monotonic(), time.time()
        first.wait(5)

        exit_1 = recorder.wait_for(EventKind.EXITED, step, timeout=5)[0]
        assert exit_1.at - killed_at_wall < 3.0, "not found out within a few heartbeats"
        assert exit_1.reason is not None and exit_1.reason.is_abnormal
        assert exit_1.reason.error_type == "crash"
        assert "sent nothing for" in exit_1.reason.message, exit_1.reason
        assert "heartbeat 0.2s" in exit_1.reason.message, exit_1.reason

        second, _ = _start_worker(nats_server.url, tmp_path, "second")
        workers.append(second)
        reason = run.wait(20)
        assert reason is not None, "the workflow did not finish on the second worker"
        assert reason.kind is ExitKind.NORMAL, reason
        events = _events(node, run.workflow_id, "load=wait")
        assert (1, "succeeded") not in events and (1, "failed") not in events
        assert events.index((2, "accepted")) < events.index((2, "started")) \
            < events.index((2, "succeeded"))

        left = wait_gone(orphans, max(0.0, killed_at + GONE_WAIT - time.monotonic()))
        assert not left, (f"{GONE_WAIT:g}s after the worker was killed, its plugin process "
                          f"still runs: {[(p, cmdline(p)) for p in left]}")
    finally:
        node.stop()
        for proc in workers:
            _stop_worker(proc)
        for pid in orphans:
            if alive(pid) and "noetl_actors.runners._child" in cmdline(pid):
                kill_tree(pid)


# -- no attempt runs twice ------------------------------------------------------------------

SIDE_EFFECTS = '''
import os


def record(path, tag, attempt, fail_below=0):
    """Append one line per execution; fail while attempt < fail_below."""
    with open(path, "a") as log:
        log.write(f"{tag} {attempt} {os.getpid()}\\n")
    if attempt < fail_below:
        raise RuntimeError(f"{tag} fails attempt {attempt} on purpose")
    return {"tag": tag, "attempt": attempt}
'''


def _record(tag: str, fail_below: int = 0, runner: str = "") -> str:
    runner_key = f", runner: {runner}" if runner else ""
    return (f'{{name: {tag.split(".")[1]}, plugin: python{runner_key}, with: '
            f'{{function: "side_effects:record", kwargs: {{path: "{{{{ vars.log }}}}", '
            f'tag: {tag}, attempt: "{{{{ attempt }}}}", fail_below: {fail_below}}}}}}}')


def test_no_attempt_ever_executes_twice_across_step_and_task_restarts(tmp_path: Path) -> None:
    (tmp_path / "side_effects.py").write_text(SIDE_EFFECTS)
    log = tmp_path / "executions.log"
    path = write_playbook(tmp_path, "once", f"""
        vars: {{log: ""}}
        supervision: {{strategy: one_for_one, max_restarts: 2, within: 1m}}
        tasks:
          - name: batch
            supervision: {{strategy: one_for_all, max_restarts: 3, within: 1m}}
            steps:
              - {_record("batch.extract")}
              - {_record("batch.load", fail_below=3, runner="process")}
          - name: escalating
            supervision: {{use: fail-fast}}
            steps:
              - {_record("escalating.connect")}
              - {_record("escalating.insert", fail_below=2)}
          - name: each
            steps:
              - {_record("each.call", fail_below=3, runner="process")}
              - {_record("each.after")}
        """)

    result, report = run_playbook(path, tmp_path / "nats", "--set", f"log={log}",
                                  env=environment(pythonpath=tmp_path))

    assert result.returncode == 0, result.stderr
    assert report["status"] == "succeeded"
    assert starts(report) == {"batch": 1, "escalating": 2, "each": 1}
    expected = {"batch.extract": 3, "batch.load": 3, "escalating.connect": 2,
                "escalating.insert": 2, "each.call": 3, "each.after": 1}
    assert attempts(report) == expected
    lines = [line.split() for line in log.read_text().splitlines()]
    executions = Counter((tag, int(attempt)) for tag, attempt, _pid in lines)
    assert [key for key, count in executions.items() if count > 1] == [], "ran twice"
    assert Counter(tag for tag, _attempt in executions) == expected
    for tag, count in expected.items():
        assert sorted(a for t, a in executions if t == tag) == list(range(1, count + 1))


# -- templates and needs ---------------------------------------------------------------------


def test_outputs_attempts_and_the_workflow_id_flow_through_templates_in_needs_order(
        tmp_path: Path) -> None:
    path = write_playbook(tmp_path, "templating", """
        vars: {who: world}
        tasks:
          - name: third
            needs: [second]
            steps:
              - name: report
                plugin: echo
                with:
                  msg: "{{ tasks.first.steps.use.output.text }}
                    {{ tasks.second.steps.join.output.count }}"
          - name: first
            steps:
              - {name: make, plugin: echo, with: {rows: [1, 2, 3], who: "{{ vars.who }}"}}
              - name: use
                plugin: echo
                with:
                  rows: "{{ steps.make.output.rows }}"
                  text: "{{ steps.make.output.who }}!"
                  id: "{{ workflow.id }}"
                  attempt: "{{ attempt }}"
          - name: second
            needs: first
            steps:
              - {name: flaky, plugin: fail, with: {until_attempt: 2}}
              - name: join
                plugin: echo
                with:
                  count: "{{ tasks.first.steps.use.output.rows | length }}"
                  name: "{{ workflow.name }}"
                  flaky: "{{ steps.flaky.output.attempt }}"
                  label: "{{ workflow.name }}/{{ workflow.id }}"
        """)

    result, report = run_playbook(path, tmp_path / "nats", "--set", "who=there")

    assert result.returncode == 0, result.stderr
    assert report["status"] == "succeeded"
    workflow_id = report["workflow_id"]
    assert re.fullmatch(r"wf-[0-9a-f]{12}", workflow_id)
    assert steps_of(report, "first")["use"]["output"] == {
        "rows": [1, 2, 3], "text": "there!", "id": workflow_id, "attempt": 1}
    assert steps_of(report, "second")["join"]["output"] == {
        "count": 3, "name": "templating", "flaky": 2, "label": f"templating/{workflow_id}"}
    assert steps_of(report, "third")["report"]["output"] == {"msg": "there! 3"}
    tasks = report["tasks"]
    assert tasks["first"]["finished_at"] <= tasks["second"]["started_at"]
    assert tasks["second"]["finished_at"] <= tasks["third"]["started_at"]


def test_an_output_key_named_like_a_dict_method_is_read_as_the_key(tmp_path: Path) -> None:
    path = write_playbook(tmp_path, "method-names", """
        tasks:
          - name: t
            steps:
              - {name: make, plugin: echo, with: {items: [1, 2], keys: k, values: v}}
              - name: use
                plugin: echo
                with:
                  items: "{{ steps.make.output.items }}"
                  text: "{{ steps.make.output.keys }}-{{ steps.make.output.values }}"
        """)

    result, report = run_playbook(path, tmp_path / "nats")

    use = steps_of(report, "t")["use"]
    assert report["status"] == "succeeded", report["error"]
    assert result.returncode == 0
    assert use["output"] == {"items": [1, 2], "text": "k-v"}


def test_a_rendered_input_that_is_not_json_is_a_template_error_not_a_crash_loop(
    tmp_path: Path,
) -> None:
    path = write_playbook(tmp_path, "not-json", """
        vars: {a: {b: 1}}
        tasks:
          - name: t
            supervision: {max_restarts: 0}
            steps:
              - {name: s, plugin: echo, with: {x: "{{ vars.a.keys }}"}}
        """)

    result, report = run_playbook(path, tmp_path / "nats")

    error = steps_of(report, "t")["s"]["error"]
    assert result.returncode == 1
    assert error["type"] == "template"
    assert "is not JSON" in error["message"]


# -- cancel ------------------------------------------------------------------------------------


def test_ctrl_c_cancels_the_run_kills_its_processes_and_exits_130(tmp_path: Path) -> None:
    path = write_playbook(tmp_path, "cancel", """
        vars: {dir: "."}
        tasks:
          - name: threads
            steps:
              - {name: wait, plugin: sleep, with: {seconds: 30}}
          - name: processes
            steps:
              - {name: wait, plugin: sleep, runner: process, with: {seconds: 30}}
          - name: commands
            steps:
              - {name: run, plugin: shell,
                 with: {command: "echo $$ > {{ vars.dir }}/shell.pid; exec sleep 30"}}
        """)
    pid_file = tmp_path / "shell.pid"
    stderr = tmp_path / "stderr"
    with stderr.open("w") as err, subprocess.Popen(
            cli_command("run", path, "--json", "--state-dir", tmp_path / "nats",
                        "--set", f"dir={tmp_path}"),
            cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err,
            text=True, start_new_session=True) as proc:
        try:
            wait_until(lambda: proc.poll() is not None or (
                pid_file.exists() and pid_file.read_text().strip()
                and len(plugin_children(proc.pid)) >= 2), 20, "the steps to run")
            assert proc.poll() is None, stderr.read_text()
            running = descendants(proc.pid)
            shell_pid = int(pid_file.read_text())
            assert shell_pid in running
            started = time.monotonic()
            proc.send_signal(signal.SIGINT)
            stdout, _ = proc.communicate(timeout=20)
            took = time.monotonic() - started
        except BaseException:
            kill_tree(proc.pid)
            raise

    assert proc.returncode == 130, stderr.read_text()
    assert took < 10
    lines = stdout.splitlines()
    assert len(lines) == 1, stdout
    report = json.loads(lines[0])
    assert report["status"] == "cancelled"
    assert report["error"] is not None
    for task in ("threads", "processes", "commands"):
        assert report["tasks"][task]["status"] == "cancelled", report["tasks"][task]
        for step in report["tasks"][task]["steps"].values():
            assert step["status"] == "cancelled", step
    left = wait_gone(running, GONE_WAIT)
    assert not left, f"still running after the cancel: {[cmdline(p) for p in left]}"



def test_ctrl_c_cancels_a_run_started_with_sigint_ignored(tmp_path: Path) -> None:
    """A shell starts `noetl run ... &` with SIGINT ignored; a Ctrl-C sent to it still cancels."""
    import sys

    path = write_playbook(tmp_path, "ignored", """
        vars: {dir: "."}
        tasks:
          - name: commands
            steps:
              - {name: run, plugin: shell,
                 with: {command: "echo $$ > {{ vars.dir }}/shell.pid; exec sleep 30"}}
        """)
    pid_file = tmp_path / "shell.pid"
    ignoring = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
                "os.execv(sys.executable, sys.argv[1:])")
    command = cli_command("run", path, "--json", "--state-dir", tmp_path / "nats",
                          "--set", f"dir={tmp_path}")
    with subprocess.Popen([sys.executable, "-c", ignoring, *command], cwd=tmp_path,
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, start_new_session=True) as proc:
        try:
            wait_until(lambda: proc.poll() is not None
                       or (pid_file.exists() and pid_file.read_text().strip()), 20,
                       "the shell step to run")
            assert proc.poll() is None
            proc.send_signal(signal.SIGINT)
            stdout, stderr = proc.communicate(timeout=60)
        except BaseException:
            kill_tree(proc.pid)
            raise
    assert proc.returncode == 130, stderr
    assert json.loads(stdout)["status"] == "cancelled"


# -- noetl events ------------------------------------------------------------------------------


def test_noetl_events_prints_a_workflows_history_in_order(tmp_path: Path) -> None:
    path = write_playbook(tmp_path, "history", """
        tasks:
          - name: t
            steps:
              - {name: say, plugin: echo, with: {msg: hi}}
              - {name: crashy, plugin: fail, runner: process, with: {mode: exit, until_attempt: 2}}
        """)
    state = tmp_path / "nats"
    result, report = run_playbook(path, state)
    assert result.returncode == 0, result.stderr
    workflow_id = report["workflow_id"]

    as_json = noetl("events", workflow_id, "--state-dir", state, "--json", cwd=tmp_path)
    as_text = noetl("events", workflow_id, "--state-dir", state, cwd=tmp_path)

    assert as_json.returncode == 0, as_json.stderr
    entries = [json.loads(line) for line in as_json.stdout.splitlines()]
    events = [(e["step_id"], e["attempt"], e["status"]) for e in entries
              if e.get("type") == "event"]
    assert all(e["workflow_id"] == workflow_id for e in entries if e.get("type") == "event")
    for step_id, attempt, final in [("t=say", 1, "succeeded"), ("t=crashy", 1, "failed"),
                                    ("t=crashy", 2, "succeeded")]:
        # A short attempt sends its final event only; a longer one `accepted` and
        # `started` first: whatever there is, in that order, the final one last.
        said = [status for s, a, status in events
                if (s, a) == (step_id, attempt) and status != "heartbeat"]  # a slow box's
        assert said and said[-1] == final, (step_id, attempt, events)
        assert said == [s for s in ("accepted", "started", final) if s in said], said
    assert events.index(("t=say", 1, "succeeded")) < min(
        i for i, e in enumerate(events) if e[0] == "t=crashy")
    assert events.index(("t=crashy", 1, "failed")) < min(
        i for i, e in enumerate(events) if e[:2] == ("t=crashy", 2))
    failed = next(e for e in entries if e.get("type") == "event"
                  and e["step_id"] == "t=crashy" and e["status"] == "failed")
    assert failed["error_type"] == "crash" and "137" in failed["error_message"]

    root = f"/node/workflows/{workflow_id}"
    lifecycle = [(e["path"], e["kind"]) for e in entries if "path" in e]
    for expected in [(root, "started"), (f"{root}/t", "started"),
                     (f"{root}/t/crashy", "exited"), (f"{root}/t/crashy", "restarted"),
                     (f"{root}/t", "exited"), (root, "exited")]:
        assert expected in lifecycle, (expected, lifecycle)
    assert lifecycle[-1] == (root, "exited")
    # A step's start and normal exit are not published (its events tell them);
    # its crash and restart are.
    steps = [(e["path"], e["kind"], (e["reason"] or {}).get("kind")) for e in entries
             if e.get("path", "").startswith(f"{root}/t/")]
    assert steps == [(f"{root}/t/crashy", "exited", "crash"),
                     (f"{root}/t/crashy", "restarted", None)], steps
    crash = next(i for i, e in enumerate(entries) if e.get("path") == f"{root}/t/crashy")
    failed_at = next(i for i, e in enumerate(entries) if e.get("type") == "event"
                     and e["step_id"] == "t=crashy" and e["status"] == "failed")
    assert failed_at < crash, entries

    assert as_text.returncode == 0, as_text.stderr
    text = as_text.stdout.splitlines()
    assert len(text) == len(entries)
    assert any(re.search(r"t=crashy\s+attempt 1\s+failed crash: .*137", line) for line in text)
    assert any(re.search(r"t=crashy\s+attempt 2\s+succeeded", line) for line in text)
    assert any(line.split()[1:3] == [root, "exited"] for line in text), text


def test_noetl_events_of_an_unknown_workflow_says_so_and_exits_1(tmp_path: Path) -> None:
    result = noetl("events", "wf-000000000000", "--state-dir", tmp_path / "nats", cwd=tmp_path)

    assert result.returncode == 1
    assert "no events for workflow wf-000000000000" in result.stderr
    assert result.stdout == ""


# -- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize("body", [
    "taks: []\n",
    "tasks:\n  - name: a\n    supervision: {strategy: one_for_some}\n"
    "    steps: [{name: s, plugin: echo}]\n",
    "tasks:\n  - name: a\n    needs: [nowhere]\n    steps: [{name: s, plugin: echo}]\n",
    "tasks:\n  - name: a\n    steps:\n"
    "      - {name: s, plugin: echo, with: {x: \"{{ steps.s.output }}\"}}\n",
], ids=["unknown key", "unknown strategy", "unknown need", "template of a later step"])
def test_noetl_run_on_an_invalid_playbook_exits_2_with_file_line_col_and_prints_nothing(
        tmp_path: Path, body: str) -> None:
    path = write_playbook(tmp_path, "invalid", body)

    result = noetl("run", path, "--json", "--state-dir", tmp_path / "nats", cwd=tmp_path)

    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert re.search(rf"^{re.escape(str(path))}:\d+:\d+: ", result.stderr, re.MULTILINE), (
        result.stderr)
    assert not (tmp_path / "nats").exists(), "a server was started for an invalid playbook"


def test_a_nats_server_that_does_not_answer_fails_the_run_with_a_clear_error(
    tmp_path: Path,
) -> None:
    import socket

    with socket.socket() as probe:  # a loopback port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = noetl("run", EXAMPLES / "hello.yaml", "--nats", f"nats://127.0.0.1:{port}",
                   cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout == ""
    assert f"could not connect to nats://127.0.0.1:{port}" in result.stderr
    assert result.stderr.count("\n") <= 2, "one clear line, not a line per reconnect"


def test_a_command_no_worker_takes_still_times_out_though_it_is_sent_again(
    nats_server: EmbeddedNatsServer, tmp_path: Path,
) -> None:
    """Sending a command again (no worker answered) must not restart its timeout."""
    path = write_playbook(tmp_path, "nobody", """
        tasks:
          - name: t
            supervision: {max_restarts: 0}
            steps:
              - {name: s, plugin: sleep, with: {seconds: 0.1}, timeout: 1500ms}
        """)
    node = Node(options=ConnectOptions(servers=(nats_server.url,)), workers=[],
                heartbeat=0.2)
    try:
        node.start()
        run = node.run(load_playbook(path))
        reason = run.wait(10)
        assert reason is not None, "the step waited for a worker forever"
        assert reason.root().error_type == "timeout"
    finally:
        node.stop()


def test_a_command_no_worker_takes_waits_its_nodes_worker_wait_then_says_none_runs(
    nats_server: EmbeddedNatsServer, tmp_path: Path,
) -> None:
    """No timeout, no worker: the step waits for one as long as its node's `worker_wait`
    allows, not for ever, and then says that no worker of its plugin was running."""
    import attrs

    from noetl_actors.services import load_node_config

    path = write_playbook(tmp_path, "unanswered", """
        tasks:
          - name: t
            supervision: {max_restarts: 0}
            steps:
              - {name: s, plugin: sleep, with: {seconds: 0.1}}
        """)
    config = attrs.evolve(load_node_config(), worker_wait=1.5)
    node = Node(options=ConnectOptions(servers=(nats_server.url,)), workers=[],
                heartbeat=0.2, config=config)
    try:
        node.start()
        run = node.run(load_playbook(path))
        reason = run.wait(15)
        assert reason is not None, "the step waited for a worker forever"
        message = reason.root().message
        assert "no worker took the command of step 's'" in message, message
        assert "no worker of plugin 'sleep' is running" in message, message
    finally:
        node.stop()


def test_noetl_run_takes_nats_credentials_and_refused_ones_fail_at_once(tmp_path: Path) -> None:
    server = EmbeddedNatsServer(state_dir=tmp_path / "nats", user="etl", password="s3cret")
    server.start()
    try:
        # no secret on a command line, the server's included (`ps` shows them to anyone)
        assert server.pid is not None
        assert b"s3cret" not in Path(f"/proc/{server.pid}/cmdline").read_bytes()
        wrong = tmp_path / "wrong-password"
        wrong.write_text("wrong\n")
        refused = noetl("run", EXAMPLES / "hello.yaml", "--nats", server.url,
                        "--user", "etl", "--password-file", wrong, cwd=tmp_path)
        assert refused.returncode == 1
        assert "authorization violation: the server refused our credentials" in refused.stderr
        assert "Traceback" not in refused.stderr
        right = tmp_path / "password"
        right.write_text("s3cret\n")
        accepted = noetl("run", EXAMPLES / "hello.yaml", "--json", "--nats", server.url,
                         "--user", "etl", "--password-file", right, cwd=tmp_path)
        assert accepted.returncode == 0, accepted.stderr
        assert accepted.document()["status"] == "succeeded"
        env = {**environment(), "NATS_URL": server.url, "NATS_USER": "etl",
               "NATS_PASSWORD": "s3cret"}
        from_env = noetl("run", EXAMPLES / "hello.yaml", "--json", cwd=tmp_path, env=env)
        assert from_env.returncode == 0, from_env.stderr
    finally:
        server.stop()


def test_a_finished_workflow_is_freed_at_once_not_by_a_full_garbage_collection(
        nats_server: EmbeddedNatsServer) -> None:
    """A node runs workflow after workflow: a finished tree left in reference cycles
    would wait for a full GC pass, a long pause on a big heap, to give its memory back."""
    import gc

    node = Node(options=ConnectOptions(servers=(nats_server.url,)), workers=["echo", "fail"])
    book = load_playbook(EXAMPLES / "all-for-one.yaml")
    node.start()
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        for _ in range(2):
            run = node.run(book)
            reason = run.wait(30)
            assert reason is not None and reason.kind is ExitKind.NORMAL, reason
        gc.collect()
        ours = Counter(type(o).__qualname__ for o in gc.garbage
                       if type(o).__module__.startswith("noetl_actors"))
        assert not ours, f"left in reference cycles: {dict(ours)}"
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
        node.stop()


def test_a_workflow_runs_on_through_a_restart_of_the_nodes_bridge(
        nats_server: EmbeddedNatsServer, tmp_path: Path) -> None:
    """The workflow runs on the bridge's loop, which outlives the bridge's connection."""
    path = write_playbook(tmp_path, "through", """
        tasks:
          - name: main
            steps:
              - {name: nap, plugin: sleep, with: {seconds: 1}}
              - {name: after, plugin: echo, with: {slept: "{{ steps.nap.output.slept }}"}}
        """)
    recorder = Recorder()
    node = Node(options=ConnectOptions(servers=(nats_server.url,)), workers=["echo", "sleep"],
                observers=[recorder])
    node.start()
    try:
        run = node.run(load_playbook(path))
        wait_until(lambda: run.report.to_json()["tasks"]["main"]["steps"]["nap"]["status"]
                   == "running", 10, "the nap to run")
        node.root.crash_child("bridge", "the test crashed the bridge")
        recorder.wait_for(EventKind.RESTARTED, "/node/bridge")

        reason = run.wait(30)

        assert reason is not None and reason.kind is ExitKind.NORMAL, reason
        document = run.report.to_json()
        assert attempts(document) == {"main.nap": 1, "main.after": 1}
        assert steps_of(document, "main")["after"]["output"] == {"slept": 1}
    finally:
        node.stop()


def test_a_workflow_stopped_with_its_nodes_workflows_is_recorded_cancelled_at_once(
        tmp_path: Path) -> None:
    """However `workflows` goes (a node's stop, a restart of its parts, a give-up), the
    records of the workflows it stops are written before it is gone, and say cancelled."""
    path = write_playbook(tmp_path, "long", """
        tasks:
          - name: main
            steps:
              - {name: nap, plugin: sleep, with: {seconds: 30}}
        """)
    node = Node(name="rec", serve=True, state_dir=tmp_path / "state", workers=["sleep"])
    node.start()
    try:
        run = node.run(load_playbook(path))
        wait_until(lambda: run.report.to_json()["tasks"]["main"]["steps"]["nap"]["status"]
                   == "running", 10, "the nap to run")

        node.root.terminate_child("workflows")

        assert node.records is not None
        entry = node.records.get(run.workflow_id)
        assert entry is not None and entry.data["status"] == "cancelled", entry
        assert entry.data["tasks"]["main"]["steps"]["nap"]["status"] == "cancelled"
        assert run.report.to_json()["status"] == "cancelled"
    finally:
        node.stop()


def test_a_node_keeps_every_timer_on_one_clock_thread(
        nats_server: EmbeddedNatsServer, tmp_path: Path) -> None:
    """The tree's timers and the inproc runner's timeouts share the node's one clock."""
    import threading

    path = write_playbook(tmp_path, "timed", """
        tasks:
          - name: main
            steps:
              - {name: nap, plugin: sleep, runner: inproc, timeout: 30s, with: {seconds: 1}}
        """)
    node = Node(options=ConnectOptions(servers=(nats_server.url,)), workers=["sleep"])
    node.start()
    try:
        run = node.run(load_playbook(path))
        wait_until(lambda: any(t.name.startswith("noetl-inproc") for t in threading.enumerate()),
                   10, "the nap to run on the inproc runner's pool")
        clocks = [t.name for t in threading.enumerate() if t.name == "noetl-clock"]
        assert clocks == ["noetl-clock"]
        reason = run.wait(30)
        assert reason is not None and reason.kind is ExitKind.NORMAL, reason
    finally:
        node.stop()
