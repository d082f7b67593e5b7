"""`noetl logs`: a step's output lines, from a real node, for the inproc and process runners.

Real `noetl node start`, `noetl submit` and `noetl logs` processes on the
node's embedded nats-server. The lines live in the NOETL_LOGS stream, so
`noetl logs` reads them with nothing but the NATS address. The publisher's
chunking and bounds are checked on their own, with a manual clock.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from noetl_actors.runners import Attempt
from noetl_actors.services import LogPublisher
from noetl_actors.supervision import ManualClock
from tests.node_helpers import Cli, clean_env, running_node, spawn
from tests.run_helpers import cli_command, wait_until, write_playbook

pytestmark = pytest.mark.timeout(180)


# -- the publisher, alone -----------------------------------------------------------------


def attempt(number: int = 1) -> Attempt:
    return Attempt(workflow_id="wf-1", task="t", step="s", number=number, plugin="echo")


def publisher(**limits: int) -> tuple[LogPublisher, ManualClock, list[tuple[str, Any]]]:
    sent: list[tuple[str, Any]] = []
    clock = ManualClock()

    def publish(subject: str, data: Mapping[str, Any]) -> None:
        sent.append((subject, dict(data)))

    return LogPublisher(publish, clock, **limits), clock, sent


def test_lines_are_published_in_chunks_after_a_short_wait_and_at_the_attempts_end() -> None:
    lines, clock, sent = publisher()
    lines.write(attempt(), "one\ntw")
    lines.write(attempt(), "o\r\nthree")
    assert sent == [], "nothing before the flush delay"
    clock.advance(1.0)
    assert sent == [("noetl.log.wf-1.t=s.1", {
        "task": "t", "step": "s", "attempt": 1, "seq": 0, "lines": ["one", "two"],
        "end": False, "dropped": 0})]
    lines.end(attempt())
    assert sent[1][1]["lines"] == ["three"] and sent[1][1]["end"] is True
    assert sent[1][1]["seq"] == 1
    lines.write(attempt(), "late\n")
    lines.end(attempt())
    clock.advance(1.0)
    assert len(sent) == 2, "a write after the attempt's end is not a new log"


def test_an_attempt_that_prints_nothing_publishes_nothing() -> None:
    lines, clock, sent = publisher()
    lines.end(attempt(2))
    clock.advance(1.0)
    assert sent == []


def test_a_long_line_is_cut_and_an_attempt_keeps_a_bounded_amount() -> None:
    lines, _clock, sent = publisher(line_limit=10, attempt_limit=80, chunk_bytes=1 << 20)
    lines.write(attempt(), "x" * 25 + "\n")
    for index in range(10):
        lines.write(attempt(), f"line {index}\n")
    lines.end(attempt())
    [(_subject, chunk)] = sent
    assert chunk["lines"][0] == "x" * 10 + " [noetl: line cut at 10 characters, 25 in all]"
    assert chunk["lines"][1:] == ["line 0", "line 1", "line 2"], "58 + 3 * 7 bytes of 80"
    assert chunk["dropped"] == 7 and chunk["end"] is True


def test_a_full_chunk_is_published_at_once() -> None:
    lines, _clock, sent = publisher(chunk_bytes=10)
    lines.write(attempt(), "0123456789\n")
    assert [chunk["lines"] for _, chunk in sent] == [["0123456789"]]


def test_inproc_capture_takes_the_attempts_writes_and_leaves_other_threads_alone(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import io
    import threading

    import click

    from noetl_actors.runners._output import capture

    stream = io.StringIO()
    monkeypatch.setattr("sys.stdout", stream)
    lines, _clock, sent = publisher()
    with capture(lines, attempt()):
        print("from the attempt")
        click.echo("and through click")  # click probes a stream with b"": still text
        other = threading.Thread(target=print, args=("from another thread",))
        other.start()
        other.join()
    click.echo("after it")
    lines.end(attempt())
    assert [chunk["lines"] for _, chunk in sent] == [["from the attempt", "and through click"]]
    assert stream.getvalue() == "from another thread\nafter it\n"


# -- noetl logs, against a real node -----------------------------------------------------


PRINTS = """
    tasks:
      - name: t
        steps:
          - {name: inproc, plugin: python,
             with: {function: "builtins:print", args: ["from a thread of the node"]}}
          - {name: child, plugin: python, runner: process,
             with: {function: "builtins:print", args: ["from a child process"]}}
          - {name: sh, plugin: shell, with: {command: "echo one; echo two >&2; echo three"}}
          - {name: quiet, plugin: echo, with: {x: 1}}
    """

RETRIED = """
    tasks:
      - name: t
        supervision: {max_restarts: 2, within: 1m}
        steps:
          - name: s
            plugin: shell
            with:
              command: >-
                n=$(cat {count} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {count};
                echo "try $n"; [ $n -ge 2 ]
    """

GATED = """
    tasks:
      - name: t
        steps:
          - name: s
            plugin: shell
            with:
              command: >-
                echo first; while [ ! -e {gate} ]; do sleep 0.05; done; echo second
    """


def test_noetl_logs_prints_each_steps_lines_for_the_inproc_and_process_runners(
        tmp_path: Path) -> None:
    with running_node(tmp_path, "a") as node:
        cli = Cli(node.url)
        workflow_id = cli.submit(write_playbook(tmp_path, "prints", PRINTS))
        record = cli.wait_status(workflow_id, {"succeeded", "failed"}, timeout=60)
        assert record["status"] == "succeeded", record.get("error")

        everything = cli.ok("logs", workflow_id).stdout.splitlines()
        assert everything[:2] == ["t.inproc | from a thread of the node",
                                  "t.child | from a child process"], everything
        # stdout's lines in order; stderr's ("two") are a pipe of their own
        assert [line for line in everything[2:] if line != "t.sh | two"] == [
            "t.sh | one", "t.sh | three"], everything
        assert len(everything) == 5 and "t.sh | two" in everything, everything
        step = cli.ok("logs", workflow_id, "t.sh").stdout.splitlines()
        assert sorted(step) == ["one", "three", "two"], step
        assert "from a thread of the node" not in node.stderr(), "captured, not on the node's"

        quiet = cli.ok("logs", workflow_id, "t.quiet")
        assert quiet.stdout == ""
        assert f"t.quiet of {workflow_id}: attempt 1 printed nothing" in quiet.stderr


def test_bad_arguments_get_one_line_that_says_what_and_where(tmp_path: Path) -> None:
    with running_node(tmp_path, "a") as node:
        cli = Cli(node.url)
        workflow_id = cli.submit(write_playbook(tmp_path, "prints", PRINTS))
        cli.wait_status(workflow_id, {"succeeded", "failed"}, timeout=60)

        unknown = cli("logs", "wf-nosuch")
        assert unknown.returncode == 1 and len(unknown.stderr.splitlines()) == 1, unknown
        assert "wf-nosuch" in unknown.stderr

        step = cli("logs", workflow_id, "t.nosuch")
        assert step.returncode == 2, step
        assert step.stderr.splitlines() == [
            f"noetl: workflow {workflow_id} has no step 't.nosuch' (its steps: t.inproc, "
            f"t.child, t.sh, t.quiet)"]

        malformed = cli("logs", workflow_id, "t-sh")
        assert malformed.returncode == 2
        assert malformed.stderr.splitlines() == [
            "noetl logs: 't-sh' is not TASK.STEP (a task and one of its steps joined by a "
            "dot, such as extract.read)"]

        alone = cli("logs", workflow_id, "--attempt", "2")
        assert alone.returncode == 2 and "--attempt needs TASK.STEP" in alone.stderr


def test_the_latest_attempt_by_default_and_another_with_attempt(tmp_path: Path) -> None:
    body = RETRIED.replace("{count}", str(tmp_path / "count"))
    with running_node(tmp_path, "a") as node:
        cli = Cli(node.url)
        workflow_id = cli.submit(write_playbook(tmp_path, "retried", body))
        record = cli.wait_status(workflow_id, {"succeeded", "failed"}, timeout=60)
        assert record["status"] == "succeeded", record.get("error")
        assert record["tasks"]["t"]["steps"]["s"]["attempts"] == 2

        assert cli.ok("logs", workflow_id, "t.s").stdout == "try 2\n"
        assert cli.ok("logs", workflow_id, "t.s", "--attempt", "1").stdout == "try 1\n"
        assert cli.ok("logs", workflow_id).stdout == "t.s | try 2\n"


def test_follow_prints_lines_while_the_step_runs_and_ends_with_the_workflow(
        tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    with running_node(tmp_path, "a") as node:
        cli = Cli(node.url)
        workflow_id = cli.submit(write_playbook(
            tmp_path, "gated", GATED.replace("{gate}", str(gate))))
        follower = spawn(cli_command("logs", workflow_id, "t.s", "--follow", "--nats", node.url),
                         tmp_path, "follower")
        try:
            wait_until(lambda: "first" in follower.stdout(), 60, "the first line, followed")
            assert "second" not in follower.stdout()
            assert cli.status(workflow_id)["status"] == "running", "seen while it runs"
            gate.touch()
            code = follower.proc.wait(60)
            assert code == 0, follower.stderr()
            assert follower.stdout() == "first\nsecond\n"
        finally:
            follower.cleanup()
        assert cli.status(workflow_id)["status"] == "succeeded"


def test_noetl_logs_needs_a_nats_that_answers(tmp_path: Path) -> None:
    result = subprocess.run(cli_command("logs", "wf-1", "--nats", "nats://127.0.0.1:1"),
                            env=clean_env(), capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 1
    assert re.fullmatch(r"noetl: could not connect to .*\n", result.stderr), result.stderr


RESTARTED = """
    tasks:
      - name: t
        supervision: {max_restarts: 2, within: 1m}
        steps:
          - name: s
            plugin: shell
            with:
              command: >-
                n=$(cat {count} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {count};
                echo "try $n"; if [ $n -lt 2 ]; then
                while [ ! -e {gate} ]; do sleep 0.05; done; exit 1; fi
    """


def test_follow_goes_on_with_the_attempt_a_restart_begins(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    body = RESTARTED.replace("{count}", str(tmp_path / "count")).replace("{gate}", str(gate))
    with running_node(tmp_path, "a") as node:
        cli = Cli(node.url)
        workflow_id = cli.submit(write_playbook(tmp_path, "restarted", body))
        follower = spawn(cli_command("logs", workflow_id, "t.s", "-f", "--nats", node.url),
                         tmp_path, "follower")
        try:
            wait_until(lambda: "try 1" in follower.stdout(), 60, "attempt 1's line, followed")
            gate.touch()
            assert follower.proc.wait(60) == 0, follower.stderr()
            assert follower.stdout() == "try 1\ntry 2\n"
            assert "noetl logs: t.s attempt 2:" in follower.stderr()
        finally:
            follower.cleanup()
        record = cli.status(workflow_id)
        assert record["status"] == "succeeded"
        assert record["tasks"]["t"]["steps"]["s"]["attempts"] == 2
