"""The playbook language: model, loader, templating, preview (docs/playbooks.md).

Pure: nothing here talks to NATS or runs a plugin. The runtime executes
what `load_playbook()` returns.
"""

from noetl_actors.playbook._catalog import Catalog as Catalog
from noetl_actors.playbook._catalog import PluginInfo as PluginInfo
from noetl_actors.playbook._durations import format_duration as format_duration
from noetl_actors.playbook._durations import parse_duration as parse_duration
from noetl_actors.playbook._lint import lint as lint
from noetl_actors.playbook._loader import load_playbook as load_playbook
from noetl_actors.playbook._loader import parse_playbook as parse_playbook
from noetl_actors.playbook._model import API_VERSION as API_VERSION
from noetl_actors.playbook._model import TASK_DEFAULT as TASK_DEFAULT
from noetl_actors.playbook._model import WORKFLOW_DEFAULT as WORKFLOW_DEFAULT
from noetl_actors.playbook._model import ErrorAction as ErrorAction
from noetl_actors.playbook._model import Playbook as Playbook
from noetl_actors.playbook._model import Runner as Runner
from noetl_actors.playbook._model import Step as Step
from noetl_actors.playbook._model import Task as Task
from noetl_actors.playbook._schema import playbook_schema as playbook_schema
from noetl_actors.playbook._source import Problem as Problem
from noetl_actors.playbook._templates import render_value as render_value

__all__ = [
    "API_VERSION",
    "TASK_DEFAULT",
    "WORKFLOW_DEFAULT",
    "Catalog",
    "ErrorAction",
    "Playbook",
    "PluginInfo",
    "Problem",
    "Runner",
    "Step",
    "Task",
    "format_duration",
    "lint",
    "load_playbook",
    "parse_duration",
    "parse_playbook",
    "playbook_schema",
    "render_value",
]
