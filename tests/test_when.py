"""`when:` on tasks and steps, and `needs: {task, succeeded: true}` (docs/playbooks.md).

Conditions are decided on real runs (`noetl run --json`) from real outputs: a
shell step's exit code and stdout, an echo's output. Every new validation error
has its exact `file:line:col` message.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import yaml

from noetl_actors.errors import PlaybookError
from noetl_actors.playbook import parse_playbook, playbook_schema
from tests.run_helpers import noetl, run_playbook, steps_of, write_playbook

BRANCHES = """
vars: {big: false}
tasks:
  - name: check
    steps:
      - {name: probe, plugin: shell, with: {command: "echo yes"}}
      - name: shout
        plugin: echo
        when: "steps.probe.output.stdout | trim == 'no'"
        with: {msg: loud}
      - name: answer
        plugin: echo
        when: "{{ steps.probe.output.exit_code == 0 }}"
        with: {msg: "{{ steps.shout.output }}"}
      - {name: flaky, plugin: shell, with: {command: "exit 3"},
         on_error: {ShellError: continue}}
      - name: recover
        plugin: echo
        when: "steps.flaky.output.error.type == 'ShellError'"
        with: {msg: recovered}
  - name: load
    needs: [check]
    when: "tasks.check.steps.answer.output.msg is none"
    steps:
      - {name: go, plugin: echo, with: {msg: loaded}}
  - name: huge
    when: vars.big
    steps:
      - {name: go, plugin: echo, with: {msg: big}}
  - name: after-huge
    needs: [{task: huge, succeeded: true}]
    steps:
      - {name: go, plugin: echo, with: {msg: after}}
  - name: anyway
    needs: huge
    steps:
      - {name: go, plugin: echo, with: {msg: "{{ tasks.huge.steps.go.output }}"}}
