"""The runtime: workflow, task and step actors that execute playbooks.

A workflow is a supervisor of tasks, a task a supervisor of its steps (one
at a time), a step an actor that runs one plugin attempt. All of it is the
supervision kernel's code; `noetl preview` (`run_preview`) runs the very
same classes with a simulated clock and simulated plugins.

Also here: what workers and steps say to each other on NATS (`Command`,
`Event`, `Cancel`), the steps whose attempts run on those workers
(`remote_steps`), and a workflow's state as it runs (`RunReport`), which
the node keeps in its records and the console renders.
"""

from noetl_actors.errors import StepFailed as StepFailed
from noetl_actors.errors import StepTimeout as StepTimeout
from noetl_actors.runtime._log_fields import LOG_FIELDS as LOG_FIELDS
from noetl_actors.runtime._log_fields import command_fields as command_fields
from noetl_actors.runtime._log_fields import log_fields as log_fields
from noetl_actors.runtime._log_fields import path_fields as path_fields
from noetl_actors.runtime._messages import STEP_ID_SEPARATOR as STEP_ID_SEPARATOR
from noetl_actors.runtime._messages import Cancel as Cancel
from noetl_actors.runtime._messages import Command as Command
from noetl_actors.runtime._messages import Event as Event
from noetl_actors.runtime._messages import EventStatus as EventStatus
from noetl_actors.runtime._messages import cancel_subject as cancel_subject
from noetl_actors.runtime._messages import ready_subject as ready_subject
from noetl_actors.runtime._preview import FAILS_ALWAYS as FAILS_ALWAYS
from noetl_actors.runtime._preview import PreviewLine as PreviewLine
from noetl_actors.runtime._preview import PreviewResult as PreviewResult
from noetl_actors.runtime._preview import parse_failure as parse_failure
from noetl_actors.runtime._preview import run_preview as run_preview
from noetl_actors.runtime._remote import remote_steps as remote_steps
from noetl_actors.runtime._report import RunReport as RunReport
from noetl_actors.runtime._resume import JOURNAL as JOURNAL
from noetl_actors.runtime._resume import MOVED as MOVED
from noetl_actors.runtime._resume import Journal as Journal
from noetl_actors.runtime._resume import ResumeState as ResumeState
from noetl_actors.runtime._resume import read_history as read_history
from noetl_actors.runtime._router import EventRouter as EventRouter
from noetl_actors.runtime._router import subscribe_router as subscribe_router
from noetl_actors.runtime._skip import is_skip as is_skip
from noetl_actors.runtime._step import UNFENCED as UNFENCED
from noetl_actors.runtime._step import Fence as Fence
from noetl_actors.runtime._step import StepActor as StepActor
from noetl_actors.runtime._step import StepAttempt as StepAttempt
from noetl_actors.runtime._step import StepFactory as StepFactory
from noetl_actors.runtime._step import StepRunner as StepRunner
from noetl_actors.runtime._step import local_steps as local_steps
from noetl_actors.runtime._task import TaskSupervisor as TaskSupervisor
from noetl_actors.runtime._waiting import DEFAULT_WORKER_WAIT as DEFAULT_WORKER_WAIT
from noetl_actors.runtime._waiting import WaitingSteps as WaitingSteps
from noetl_actors.runtime._workflow import WorkflowSupervisor as WorkflowSupervisor
from noetl_actors.runtime._workflow import new_workflow_id as new_workflow_id

__all__ = [
    "DEFAULT_WORKER_WAIT",
    "FAILS_ALWAYS",
    "JOURNAL",
    "LOG_FIELDS",
    "MOVED",
    "STEP_ID_SEPARATOR",
    "UNFENCED",
    "Cancel",
    "Command",
    "Event",
    "EventRouter",
    "EventStatus",
    "Fence",
    "Journal",
    "PreviewLine",
    "PreviewResult",
    "ResumeState",
    "RunReport",
    "StepActor",
    "StepAttempt",
    "StepFactory",
    "StepFailed",
    "StepRunner",
    "StepTimeout",
    "TaskSupervisor",
    "WaitingSteps",
    "WorkflowSupervisor",
    "cancel_subject",
    "command_fields",
    "is_skip",
    "local_steps",
    "log_fields",
    "new_workflow_id",
    "parse_failure",
    "path_fields",
    "read_history",
    "ready_subject",
    "remote_steps",
    "run_preview",
    "subscribe_router",
]
