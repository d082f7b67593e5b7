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
