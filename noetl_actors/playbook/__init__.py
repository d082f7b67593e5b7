"""The playbook language: model, loader, templating, lint (docs/playbooks.md).

The preview, which runs the runtime's actors on a simulated clock, is
`noetl_actors.runtime`'s: the runtime imports the playbook, never the
other way round.

Pure: nothing here talks to NATS or runs a plugin. The runtime executes
what `load_playbook()` returns. `YamlReader`, `parse_yaml` and the name
helpers also serve the node's own configuration (`noetl_actors.services`).
"""

from noetl_actors.playbook._catalog import Catalog as Catalog
from noetl_actors.playbook._catalog import PluginInfo as PluginInfo
from noetl_actors.playbook._catalog import project_dir as project_dir
from noetl_actors.playbook._durations import format_duration as format_duration
from noetl_actors.playbook._durations import parse_duration as parse_duration
from noetl_actors.playbook._lint import lint as lint
from noetl_actors.playbook._loader import load_playbook as load_playbook
from noetl_actors.playbook._loader import parse_playbook as parse_playbook
from noetl_actors.playbook._model import API_VERSION as API_VERSION
from noetl_actors.playbook._model import MAX_ITEMS_DEFAULT as MAX_ITEMS_DEFAULT
from noetl_actors.playbook._model import TASK_DEFAULT as TASK_DEFAULT
from noetl_actors.playbook._model import WORKFLOW_DEFAULT as WORKFLOW_DEFAULT
from noetl_actors.playbook._model import ErrorAction as ErrorAction
from noetl_actors.playbook._model import Loop as Loop
from noetl_actors.playbook._model import Playbook as Playbook
from noetl_actors.playbook._model import Route as Route
from noetl_actors.playbook._model import Runner as Runner
from noetl_actors.playbook._model import Step as Step
from noetl_actors.playbook._model import Task as Task
from noetl_actors.playbook._names import NAME_PATTERN as NAME_PATTERN
from noetl_actors.playbook._names import did_you_mean as did_you_mean
from noetl_actors.playbook._names import is_name as is_name
from noetl_actors.playbook._names import to_name as to_name
from noetl_actors.playbook._reader import YamlReader as YamlReader
from noetl_actors.playbook._reader import described as described
from noetl_actors.playbook._reader import show as show
from noetl_actors.playbook._sandbox import TemplateLimits as TemplateLimits
from noetl_actors.playbook._schema import playbook_schema as playbook_schema
from noetl_actors.playbook._source import Located as Located
from noetl_actors.playbook._source import Problem as Problem
from noetl_actors.playbook._source import parse_yaml as parse_yaml
from noetl_actors.playbook._templates import LOOP_INDEX as LOOP_INDEX
from noetl_actors.playbook._templates import condition_holds as condition_holds
from noetl_actors.playbook._templates import condition_source as condition_source
from noetl_actors.playbook._templates import render_value as render_value

__all__ = [
    "API_VERSION",
    "LOOP_INDEX",
    "MAX_ITEMS_DEFAULT",
    "NAME_PATTERN",
    "TASK_DEFAULT",
    "WORKFLOW_DEFAULT",
    "Catalog",
    "ErrorAction",
    "Located",
    "Loop",
    "Playbook",
    "PluginInfo",
    "Problem",
    "Route",
    "Runner",
    "Step",
    "Task",
    "TemplateLimits",
    "YamlReader",
    "condition_holds",
    "condition_source",
    "described",
    "did_you_mean",
    "format_duration",
    "is_name",
    "lint",
    "load_playbook",
    "parse_duration",
    "parse_playbook",
    "parse_yaml",
    "playbook_schema",
    "project_dir",
    "render_value",
    "show",
    "to_name",
]
