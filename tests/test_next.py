"""`next:` routes between tasks (docs/playbooks.md, "Branching"), on real runs."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml

from noetl_actors.errors import PlaybookError
from noetl_actors.playbook import Route, parse_playbook
from tests.run_helpers import run_playbook, steps_of, write_playbook

SWITCH = """
vars: {code: 0}
tasks:
  - name: say
    steps:
      - {name: speak, plugin: shell, with: {command: "echo hello; exit {{ vars.code }}"},
         on_error: {ShellError: continue}}
    next:
      - {task: after-say, when: "tasks.say.steps.speak.output.error is not defined"}
      - {task: on-error, when: "tasks.say.steps.speak.output.error is defined"}
  - name: after-say
    steps:
      - {name: go, plugin: echo, with: {msg: "{{ tasks.say.steps.speak.output.stdout }}"}}
    next: [end]
  - name: on-error
    steps:
      - {name: go, plugin: echo, with: {msg: "{{ tasks.say.steps.speak.output.error.type }}"}}
    next: [end]
  - name: end
    steps:
      - {name: go, plugin: echo, with: {msg: done}}
  - name: only-after-error
    needs: [{task: on-error, succeeded: true}]
    steps:
      - {name: go, plugin: echo, with: {msg: error}}
"""


def statuses(document: dict[str, object]) -> dict[str, str]:
    tasks = document["tasks"]
    assert isinstance(tasks, dict)
    return {name: task["status"] for name, task in tasks.items()}


def test_a_route_taken_on_a_steps_exit_code_runs_its_task_and_the_other_is_not_reached(
        tmp_path: Path) -> None:
    path = write_playbook(tmp_path, "switch", SWITCH)
    result, document = run_playbook(path, tmp_path / "state")
    assert result.returncode == 0, result.stderr
    assert statuses(document) == {"say": "succeeded", "after-say": "succeeded",
                                  "on-error": "skipped", "end": "succeeded",
                                  "only-after-error": "skipped"}
    assert document["tasks"]["on-error"]["skipped"] == (
        "not reached: no route to it was taken (from say)")
    assert steps_of(document, "after-say")["go"]["output"] == {"msg": "hello\n"}
    assert steps_of(document, "end")["go"]["attempts"] == 1, "reached by one route, run once"


def test_the_other_route_is_taken_when_the_step_fails(tmp_path: Path) -> None:
    path = write_playbook(tmp_path, "switch", SWITCH)
    result, document = run_playbook(path, tmp_path / "state", "--set", "code=4")
    assert result.returncode == 0, result.stderr
    assert statuses(document) == {"say": "succeeded", "after-say": "skipped",
                                  "on-error": "succeeded", "end": "succeeded",
                                  "only-after-error": "succeeded"}
    assert steps_of(document, "on-error")["go"]["output"] == {"msg": "ShellError"}


def test_a_task_reached_by_two_routes_runs_once_after_both_routers(tmp_path: Path) -> None:
    path = write_playbook(tmp_path, "join", """
        tasks:
          - name: a
            steps: [{name: s, plugin: sleep, with: {seconds: 0.3}}]
            next: [c]
          - name: b
            steps: [{name: s, plugin: echo, with: {msg: b}}]
            next: [c]
          - name: c
            steps: [{name: s, plugin: echo, with: {msg: "{{ tasks.a.steps.s.output }}"}}]
        """)
    result, document = run_playbook(path, tmp_path / "state")
    assert result.returncode == 0, result.stderr
    tasks = document["tasks"]
    assert tasks["c"]["starts"] == 1
    assert tasks["c"]["started_at"] >= max(tasks["a"]["finished_at"], tasks["b"]["finished_at"])


def test_a_route_whose_condition_does_not_render_fails_the_workflow_and_says_which(
        tmp_path: Path) -> None:
    path = write_playbook(tmp_path, "broken", """
        tasks:
          - name: a
            steps: [{name: s, plugin: echo, with: {msg: 1}}]
            next: [{task: b, when: "tasks.a.steps.s.output.nope"}]
          - name: b
            steps: [{name: s, plugin: echo, with: {msg: 1}}]
        """)
    result, document = run_playbook(path, tmp_path / "state")
    assert result.returncode == 1
    assert document["status"] == "failed"
    assert "the route from task 'a' to 'b'" in document["error"]["reason"]
    assert "has no attribute 'nope'" in document["error"]["reason"]


HEADER = "apiVersion: noetl.io/v1\nkind: Playbook\nname: pb\n"


def test_routes_are_checked_where_they_are_written() -> None:
    with pytest.raises(PlaybookError) as caught:
        parse_playbook(HEADER + textwrap.dedent("""\
            tasks:
              - name: a
                steps: [{name: s, plugin: echo, with: {msg: 1}}]
                next: [b, zz, a, {task: c, when: "steps.s.output"}]
              - name: b
                steps: [{name: s, plugin: echo, with: {msg: 1}}]
                next: [c]
              - name: c
                needs: [a]
                steps: [{name: s, plugin: echo, with: {msg: 1}}]
                next: [{task: a, wen: 1}, {task: b}]
              - name: d
                steps: [{name: s, plugin: echo, with: {msg: 1}}]
                next: {task: b}
            """), "pb.yaml")
    assert [str(problem) for problem in caught.value.problems] == [
        "pb.yaml:7:15: task 'a' routes to 'zz' (next), which is not a task here",
        "pb.yaml:7:19: task 'a' routes to itself (next)",
        "pb.yaml:7:38: steps: a route's when and with read vars, workflow, tasks.a (the task it "
        "leaves) and the tasks that ran before it",
        "pb.yaml:14:19: needs and next form a cycle: a -> c -> a",
        "pb.yaml:14:22: unknown key 'wen' in a next entry (did you mean 'when'?); "
        "allowed: task, when, with",
        "pb.yaml:17:11: next must be a task name or a list (got a mapping)",
    ]


def test_routes_round_trip_through_the_native_form() -> None:
    playbook = parse_playbook(HEADER + textwrap.dedent(SWITCH), "pb.yaml")
    assert playbook.task("after-say").next == (Route("end"),)
    assert playbook.routers() == {"after-say": ("say",), "on-error": ("say",),
                                  "end": ("after-say", "on-error")}
    again = parse_playbook(yaml.safe_dump(playbook.to_dict(), sort_keys=False), "again.yaml")
    assert again == playbook


def test_the_schema_knows_next() -> None:
    from noetl_actors.playbook import playbook_schema

    routes = playbook_schema()["$defs"]["task"]["properties"]["next"]["anyOf"]
    route = routes[1]["items"]["anyOf"][1]
    assert route["required"] == ["task"] and set(route["properties"]) == {"task", "when", "with"}


def test_a_route_gives_its_task_inputs_from_the_outputs_of_the_task_it_leaves(
        tmp_path: Path) -> None:
    path = write_playbook(tmp_path, "inputs", """
        tasks:
          - name: count
            steps: [{name: s, plugin: echo, with: {n: 3}}]
            next:
              - {task: double, with: {n: "{{ tasks.count.steps.s.output.n * 2 }}", tag: a}}
          - name: other
            steps: [{name: s, plugin: echo, with: {n: 1}}]
            next: [{task: double, with: {tag: b}}]
          - name: double
            when: "inputs.n > 5"
            steps: [{name: s, plugin: echo, with: {got: "{{ inputs.n }}", tag: "{{ inputs.tag }}"}}]
        """)
    result, document = run_playbook(path, tmp_path / "state")
    assert result.returncode == 0, result.stderr
    # Two routes reached it: their inputs merged in the order of the tasks that route.
    assert steps_of(document, "double")["s"]["output"] == {"got": 6, "tag": "b"}


def test_inputs_are_checked_against_what_the_routes_give() -> None:
    with pytest.raises(PlaybookError) as caught:
        parse_playbook(HEADER + textwrap.dedent("""\
            tasks:
              - name: a
                steps: [{name: s, plugin: echo, with: {x: "{{ inputs.zz }}"}}]
                next:
                  - {task: b, with: {count: "{{ steps.s.output }}"}}
                  - {task: c, with: 3}
              - name: b
                steps: [{name: s, plugin: echo, with: {got: "{{ inputs.cnt }}"}}]
              - name: c
                steps: [{name: s, plugin: echo, with: {got: 1}}]
            """), "pb.yaml")
    assert [str(problem) for problem in caught.value.problems] == [
        "pb.yaml:6:47: inputs.zz: no route to task 'a' gives it "
        "(next: [{task: a, with: {zz: ...}}])",
        "pb.yaml:8:33: steps: a route's when and with read vars, workflow, tasks.a (the task "
        "it leaves) and the tasks that ran before it",
        "pb.yaml:9:25: with must be a mapping (got number 3)",
        "pb.yaml:11:49: inputs.cnt: no route to task 'b' gives it "
        "(next: [{task: b, with: {cnt: ...}}])",
    ]


def test_preview_follows_routes_and_a_set_takes_the_other_one(tmp_path: Path) -> None:
    from tests.run_helpers import noetl

    path = write_playbook(tmp_path, "routes", """
        vars: {big: false}
        tasks:
          - name: a
            steps: [{name: s, plugin: echo, with: {msg: 1}}]
            next:
              - {task: big, when: vars.big}
              - {task: small, when: not vars.big}
          - name: big
            steps: [{name: s, plugin: echo, with: {msg: 1}}]
            next: [after-big]
          - name: after-big
            steps: [{name: s, plugin: echo, with: {msg: 1}}]
          - name: small
            steps: [{name: s, plugin: echo, with: {msg: 1}}]
        """)

    def executions(*extra: str) -> tuple[dict[str, int], str]:
        result = noetl("preview", path, *extra, cwd=tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr
        counts = result.stdout.split("executions:")[1].split()
        return {counts[i]: int(counts[i + 1]) for i in range(0, len(counts), 2)}, result.stdout

    counts, shown = executions()
    assert counts == {"a.s": 1, "big.s": 0, "after-big.s": 0, "small.s": 1}
    assert "skipped: not reached: no route to it was taken (from a)" in shown
    assert "skipped: not reached: no route to it was taken (from big)" in shown
    counts, _ = executions("--set", "big=true")
    assert counts == {"a.s": 1, "big.s": 1, "after-big.s": 1, "small.s": 0}
