"""`loop:` on a task (docs/playbooks.md, "Loops"), on real runs (`noetl run --json`).

Each iteration is its own supervised subtree; its steps' outputs come back to
the workflow as lists in item order. Every new validation error has its exact
`file:line:col` message.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from noetl_actors.errors import PlaybookError
from noetl_actors.playbook import parse_playbook, playbook_schema
from tests.run_helpers import noetl, run_playbook, steps_of, write_playbook


def iterations(document: dict[str, Any], task: str) -> list[dict[str, Any]]:
    return list(document["tasks"][task]["iterations"])


def test_a_loop_over_a_literal_list_runs_its_steps_once_per_item_in_item_order(
        tmp_path: Path) -> None:
    path = write_playbook(tmp_path, "literal", """
        tasks:
          - name: greet
            loop: {over: [ann, bob, cy], as: who}
            steps:
              - {name: hello, plugin: echo, with: {msg: "hi {{ who }}", i: "{{ iteration }}"}}
              - {name: again, plugin: echo, with: {msg: "{{ steps.hello.output.msg }}!"}}
        """)
    result, document = run_playbook(path, tmp_path / "state")
    assert result.returncode == 0, result.stderr
    task = document["tasks"]["greet"]
    assert task["status"] == "succeeded" and task["starts"] == 1
    assert task["loop"] == {"items": 3, "succeeded": 3, "failed": 0, "running": 0,
                            "skipped": 0, "cancelled": 0}
    assert steps_of(document, "greet")["hello"]["output"] == [
        {"msg": "hi ann", "i": 0}, {"msg": "hi bob", "i": 1}, {"msg": "hi cy", "i": 2}]
    assert steps_of(document, "greet")["again"]["attempts"] == 3, "summed over iterations"
    assert [it["steps"]["again"]["output"] for it in iterations(document, "greet")] == [
        {"msg": "hi ann!"}, {"msg": "hi bob!"}, {"msg": "hi cy!"}]


def test_a_loop_over_a_list_a_step_produced_feeds_a_downstream_task_in_item_order(
        tmp_path: Path) -> None:
    path = write_playbook(tmp_path, "produced", """
        tasks:
          - name: list
            steps:
              - {name: ls, plugin: echo, with: {items: [3, 1, 2]}}
          - name: square
            needs: list
            loop: {over: "{{ tasks.list.steps.ls.output['items'] }}", as: n}
            steps:
              - {name: nap, plugin: sleep, with: {seconds: "{{ n / 10 }}"}}
              - {name: sq, plugin: python, when: "n != 1",
                 with: {function: "operator:mul", args: ["{{ n }}", "{{ n }}"]}}
          - name: total
            needs: square
            steps:
              - {name: sum, plugin: echo, with: {all: "{{ tasks.square.steps.sq.output }}"}}
        """)
    result, document = run_playbook(path, tmp_path / "state")
    assert result.returncode == 0, result.stderr
    # The first item ends last (it sleeps longest): the outputs are in item order still.
    assert steps_of(document, "total")["sum"]["output"] == {"all": [9, None, 4]}
    skipped = iterations(document, "square")[1]["steps"]["sq"]
    assert (skipped["status"], skipped["skipped"]) == ("skipped", "when 'n != 1' was false")


def test_a_thousand_iterations_fifty_at_a_time(tmp_path: Path) -> None:
    path = write_playbook(tmp_path, "many", """
        vars: {n: 1000}
        tasks:
          - name: each
            loop: {over: "range(vars.n) | list", max_in_flight: 50}
            steps:
              - {name: s, plugin: echo, with: {v: "{{ item * 2 }}"}}
        """)
    result, document = run_playbook(path, tmp_path / "state")
    assert result.returncode == 0, result.stderr
    task = document["tasks"]["each"]
    assert task["loop"]["items"] == task["loop"]["succeeded"] == 1000
    assert steps_of(document, "each")["s"]["output"] == [{"v": 2 * i} for i in range(1000)]
    assert len(task["iterations"]) == 1000


def max_overlap(spans: list[tuple[float, float]]) -> int:
    edges = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    running = most = 0
    for _, change in edges:  # an end sorts before a start at the same time
        running += change
        most = max(most, running)
    return most


def test_max_in_flight_bounds_the_iterations_that_run_at_once(tmp_path: Path) -> None:
    path = write_playbook(tmp_path, "bounded", """
        tasks:
          - name: naps
            loop: {over: [1, 2, 3, 4, 5, 6], max_in_flight: 2}
            steps:
              - {name: a, plugin: sleep, with: {seconds: 0.3}}
              - {name: b, plugin: sleep, with: {seconds: 0.2}}
        """)
    result, document = run_playbook(path, tmp_path / "state")
    assert result.returncode == 0, result.stderr
    spans = [(it["steps"]["a"]["queued_at"], it["steps"]["b"]["finished_at"])
             for it in iterations(document, "naps")]
    assert max_overlap(spans) == 2, spans
    starts = [start for start, _ in spans]
    assert starts == sorted(starts), "iterations start in item order"


def test_without_max_in_flight_every_iteration_runs_at_once(tmp_path: Path) -> None:
    path = write_playbook(tmp_path, "unbounded", """
        tasks:
          - name: naps
            loop: {over: [1, 2, 3, 4]}
            steps:
              - {name: a, plugin: sleep, with: {seconds: 2}}
        """)
    result, document = run_playbook(path, tmp_path / "state")
    assert result.returncode == 0, result.stderr
    spans = [(it["steps"]["a"]["queued_at"], it["steps"]["a"]["finished_at"])
             for it in iterations(document, "naps")]
    assert max_overlap(spans) == 4, spans


FLAKY = """
tasks:
  - name: work
    supervision: {strategy: STRATEGY, max_restarts: 3}
    loop: {over: [a, b, c]}
    steps:
      - {name: prep, plugin: echo, with: {msg: "{{ item }}"}}
      - {name: flaky, plugin: fail, with: {until_attempt: "{{ 2 if item == 'b' else 1 }}"}}
