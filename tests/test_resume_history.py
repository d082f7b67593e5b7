"""`read_history`: the restarts a takeover counts, read from a workflow's history alone.

No NATS: lifecycle entries as `Node.history` gives them (a supervisor's
`backing_off` when it decides a restart, `restarted` when it makes it).
"""

from __future__ import annotations

from typing import Any

from noetl_actors.playbook import parse_playbook
from noetl_actors.runtime import read_history

PLAYBOOK = parse_playbook("""\
apiVersion: noetl.io/v1
kind: Playbook
name: crashloop
tasks:
  - name: t
    supervision: {max_restarts: 3, within: 5m, backoff: {initial: 2s}}
    steps:
      - {name: boom, plugin: fail}
""")


def lifecycle(kind: str, path: str, at: float) -> dict[str, Any]:
    return {"subject": "noetl.lifecycle.wf-1", "kind": kind, "at": at, "epoch": 1,
            "path": f"/a/workflows/wf-1/{path}"}


def failed(attempt: int, at: float) -> dict[str, Any]:
    return {"subject": "event.fail.wf-1.t=boom", "schema_version": 1, "type": "event",
            "command_id": f"wf-1.t=boom.{attempt}", "workflow_id": "wf-1", "step_id": "t=boom",
            "attempt": attempt, "status": "failed", "at": at, "worker": "w",
            "error_type": "PluginError", "error_message": "failed on purpose"}


def test_a_restart_decided_before_the_owner_died_in_its_backoff_still_counts() -> None:
    history = [
        failed(1, 10.0), lifecycle("exited", "t/boom", 10.0),
        lifecycle("backing_off", "t/boom", 10.0), lifecycle("restarted", "t/boom", 12.0),
        failed(2, 12.0), lifecycle("exited", "t/boom", 12.0),
        lifecycle("backing_off", "t/boom", 12.0),  # the owner dies here
    ]
    state = read_history(PLAYBOOK, history)
    assert state.restarts == {"t": [10.0, 12.0]}  # each restart once, when decided
    assert state.attempts == {("t", "boom"): 2} and state.adopted == {}


def test_a_restart_without_backoff_counts_once_too() -> None:
    history = [failed(1, 10.0), lifecycle("exited", "t/boom", 10.0),
               lifecycle("restarted", "t/boom", 10.0)]
    assert read_history(PLAYBOOK, history).restarts == {"t": [10.0]}


LOOPED = parse_playbook("""\
apiVersion: noetl.io/v1
kind: Playbook
name: looped
tasks:
  - name: t
    loop: {over: [a, b, c, d]}
    steps:
      - {name: s, plugin: echo, with: {msg: "{{ item }}"}}
      - {name: u, plugin: fail, with: {until_attempt: 2}}
""")


def event(step_id: str, attempt: int, status: str, at: float, **fields: Any) -> dict[str, Any]:
    return {"subject": f"event.echo.wf-1.{step_id}", "schema_version": 1, "type": "event",
            "command_id": f"wf-1.{step_id}.{attempt}", "workflow_id": "wf-1",
            "step_id": step_id, "attempt": attempt, "status": status, "at": at, "worker": "w",
            **fields}


def test_a_takeover_does_not_run_the_finished_steps_of_iterations_again() -> None:
    history = [
        event("t/0=s", 1, "succeeded", 1.0, output={"msg": "a"}),
        event("t/0=u", 1, "failed", 1.5, error_type="PluginError", error_message="no"),
        lifecycle("exited", "t/0/u", 1.5), lifecycle("restarted", "t/0/u", 1.6),
        event("t/0=u", 2, "succeeded", 2.0, output={"attempt": 2}),
        event("t/1=s", 1, "succeeded", 2.0, output={"msg": "b"}),
        event("t/2=s", 1, "started", 2.5),  # in flight when the owner died
        event("x/0=s", 1, "succeeded", 2.5, output={}),  # not a step of this playbook
    ]
    state = read_history(LOOPED, history, claimed=[(("t/3", "s"), 1)])
    assert state.done == {("t/0", "s"): (1, {"msg": "a"}), ("t/0", "u"): (2, {"attempt": 2}),
                          ("t/1", "s"): (1, {"msg": "b"})}
    assert state.adopted == {("t/2", "s"): 1, ("t/3", "s"): 1}
    assert state.restarts == {"t/0": [1.6]}, "a step's restart counts in its iteration"
    assert state.counts()[("t/0", "u")] == 1, "its replayed attempt keeps its number"


def test_a_loop_restarted_by_its_workflow_forgets_every_iteration() -> None:
    history = [
        event("t/0=s", 1, "succeeded", 1.0, output={"msg": "a"}),
        event("t/1=s", 1, "succeeded", 1.0, output={"msg": "b"}),
        lifecycle("exited", "t", 2.0), lifecycle("restarted", "t", 2.0),
        event("t/1=s", 2, "succeeded", 3.0, output={"msg": "b"}),
    ]
    state = read_history(LOOPED, history)
    assert state.done == {("t/1", "s"): (2, {"msg": "b"})}
    assert state.restarts == {"": [2.0]}
