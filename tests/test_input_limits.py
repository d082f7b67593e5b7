"""Hostile input refused in one clear line: payloads nested too deep, playbooks too big,
too deep or with too many tasks, refusals written to the log at a bounded rate, and a
node's limits: workflows at once (`busy`) and the size of a step's output."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from noetl_actors._refusals import RefusalLog
from noetl_actors.bridge import decode
from noetl_actors.errors import MalformedMessage, PlaybookError
from noetl_actors.playbook import parse_playbook
from tests.node_helpers import NODE_CONFIG, Cli, running_node
from tests.run_helpers import run_playbook, steps_of, wait_until, write_playbook

HEADER = "apiVersion: noetl.io/v1\nkind: Playbook\nname: p\n"


def problems_of(text: str) -> list[str]:
    with pytest.raises(PlaybookError) as refused:
        parse_playbook(text, "p.yaml")
    return [str(problem) for problem in refused.value.problems]


@pytest.mark.parametrize("depth", [1_100, 100_000])
def test_a_payload_nested_too_deep_is_malformed_not_a_recursion_error(depth: int) -> None:
    payload = b'{"schema_version":1,"x":' + b"[" * depth + b"]" * depth + b"}"
    with pytest.raises(MalformedMessage, match="nested deeper than 1024 levels"):
        decode(payload)


def test_a_payload_nested_within_the_bound_is_read() -> None:
    payload = b'{"schema_version":1,"x":' + b"[" * 500 + b"]" * 500 + b"}"
    assert decode(payload)["schema_version"] == 1


@pytest.mark.parametrize("nested", [
    "a: " + "[" * 5_000 + "]" * 5_000,
    "a: " + "{b: " * 5_000 + "1" + "}" * 5_000,
    "a:\n" + "".join(" " * i + "- \n" for i in range(0, 400, 2)),
])
def test_a_playbook_nested_too_deep_is_one_problem(nested: str) -> None:
    problems = problems_of(HEADER + "tasks: []\nvars:\n  " + nested.replace("\n", "\n  "))
    assert len(problems) == 1, problems
    assert "nested deeper than 64 levels (playbook limits)" in problems[0]


def test_an_alias_that_expands_a_billion_times_is_one_problem_found_at_once() -> None:
    laughs = "\n".join(
        [f"  l0: &l0 [{', '.join(['x'] * 9)}]"]
        + [f"  l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 12)])
    problems = problems_of(HEADER + "vars:\n" + laughs + "\ntasks: []\n")
    assert len(problems) == 1, problems
    assert "its aliases expand to more than 1,000,000 values (playbook limits)" in problems[0]


def test_a_playbook_past_the_size_limit_is_refused_before_it_is_parsed() -> None:
    text = HEADER + "description: " + "x" * 1_100_000 + "\ntasks: []\n"
    problems = problems_of(text)
    assert problems == [f"p.yaml:1:1: the playbook is {len(text):,} bytes, past the limit of "
                        "1,000,000 (playbook limits)"]


def test_a_playbook_with_too_many_tasks_is_refused() -> None:
    tasks = "".join(f"  - {{name: t{i}, steps: [{{name: s, plugin: echo}}]}}\n"
                    for i in range(10_001))
    problems = problems_of(HEADER + "tasks:\n" + tasks)
    assert any("10,001 tasks, past the limit of 10,000" in p for p in problems), problems


def test_refusals_are_written_once_each_but_at_a_bounded_rate(
        caplog: pytest.LogCaptureFixture) -> None:
    log = RefusalLog(logging.getLogger("test.refusals"), interval=0.3, burst=3)
    with caplog.at_level(logging.WARNING, "test.refusals"):
        written = [log.refused("bad", "refused %d", n) for n in range(1_000)]
        assert written[:3] == [True] * 3 and not any(written[3:])
        assert log.refused("other", "another kind") is True
        time.sleep(0.35)
        assert log.refused("bad", "refused %d", 1_000) is True
    lines = [record.getMessage() for record in caplog.records]
    assert lines == ["refused 0", "refused 1", "refused 2", "another kind",
                     "refused 1000 (and 997 more like it in the 0.3 s before)"]


# -- a node's own limits --------------------------------------------------------------------


def test_a_node_at_its_max_workflows_answers_busy_and_takes_more_once_one_ended(
        tmp_path: Path) -> None:
    path = write_playbook(tmp_path, "napping", """
        tasks:
          - name: t
            steps:
              - {name: nap, plugin: sleep, with: {seconds: 600}}
        """)
    with running_node(tmp_path, "a", config=NODE_CONFIG + "max_workflows: 1\n") as node:
        cli = Cli(node.url)
        first = cli.submit(path)
        refused = cli("submit", path)
        assert refused.returncode != 0
        assert "node a runs 1 workflows, its limit (max_workflows: 1); try again later" in (
            refused.stderr), refused.stderr
        assert refused.stderr.count("\n") <= 2, refused.stderr
        cli.ok("cancel", first)
        cli.wait_status(first, "cancelled", timeout=60)
        wait_until(lambda: cli("submit", path).returncode == 0, 30,
                   "a submit to be taken once the first workflow ended", 0.5)


def test_a_step_whose_output_is_past_max_output_fails_with_an_output_error(
        tmp_path: Path) -> None:
    path = write_playbook(tmp_path, "big", """
        tasks:
          - name: t
            supervision: {max_restarts: 0}
            steps:
              - {name: big, plugin: python, with: {function: "operator:mul", args: ["x", 5000000]}}
        """)
    result, report = run_playbook(path, tmp_path / "nats")
    assert result.returncode == 1, result.stderr
    error = steps_of(report, "t")["big"]["error"]
    assert error["type"] == "output", error
    assert error["message"] == ("the output of step 'big' is 5,000,032 bytes of JSON, past the "
                                "node's max_output of 4,194,304")