"""


def test_a_failing_iteration_under_one_for_one_restarts_its_step_alone(tmp_path: Path) -> None:
    path = write_playbook(tmp_path, "flaky", FLAKY.replace("STRATEGY", "one_for_one"))
    result, document = run_playbook(path, tmp_path / "state")
    assert result.returncode == 0, result.stderr
    runs = iterations(document, "work")
    assert [(it["steps"]["prep"]["attempts"], it["steps"]["flaky"]["attempts"])
            for it in runs] == [(1, 1), (1, 2), (1, 1)]
    assert [it["status"] for it in runs] == ["succeeded"] * 3
    assert document["tasks"]["work"]["starts"] == 1
    assert steps_of(document, "work")["flaky"]["output"] == [
        {"attempt": 1}, {"attempt": 2}, {"attempt": 1}]


def test_a_failing_iteration_under_one_for_all_starts_again_from_its_first_step(
        tmp_path: Path) -> None:
    path = write_playbook(tmp_path, "flaky", FLAKY.replace("STRATEGY", "one_for_all"))
    result, document = run_playbook(path, tmp_path / "state")
    assert result.returncode == 0, result.stderr
    runs = iterations(document, "work")
    assert [(it["steps"]["prep"]["attempts"], it["steps"]["flaky"]["attempts"])
            for it in runs] == [(1, 1), (2, 2), (1, 1)]
    assert document["tasks"]["work"]["starts"] == 1, "the other iterations are unaffected"


def test_an_iteration_that_gives_up_fails_the_task_and_the_workflow(tmp_path: Path) -> None:
    path = write_playbook(tmp_path, "broken", """
        tasks:
          - name: work
            supervision: {max_restarts: 1}
            loop: {over: [a, b, c], max_in_flight: 1}
            steps:
              - {name: flaky, plugin: fail, with: {until_attempt: "{{ 9 if item == 'b' else 1 }}"}}
          - name: after
            needs: work
            steps:
              - {name: s, plugin: echo, with: {msg: 1}}
        """)
    result, document = run_playbook(path, tmp_path / "state")
    assert result.returncode == 1
    task = document["tasks"]["work"]
    assert task["status"] == "failed"
    assert task["loop"] == {"items": 3, "succeeded": 1, "failed": 1, "running": 0,
                            "skipped": 0, "cancelled": 0}
    assert [it["status"] for it in task["iterations"]] == ["succeeded", "failed",
                                                           "not_started"]
    assert task["iterations"][1]["steps"]["flaky"]["attempts"] == 2
    assert document["tasks"]["after"]["status"] == "waiting"
    assert "/work/1 gave up" in document["error"]["reason"]


def test_one_for_all_over_the_workflow_runs_every_iteration_again(tmp_path: Path) -> None:
    path = write_playbook(tmp_path, "again", """
        supervision: {strategy: one_for_all, max_restarts: 1}
        tasks:
          - name: work
            supervision: {max_restarts: 0}
            loop: {over: [a, b]}
            steps:
              - {name: s, plugin: echo, with: {msg: "{{ item }}"}}
              - {name: t, plugin: fail, with: {until_attempt: "{{ 2 if item == 'b' else 1 }}"}}
        """)
    result, document = run_playbook(path, tmp_path / "state")
    assert result.returncode == 0, result.stderr
    task = document["tasks"]["work"]
    assert task["starts"] == 2
    assert [it["steps"]["s"]["attempts"] for it in task["iterations"]] == [2, 2]


def test_an_empty_list_is_a_finished_task(tmp_path: Path) -> None:
    path = write_playbook(tmp_path, "empty", """
        tasks:
          - name: none
            loop: {over: "[]"}
            steps:
              - {name: s, plugin: fail}
          - name: after
            needs: none
            steps:
              - {name: s, plugin: echo, with: {got: "{{ tasks.none.steps.s.output }}"}}
        """)
    result, document = run_playbook(path, tmp_path / "state")
    assert result.returncode == 0, result.stderr
    assert document["tasks"]["none"]["status"] == "succeeded"
    assert document["tasks"]["none"]["loop"]["items"] == 0
    assert document["tasks"]["none"]["iterations"] == []
    assert steps_of(document, "none")["s"]["output"] == [], "as later tasks read it"
    assert steps_of(document, "after")["s"]["output"] == {"got": []}


def test_a_loop_over_what_is_not_a_list_fails_its_task_with_a_template_error(
        tmp_path: Path) -> None:
    path = write_playbook(tmp_path, "scalar", """
        vars: {n: 3}
        tasks:
          - name: each
            loop: {over: vars.n}
            steps:
              - {name: s, plugin: echo, with: {msg: 1}}
        """)
    result, document = run_playbook(path, tmp_path / "state")
    assert result.returncode == 1
    assert document["tasks"]["each"]["status"] == "failed"
    assert ("/each crashed: template: loop: over 'vars.n' gave int 3, not a list"
            in document["error"]["reason"]), document["error"]


def test_more_items_than_max_items_fails_the_task_and_says_so(tmp_path: Path) -> None:
    path = write_playbook(tmp_path, "toomany", """
        tasks:
          - name: each
            loop: {over: "range(12000) | list"}
            steps:
              - {name: s, plugin: echo, with: {msg: 1}}
        """)
    result, document = run_playbook(path, tmp_path / "state")
    assert result.returncode == 1
    assert document["tasks"]["each"]["status"] == "failed"
    assert ("/each crashed: loop: loop over 12000 items: more than max_items 10000"
            in document["error"]["reason"]), document["error"]
    assert steps_of(document, "each")["s"]["attempts"] == 0


# -- validation -------------------------------------------------------------------------


def problems(text: str) -> list[str]:
    with pytest.raises(PlaybookError) as caught:
        parse_playbook(textwrap.dedent(text), "pb.yaml")
    return [str(problem) for problem in caught.value.problems]


HEADER = "apiVersion: noetl.io/v1\nkind: Playbook\nname: pb\nvars: {xs: [1]}\n"


def test_loops_are_checked_where_they_are_written() -> None:
    assert problems(HEADER + textwrap.dedent("""\
        tasks:
          - name: a
            loop: [1, 2]
            steps:
              - {name: s, plugin: echo, with: {msg: "{{ item }}"}}
          - name: b
            loop: {as: x, max_in_flight: 0, max_items: yes, sizes: 3}
            steps:
              - {name: s, plugin: echo, with: {msg: "{{ x }}"}}
          - name: c
            loop: {over: 3, as: vars}
            steps:
              - {name: s, plugin: echo, with: {msg: 1}}
          - name: d
            loop: {over: "{{ vars.xs }} + [1]", max_items: 2}
            steps:
              - {name: s, plugin: echo, with: {msg: 1}}
          - name: e
            loop: {over: [1, 2, 3], max_items: 2}
            steps:
              - {name: s, plugin: echo, with: {msg: 1}}
          - name: f
            loop: {over: "steps.s.output", as: it}
            steps:
              - {name: s, plugin: echo, with: {msg: "{{ item }} {{ it }} {{ iteration }}"}}
          - name: g
            loop: {over: "item + iteration"}
            steps:
              - {name: s, plugin: echo, when: "iteration > 0", with: {msg: "{{ vars.nope }}"}}
          - name: h
            steps:
              - {name: s, plugin: echo, when: "iteration > 0", with: {msg: "{{ item }}"}}
          - name: i
            loop: {over: "attempt", as: my-item}
            steps:
              - {name: s, plugin: echo, with: {msg: 1}}
        """)) == [
        "pb.yaml:7:11: a loop must be a mapping (got a list)",
        "pb.yaml:11:11: a loop needs 'over'",
        "pb.yaml:11:34: loop: max_in_flight must be a whole number >= 1 (got 0)",
        "pb.yaml:11:48: loop: max_items must be a whole number >= 1 (got True)",
        "pb.yaml:11:53: unknown key 'sizes' in a loop; allowed: over, as, max_in_flight, "
        "max_items",
        "pb.yaml:15:18: loop: over must be a list or an expression that gives one (got 3)",
        "pb.yaml:15:25: loop: as 'vars' is a name templates already use (vars, workflow, "
        "steps, tasks, attempt, inputs, iteration): choose another",
        "pb.yaml:19:18: loop: over must be one expression, such as 'vars.xs + [1]' or "
        "'{{ vars.xs + [1] }}' (got '{{ vars.xs }} + [1]': text around a template is a "
        "string, not a list)",
        "pb.yaml:23:18: loop over 3 items: more than max_items 2",
        "pb.yaml:27:18: steps: a loop's over is read before the task's steps run; it reads "
        "vars, workflow and tasks.<a task it needs>",
        "pb.yaml:29:45: unknown name 'item' in a template (use vars, workflow, steps, tasks, "
        "attempt, inputs, it, iteration)",
        "pb.yaml:31:18: unknown name 'item' in a template (use vars, workflow, steps, "
        "tasks, attempt, inputs)",
        "pb.yaml:31:18: unknown name 'iteration' in a template (use vars, workflow, steps, "
        "tasks, attempt, inputs)",
        "pb.yaml:33:68: vars.nope is not defined in vars (nor given with --set)",
        "pb.yaml:36:39: unknown name 'iteration' in a template (use vars, workflow, steps, "
        "tasks, attempt, inputs)",
        "pb.yaml:36:68: unknown name 'item' in a template (use vars, workflow, steps, tasks, "
        "attempt, inputs)",
        "pb.yaml:38:18: attempt: a loop's over is read before the task's steps run; it reads "
        "vars, workflow and tasks.<a task it needs>",
        "pb.yaml:38:33: loop: as must be a name a template can use: letters, digits and '_', "
        "not first a digit (got 'my-item')",
    ]


def test_a_looped_playbook_round_trips_through_its_native_form() -> None:
    playbook = parse_playbook(HEADER + textwrap.dedent("""\
        tasks:
          - name: a
            loop: {over: [1, 2], as: n, max_in_flight: 2, max_items: 5}
            steps:
              - {name: s, plugin: echo, with: {msg: "{{ n }}"}}
          - name: b
            needs: a
            loop: {over: "tasks.a.steps.s.output"}
            steps:
              - {name: s, plugin: echo, with: {msg: "{{ item }}"}}
        """), "pb.yaml")
    loop = playbook.task("a").loop
    assert loop is not None and loop.as_ == "n"
    again = parse_playbook(yaml.safe_dump(playbook.to_dict(), sort_keys=False), "again.yaml")
    assert again == playbook


def test_the_schema_knows_loop() -> None:
    loop = playbook_schema()["$defs"]["task"]["properties"]["loop"]
    assert loop["required"] == ["over"]
    assert set(loop["properties"]) == {"over", "as", "max_in_flight", "max_items"}


# -- lint and preview -------------------------------------------------------------------

LISTED = """
tasks:
  - name: list
    steps:
      - {name: ls, plugin: echo, with: {items: [1, 2, 3]}}
  - name: each
    needs: list
    loop: {over: "tasks.list.steps.ls.output['items']", max_items: 50}
    steps:
      - {name: s, plugin: echo, with: {v: "{{ item }}"}}
  - name: fixed
    loop: {over: [a, b, c]}
    steps:
      - {name: s, plugin: echo, with: {v: "{{ item }}"}}
