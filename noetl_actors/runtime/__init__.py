"""The runtime: workflow, task and step actors that execute playbooks.

A workflow is a supervisor of tasks, a task a supervisor of its steps (one
at a time), a step an actor that runs one plugin attempt. All of it is the
supervision kernel's code; `noetl preview` runs the very same classes with
a simulated clock and simulated plugins.
"""

from noetl_actors.runtime._step import StepActor as StepActor
from noetl_actors.runtime._step import StepFactory as StepFactory
from noetl_actors.errors import StepFailed as StepFailed
from noetl_actors.runtime._step import StepRunner as StepRunner
from noetl_actors.errors import StepTimeout as StepTimeout
from noetl_actors.runtime._step import local_steps as local_steps
from noetl_actors.runtime._task import TaskSupervisor as TaskSupervisor
from noetl_actors.runtime._workflow import WorkflowSupervisor as WorkflowSupervisor
from noetl_actors.runtime._workflow import new_workflow_id as new_workflow_id

__all__ = [
    "StepActor",
    "StepFactory",
    "StepFailed",
    "StepRunner",
    "StepTimeout",
    "TaskSupervisor",
    "WorkflowSupervisor",
    "local_steps",
    "new_workflow_id",
]