"""


def test_conditions_on_real_outputs_skip_tasks_and_steps_and_say_why(tmp_path: Path) -> None:
    path = write_playbook(tmp_path, "branches", BRANCHES)
    result, document = run_playbook(path, tmp_path / "state")
    assert result.returncode == 0, result.stderr
    assert document["status"] == "succeeded"
    check = steps_of(document, "check")
    assert check["probe"]["output"]["stdout"] == "yes\n"
    assert (check["shout"]["status"], check["shout"]["skipped"]) == (
        "skipped", "when \"steps.probe.output.stdout | trim == 'no'\" was false")
    assert check["shout"]["attempts"] == 0 and check["shout"]["output"] is None
    assert check["answer"]["status"] == "succeeded"
    assert check["answer"]["output"] == {"msg": None}, "a skipped step's output is null"
    assert "skipped" not in check["answer"], "only a skipped step says why"
    assert check["recover"]["output"] == {"msg": "recovered"}
    tasks = document["tasks"]
    assert tasks["load"]["status"] == "succeeded"
    assert (tasks["huge"]["status"], tasks["huge"]["skipped"]) == (
        "skipped", "when 'vars.big' was false")
    assert steps_of(document, "huge")["go"]["status"] == "skipped"
    assert (tasks["after-huge"]["status"], tasks["after-huge"]["skipped"]) == (
        "skipped", "it needs task 'huge' to have run, and it was skipped")
    assert tasks["anyway"]["status"] == "succeeded", "a skipped need counts as finished"
    assert steps_of(document, "anyway")["go"]["output"] == {"msg": None}


def test_the_history_keeps_what_was_skipped_and_why(tmp_path: Path) -> None:
    path = write_playbook(tmp_path, "branches", BRANCHES)
    state = tmp_path / "state"
    result, document = run_playbook(path, state)
    assert result.returncode == 0, result.stderr
    workflow_id = document["workflow_id"]
    events = noetl("events", workflow_id, "--state-dir", state, "--json", cwd=tmp_path)
    assert events.returncode == 0, events.stderr
    root = f"/node/workflows/{workflow_id}"
    skips = {entry["path"][len(root) + 1:]: entry["reason"]["message"]
             for entry in map(json.loads, events.stdout.splitlines())
             if entry.get("kind") == "exited" and (entry.get("reason") or {}).get(
                 "error_type") == "skipped"}
    assert skips == {
        "check/shout": "skipped: when \"steps.probe.output.stdout | trim == 'no'\" was false",
        "huge": "skipped: when 'vars.big' was false",
        "after-huge": "skipped: it needs task 'huge' to have run, and it was skipped",
    }
    text = noetl("events", workflow_id, "--state-dir", state, cwd=tmp_path)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert f"{root}/huge exited  skipped: when 'vars.big' was false" in [
        line.split("  ", 1)[1] for line in lines], "the text form says why too"
    assert f"{root}/load exited  normal" in [line.split("  ", 1)[1] for line in lines]


def test_the_live_tree_of_noetl_run_shows_what_was_skipped_and_why(tmp_path: Path) -> None:
    path = write_playbook(tmp_path, "branches", BRANCHES)
    result = noetl("run", path, "--state-dir", tmp_path / "state", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "huge  skipped  when 'vars.big' was false" in result.stdout, result.stdout
    assert "shout  skipped  when" in result.stdout, result.stdout
    assert "anyway  succeeded" in result.stdout, result.stdout


def test_a_var_set_on_the_command_line_takes_the_other_branch(tmp_path: Path) -> None:
    path = write_playbook(tmp_path, "branches", BRANCHES)
    result, document = run_playbook(path, tmp_path / "state", "--set", "big=true")
    assert result.returncode == 0, result.stderr
    assert {name: task["status"] for name, task in document["tasks"].items()} == {
        "check": "succeeded", "load": "succeeded", "huge": "succeeded",
        "after-huge": "succeeded", "anyway": "succeeded"}
    assert steps_of(document, "anyway")["go"]["output"] == {"msg": {"msg": "big"}}


def test_a_condition_that_does_not_render_is_a_template_failure_of_its_step(
        tmp_path: Path) -> None:
    path = write_playbook(tmp_path, "broken", """
        tasks:
          - name: a
            supervision: {max_restarts: 1}
            steps:
              - {name: s, plugin: echo, with: {msg: 1}}
              - {name: t, plugin: echo, when: "steps.s.output.nope > 1", with: {msg: 1},
                 on_error: {template: continue}}
              - {name: u, plugin: echo, when: "steps.s.output.nope > 1", with: {msg: 1}}
        """)
    result, document = run_playbook(path, tmp_path / "state")
    assert result.returncode == 1
    steps = steps_of(document, "a")
    assert steps["t"]["error"]["type"] == "template"
    assert "has no attribute 'nope'" in steps["t"]["error"]["message"]
    assert steps["u"]["status"] == "failed" and steps["u"]["error"]["type"] == "template"


def test_a_one_for_all_restart_decides_its_steps_conditions_again(tmp_path: Path) -> None:
    path = write_playbook(tmp_path, "again", """
        tasks:
          - name: t
            supervision: {strategy: one_for_all, max_restarts: 2}
            steps:
              - {name: a, plugin: echo, with: {n: "{{ attempt }}"}}
              - {name: second, plugin: echo, when: "steps.a.output.n == 2", with: {msg: 2}}
              - {name: first, plugin: echo, when: "steps.a.output.n == 1", with: {msg: 1}}
              - {name: c, plugin: fail, with: {until_attempt: 2}}
        """)
    result, document = run_playbook(path, tmp_path / "state")
    assert result.returncode == 0, result.stderr
    steps = steps_of(document, "t")
    assert steps["a"]["attempts"] == 2 and steps["c"]["attempts"] == 2
    # skipped on the first run, run on the second: the report says it ran, no why
    assert (steps["second"]["status"], steps["second"]["output"]) == ("succeeded", {"msg": 2})
    assert "skipped" not in steps["second"]
    # run on the first, skipped on the second: no output of the earlier run
    assert (steps["first"]["status"], steps["first"]["output"]) == ("skipped", None)
    assert steps["first"]["skipped"] == "when 'steps.a.output.n == 1' was false"


def test_a_skipped_permanent_step_is_not_restarted(tmp_path: Path) -> None:
    path = write_playbook(tmp_path, "permanent", """
        tasks:
          - name: a
            steps:
              - {name: s, plugin: echo, restart: permanent, when: false, with: {msg: 1}}
              - {name: t, plugin: echo, with: {msg: 2}}
        """)
    result, document = run_playbook(path, tmp_path / "state")
    assert result.returncode == 0, result.stderr
    assert (steps_of(document, "a")["s"]["status"], steps_of(document, "a")["s"]["skipped"]) == (
        "skipped", "when: false")
    assert document["tasks"]["a"]["starts"] == 1


def problems(text: str) -> list[str]:
    with pytest.raises(PlaybookError) as caught:
        parse_playbook(textwrap.dedent(text), "pb.yaml")
    return [str(problem) for problem in caught.value.problems]


HEADER = "apiVersion: noetl.io/v1\nkind: Playbook\nname: pb\n"


def test_conditions_and_needs_entries_are_checked_where_they_are_written() -> None:
    assert problems(HEADER + textwrap.dedent("""\
        tasks:
          - name: a
            when: "{{ vars.x }} == 0"
            steps:
              - {name: s, plugin: echo, when: "steps.s.output", with: {msg: 1}}
              - {name: t, plugin: echo, when: "tasks.b.steps.s.output", with: {msg: 1}}
          - name: b
            when: "steps.s.output"
            needs: [{task: a, succeeded: yes please}, {tsk: a}, {task: c}]
            steps:
              - {name: s, plugin: echo, when: 3, with: {msg: 1}}
              - {name: t, plugin: echo, when: "vars.nope", with: {msg: 1}}
        """)) == [
        "pb.yaml:6:11: when must be one expression, such as 'vars.x == 0' or "
        "'{{ vars.x == 0 }}' (got '{{ vars.x }} == 0': text around a template is a string, "
        "true whenever it is not empty)",
        "pb.yaml:8:39: steps.s refers to this step itself",
        "pb.yaml:9:39: tasks.b does not run before task 'a': add it to needs",
        "pb.yaml:11:11: steps: a task's when is decided before its steps run; it reads "
        "vars, workflow and tasks.<a task it needs>",
        "pb.yaml:12:34: needs: succeeded must be true or false (got 'yes please')",
        "pb.yaml:12:47: a needs entry needs 'task'",
        "pb.yaml:12:48: unknown key 'tsk' in a needs entry (did you mean 'task'?); "
        "allowed: task, succeeded",
        "pb.yaml:12:64: task 'b' needs 'c', which is not a task here",
        "pb.yaml:14:39: when must be an expression or true/false (got 3)",
        "pb.yaml:15:39: vars.nope is not defined in vars (nor given with --set)",
    ]


def test_a_playbook_with_conditions_round_trips_through_its_native_form() -> None:
    playbook = parse_playbook(HEADER + textwrap.dedent(BRANCHES), "pb.yaml")
    assert playbook.task("after-huge").needs_succeeded == {"huge"}
    again = parse_playbook(yaml.safe_dump(playbook.to_dict(), sort_keys=False), "again.yaml")
    assert again == playbook


def test_the_schema_knows_when_and_needs_entries() -> None:
    schema = playbook_schema()
    assert schema["$defs"]["step"]["properties"]["when"]["type"] == ["string", "boolean"]
    task = schema["$defs"]["task"]["properties"]
    assert task["when"]["type"] == ["string", "boolean"]
    entry = task["needs"]["anyOf"][1]["items"]["anyOf"][1]
    assert entry["required"] == ["task"] and set(entry["properties"]) == {"task", "succeeded"}


def test_preview_decides_conditions_on_vars_and_a_set_shows_the_other_branch(
        tmp_path: Path) -> None:
    path = write_playbook(tmp_path, "branches", BRANCHES)

    def executions(*extra: str) -> dict[str, int]:
        result = noetl("preview", path, *extra, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        counts = result.stdout.split("executions:")[1].split()
        return {counts[i]: int(counts[i + 1]) for i in range(0, len(counts), 2)}

    default = executions()
    assert (default["huge.go"], default["after-huge.go"], default["anyway.go"]) == (0, 0, 1)
    flipped = executions("--set", "big=true")
    assert (flipped["huge.go"], flipped["after-huge.go"], flipped["anyway.go"]) == (1, 1, 1)
    result = noetl("preview", path, cwd=tmp_path)
    assert "huge" in result.stdout and "skipped: when 'vars.big' was false" in result.stdout