"""


def test_lint_counts_iterations_and_warns_on_a_list_known_only_at_run_time(
        tmp_path: Path) -> None:
    path = write_playbook(tmp_path, "listed", LISTED)
    result = noetl("lint", path, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line.split()[1] for line in result.stdout.splitlines()[1:]
            if line.split() and line.split()[0] in ("list.ls", "each.s", "fixed.s")}
    assert rows == {"list.ls": "4", "each.s": "200", "fixed.s": "12"}
    assert (f"{path}:8:5: warning: task each loops over \"tasks.list.steps.ls.output['items']\", "
            "known only at run time: its list is bounded by max_items alone (50); set "
            "loop.max_items to what you expect") in result.stdout + result.stderr


def test_lint_warns_on_a_list_of_vars_that_would_fail_its_task(tmp_path: Path) -> None:
    """An expression counts max_items (a run may --set its vars otherwise); one of vars
    alone that gives no list, or too many items, is said to fail the task."""
    path = write_playbook(tmp_path, "of-vars", """
        vars: {n: 3, word: abc}
        tasks:
          - name: each
            loop: {over: "range(vars.n) | list", max_items: 5}
            steps:
              - {name: s, plugin: echo, with: {msg: 1}}
          - name: scalar
            loop: {over: vars.word}
            steps:
              - {name: s, plugin: echo, with: {msg: 1}}
          - name: long
            loop: {over: "range(vars.n * 10) | list", max_items: 20}
            steps:
              - {name: s, plugin: echo, with: {msg: 1}}
        """)

    def lint(*extra: str) -> tuple[dict[str, str], list[str]]:
        result = noetl("lint", path, *extra, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        return ({line.split()[0]: line.split()[1] for line in result.stdout.splitlines()[1:]
                 if line.split() and line.split()[0].endswith(".s")},
                [line for line in (result.stdout + result.stderr).splitlines()
                 if ": warning: " in line])

    counts, warnings = lint()
    assert counts == {"each.s": "20", "scalar.s": "40000", "long.s": "80"}
    assert warnings == [
        f"{path}:6:5: warning: task each loops over 'range(vars.n) | list', known only at "
        "run time: its list is bounded by max_items alone (5); set loop.max_items to what "
        "you expect",
        f"{path}:10:5: warning: task scalar loops over 'vars.word', which gives str from "
        "vars, not a list: the task fails (error type template)",
        f"{path}:14:5: warning: task long loops over 'range(vars.n * 10) | list', which "
        "gives 30 items from vars: more than max_items 20, the task fails (error type loop)",
    ]
    _, warnings = lint("--set", "n=2")
    assert [w for w in warnings if "task long" in w] == [
        f"{path}:14:5: warning: task long loops over 'range(vars.n * 10) | list', known only "
        "at run time: its list is bounded by max_items alone (20); set loop.max_items to "
        "what you expect"]


def test_preview_runs_one_iteration_of_a_list_it_cannot_know_and_says_so(
        tmp_path: Path) -> None:
    path = write_playbook(tmp_path, "listed", LISTED)
    result = noetl("preview", path, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert ("task each loops over \"tasks.list.steps.ls.output['items']\", unknown before a "
            "run: the preview runs one iteration of it") in result.stdout
    executions = {line.split()[0]: line.split()[1] for line in
                  result.stdout.split("executions:")[1].splitlines() if line.strip()}
    assert executions == {"list.ls": "1", "each.s": "1", "fixed.s": "3"}


def test_the_console_shows_a_loops_counts_and_its_failed_iteration_not_every_one(
        tmp_path: Path) -> None:
    import io
    import re

    from rich.console import Console

    from noetl_actors.console import render_document

    path = write_playbook(tmp_path, "thirty", """
        tasks:
          - name: work
            supervision: {max_restarts: 1}
            loop: {over: "range(30) | list", max_in_flight: 5}
            steps:
              - {name: flaky, plugin: fail, with: {until_attempt: "{{ 9 if item == 12 else 1 }}"}}
        """)
    result, document = run_playbook(path, tmp_path / "state")
    assert result.returncode == 1
    console = Console(file=io.StringIO(), width=200)
    console.print(render_document(document))
    shown = console.file.getvalue()  # type: ignore[attr-defined]
    assert re.search(r"work  failed  loop: \d+/30 succeeded, 1 failed", shown), shown
    assert "[12]  failed" in shown
    assert "flaky  failed  attempt 2  PluginError: failed on purpose (attempt 2)" in shown
    assert "other 29 iteration(s) not shown (--json has them all)" in shown
    assert len(shown.splitlines()) < 10, shown


def test_an_iteration_stopped_by_on_error_stops_the_task(tmp_path: Path) -> None:
    path = write_playbook(tmp_path, "stopped", """
        tasks:
          - name: work
            loop: {over: [a, b, c], max_in_flight: 1}
            steps:
              - {name: s, plugin: fail, on_error: {PluginError: stop},
                 with: {until_attempt: "{{ 9 if item == 'b' else 1 }}"}}
        """)
    result, document = run_playbook(path, tmp_path / "state")
    assert result.returncode == 1
    task = document["tasks"]["work"]
    assert task["status"] == "failed"
    assert [it["status"] for it in task["iterations"]] == ["succeeded", "failed",
                                                           "not_started"]
    assert "/work was shut down: stopped: iteration 1 was stopped <- " in document["error"][
        "reason"], document["error"]


def test_a_served_node_runs_a_loop_with_its_claims_keyed_by_iteration(tmp_path: Path) -> None:
    from tests.node_helpers import Cli, running_node

    path = write_playbook(tmp_path, "served", """
        tasks:
          - name: each
            loop: {over: [x, y, z], max_in_flight: 2}
            steps:
              - {name: s, plugin: echo, with: {v: "{{ item }}"}}
              - {name: t, plugin: echo, when: "item == 'q'", with: {v: 1}}
          - name: never
            when: false
            steps:
              - {name: s, plugin: echo, with: {v: 1}}
        """)
    with running_node(tmp_path, "alpha") as node:
        cli = Cli(node.url)
        waited = cli("submit", path, "--wait", "--json")
        assert waited.returncode == 0, waited.stderr
        record = waited.document()
        assert record["status"] == "succeeded", record["error"]
        assert record["tasks"]["each"]["loop"]["succeeded"] == 3
        assert record["tasks"]["each"]["steps"]["s"]["output"] == [
            {"v": "x"}, {"v": "y"}, {"v": "z"}]
        step_ids = {event.get("step_id") for event in cli.events(record["workflow_id"])}
        assert {"each/0=s", "each/1=s", "each/2=s"} <= step_ids, step_ids
        # noetl status, as the live tree: the loop's counts, what was skipped and why
        shown = cli.ok("status", record["workflow_id"]).stdout
        assert "each  succeeded  loop: 3/3 succeeded" in shown, shown
        assert "never  skipped  when: false" in shown, shown
        assert record["tasks"]["each"]["iterations"][0]["steps"]["t"]["skipped"] == (
            "when \"item == 'q'\" was false")
