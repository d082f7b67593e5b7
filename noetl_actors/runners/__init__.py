"""Runners: where a step's plugin executes (docs/plugins.md).

`find_plugin()` reads a plugin's manifest from the plugin path; a runner's
``start(plugin, attempt)`` returns a `RunningAttempt` that ends in one
`Outcome`. `InprocRunner` uses a thread pool (cooperative cancel), and
one event loop for async plugins (sleep: no thread per waiting attempt),
`ProcessRunner` a subprocess per attempt (SIGTERM, then SIGKILL); a
Kubernetes Job runner is the next implementation of the same `Runner`
protocol. Plugins raise `PluginError` for a failure of a named type.
"""

from noetl_actors.errors import Cancelled as Cancelled
from noetl_actors.errors import ManifestError as ManifestError
from noetl_actors.errors import PluginError as PluginError
from noetl_actors.errors import PluginNotFound as PluginNotFound
from noetl_actors.runners._attempt import CANCELLED as CANCELLED
from noetl_actors.runners._attempt import CRASH as CRASH
from noetl_actors.runners._attempt import INPUT_ERROR as INPUT_ERROR
from noetl_actors.runners._attempt import OUTPUT_ERROR as OUTPUT_ERROR
from noetl_actors.runners._attempt import TIMEOUT as TIMEOUT
from noetl_actors.runners._attempt import Attempt as Attempt
from noetl_actors.runners._attempt import Outcome as Outcome
from noetl_actors.runners._attempt import Status as Status
from noetl_actors.runners._context import Context as Context
from noetl_actors.runners._discovery import PLUGIN_PATH_ENV as PLUGIN_PATH_ENV
from noetl_actors.runners._discovery import find_plugin as find_plugin
from noetl_actors.runners._discovery import find_plugins as find_plugins
from noetl_actors.runners._discovery import installed_plugins_dir as installed_plugins_dir
from noetl_actors.runners._discovery import plugin_path as plugin_path
from noetl_actors.runners._inproc import InprocAttempt as InprocAttempt
from noetl_actors.runners._inproc import InprocRunner as InprocRunner
from noetl_actors.runners._manifest import MODES as MODES
from noetl_actors.runners._manifest import PluginInfo as PluginInfo
from noetl_actors.runners._manifest import read_manifest as read_manifest
from noetl_actors.runners._process import ProcessAttempt as ProcessAttempt
from noetl_actors.runners._process import ProcessRunner as ProcessRunner
from noetl_actors.runners._protocol import InstantRunner as InstantRunner
from noetl_actors.runners._protocol import Runner as Runner
from noetl_actors.runners._protocol import RunnerStatistics as RunnerStatistics
from noetl_actors.runners._protocol import RunningAttempt as RunningAttempt

__all__ = [
    "CANCELLED",
    "CRASH",
    "INPUT_ERROR",
    "MODES",
    "OUTPUT_ERROR",
    "PLUGIN_PATH_ENV",
    "TIMEOUT",
    "Attempt",
    "Cancelled",
    "Context",
    "InprocAttempt",
    "InprocRunner",
    "InstantRunner",
    "ManifestError",
    "Outcome",
    "PluginError",
    "PluginInfo",
    "PluginNotFound",
    "ProcessAttempt",
    "ProcessRunner",
    "Runner",
    "RunnerStatistics",
    "RunningAttempt",
    "Status",
    "find_plugin",
    "find_plugins",
    "installed_plugins_dir",
    "plugin_path",
    "read_manifest",
]
