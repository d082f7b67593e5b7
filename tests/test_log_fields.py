"""The fields of a log line about a workflow (`log_fields`, `path_fields`, `command_fields`)."""

from __future__ import annotations

import pytest

from noetl_actors.runtime import Command, command_fields, log_fields, path_fields


@pytest.mark.parametrize(("path", "fields"), [
    ("/alpha/bridge", {}),
    ("/alpha/workers/shell", {}),
    ("/alpha/workflows", {}),
    ("/alpha/workflows/wf-1", {"workflow_id": "wf-1"}),
    ("/alpha/workflows/wf-1/load", {"workflow_id": "wf-1", "task": "load"}),
    ("/alpha/workflows/wf-1/load/insert",
     {"workflow_id": "wf-1", "task": "load", "step": "insert"}),
    ("/alpha/workflows/wf-1/check/2", {"workflow_id": "wf-1", "task": "check/2"}),
    ("/alpha/workflows/wf-1/check/2/count",
     {"workflow_id": "wf-1", "task": "check/2", "step": "count"}),
])
def test_an_actors_path_tells_its_workflow_task_and_step(path: str, fields: dict[str, str]
                                                         ) -> None:
    assert path_fields(path) == fields


def test_fields_not_known_are_left_out() -> None:
    assert log_fields("wf-1") == {"workflow_id": "wf-1"}
    assert log_fields("wf-1", step="s", attempt=2, epoch=3) == {
        "workflow_id": "wf-1", "step": "s", "attempt": 2, "epoch": 3}


def test_an_attempts_fields_leave_out_epoch_0_which_no_lease_fences() -> None:
    command = Command(workflow_id="wf-1", task="t", step="s", attempt=2, plugin="echo",
                      input={})
    assert command_fields(command) == {"workflow_id": "wf-1", "task": "t", "step": "s",
                                       "attempt": 2}
    assert command_fields(Command(workflow_id="wf-1", task="t", step="s", attempt=2,
                                  plugin="echo", input={}, epoch=4))["epoch"] == 4
