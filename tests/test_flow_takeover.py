"""Conditions and routes across a takeover (issue 15, item 5): decided again from the
replayed outputs, they give the same answers, and nothing done runs again.

Real `noetl server`, two nodes, a `noetl worker` for the shell steps, kill -9 of
the owner. Every shell step appends its name to a file: a rerun shows there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.node_helpers import Cli
from tests.run_helpers import wait_until, write_playbook
from tests.takeover_helpers import lines_of, run_twice, step_records, two_nodes

pytestmark = pytest.mark.timeout(120)


def shell(lines: Path, name: str, then: str = "") -> str:
    return f'{{command: "echo {name} >> {lines} && sleep 0.3{then}"}}'


def run_through_a_takeover(tmp_path: Path, playbook: Path, lines: Path, *,
                           kill_after: int) -> dict[str, Any]:
    """`playbook` on one of two nodes, its owner killed (-9) once its shell steps wrote
    `kill_after` lines: its record once it ended, succeeded on the other node and no
    step run twice."""
    with two_nodes(tmp_path) as (url, a, b):
        cli = Cli(url)
        workflow_id = cli.submit(playbook)
        owner = cli.wait_status(workflow_id, "running")["node"]
        dead, heir = (a, b) if owner == "a" else (b, a)
        wait_until(lambda: len(lines_of(lines)) >= kill_after, 30,
                   f"{kill_after} lines written", 0.05)
        dead.spawned.kill()

        record = cli.wait_status(workflow_id, {"succeeded", "failed"}, timeout=60)
        assert record["status"] == "succeeded", record.get("error")
        assert record["node"] == heir.name and record["epoch"] == 2
    assert run_twice(lines) == []
    return record


def test_a_takeover_keeps_skipped_steps_and_routes_as_they_were_decided(
        tmp_path: Path) -> None:
    lines = tmp_path / "lines.txt"
    steps = "\n".join(f"      - {{name: s{n}, plugin: shell, with: {shell(lines, f't.s{n}')}}}"
                      for n in range(2, 8))
    playbook = write_playbook(tmp_path, "branchy", f"""
tasks:
  - name: t
    steps:
      - {{name: probe, plugin: shell, with: {shell(lines, 't.probe', ' && echo yes')}}}
      - name: unless-no
        plugin: shell
        when: "steps.probe.output.stdout | trim == 'no'"
        with: {shell(lines, 't.unless-no')}
{steps}
    next:
      - {{task: on-yes, when: "tasks.t.steps.probe.output.stdout | trim == 'yes'"}}
      - {{task: on-no, when: "tasks.t.steps.probe.output.stdout | trim == 'no'"}}
  - name: on-yes
    steps:
      - {{name: go, plugin: shell, with: {shell(lines, 'on-yes.go')}}}
  - name: on-no
    steps:
      - {{name: go, plugin: shell, with: {shell(lines, 'on-no.go')}}}
""")
    record = run_through_a_takeover(tmp_path, playbook, lines, kill_after=3)
    assert set(lines_of(lines)) == {"t.probe", *(f"t.s{n}" for n in range(2, 8)), "on-yes.go"}
    steps_of = step_records(record)
    assert steps_of["t.unless-no"]["status"] == "skipped"
    assert steps_of["t.probe"]["attempts"] == 1
    assert record["tasks"]["on-yes"]["status"] == "succeeded"
    assert (record["tasks"]["on-no"]["status"], record["tasks"]["on-no"]["skipped"]) == (
        "skipped", "not reached: no route to it was taken (from t)")


def test_a_takeover_runs_no_finished_iteration_again(tmp_path: Path) -> None:
    """Issue 15, item 5: the heir replays each iteration's finished steps; the loop's
    output is still every item's, in item order."""
    lines = tmp_path / "lines.txt"
    first = f"echo a{{{{ n }}}} >> {lines} && sleep 0.3 && echo {{{{ n }}}}"
    second = f"echo b{{{{ n }}}} >> {lines} && sleep 0.3"
    got = "tasks.each.steps.first.output | map(attribute='stdout') | map('trim') | list"
    playbook = write_playbook(tmp_path, "looped", f"""
tasks:
  - name: each
    loop: {{over: [0, 1, 2, 3, 4, 5], as: n, max_in_flight: 2}}
    steps:
      - {{name: first, plugin: shell, with: {{command: "{first}"}}}}
      - {{name: second, plugin: shell, with: {{command: "{second}"}}}}
  - name: after
    needs: each
    steps:
      - {{name: all, plugin: echo, with: {{got: "{{{{ {got} }}}}"}}}}
""")
    record = run_through_a_takeover(tmp_path, playbook, lines, kill_after=5)
    assert set(lines_of(lines)) == {f"{step}{n}" for step in "ab" for n in range(6)}
    assert record["tasks"]["each"]["loop"]["succeeded"] == 6
    assert record["tasks"]["after"]["steps"]["all"]["output"] == {
        "got": ["0", "1", "2", "3", "4", "5"]}
