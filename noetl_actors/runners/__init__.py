"""Runners: where a step's plugin executes (docs/plugins.md).

`find_plugin()` reads a plugin's manifest from the plugin path; a runner's
``start(plugin, attempt)`` returns a `RunningAttempt` that ends in one
`Outcome`. `InprocRunner` uses a thread pool (cooperative cancel), and
one event loop for async plugins (sleep: no thread per waiting attempt),
`ProcessRunner` a subprocess per attempt (SIGTERM, then SIGKILL). For
Kubernetes, `build_job()` makes an attempt's ``batch/v1`` Job (the runner
that creates and watches it through the API is next; docs/kubernetes.md),
and ``python -m noetl_actors.runners.entry`` is the entrypoint its pod runs;
`build_deployment()` makes the Deployment of a service plugin's workers.
Plugins raise `PluginError` for a failure of a named type.
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
from noetl_actors.runners._kube_job import COMMAND_ENV as COMMAND_ENV
from noetl_actors.runners._kube_job import ENTRY_COMMAND as ENTRY_COMMAND
from noetl_actors.runners._kube_job import KUBERNETES_VERSION as KUBERNETES_VERSION
from noetl_actors.runners._kube_job import NATS_URL_ENV as NATS_URL_ENV
from noetl_actors.runners._kube_job import build_job as build_job
from noetl_actors.runners._kube_job import job_labels as job_labels
from noetl_actors.runners._kube_job import job_name as job_name
from noetl_actors.runners._kube_job import label_value as label_value
from noetl_actors.runners._kube_runner import KubernetesAttempt as KubernetesAttempt
from noetl_actors.runners._kube_runner import KubernetesRunner as KubernetesRunner
from noetl_actors.runners._kube_service import build_deployment as build_deployment
from noetl_actors.runners._kube_service import deployment_name as deployment_name
from noetl_actors.runners._kube_settings import KUBERNETES_KEYS as KUBERNETES_KEYS
from noetl_actors.runners._kube_settings import KubeSettings as KubeSettings
from noetl_actors.runners._kube_settings import kube_problems as kube_problems
from noetl_actors.runners._manifest import MODES as MODES
from noetl_actors.runners._manifest import PLUGIN_MODES as PLUGIN_MODES
from noetl_actors.runners._manifest import PluginInfo as PluginInfo
from noetl_actors.runners._manifest import read_manifest as read_manifest
from noetl_actors.runners._output import OutputSink as OutputSink
from noetl_actors.runners._process import ProcessAttempt as ProcessAttempt
from noetl_actors.runners._process import ProcessRunner as ProcessRunner
from noetl_actors.runners._protocol import InstantRunner as InstantRunner
from noetl_actors.runners._protocol import Runner as Runner
from noetl_actors.runners._protocol import RunnerStatistics as RunnerStatistics
from noetl_actors.runners._protocol import RunningAttempt as RunningAttempt
from noetl_actors.runners._results import RESULTS_BUCKET as RESULTS_BUCKET
from noetl_actors.runners._results import TERMINATION_LIMIT as TERMINATION_LIMIT
from noetl_actors.runners._results import read_result as read_result

__all__ = [
    "CANCELLED",
    "COMMAND_ENV",
    "CRASH",
    "ENTRY_COMMAND",
    "INPUT_ERROR",
    "KUBERNETES_KEYS",
    "KUBERNETES_VERSION",
    "MODES",
    "NATS_URL_ENV",
    "OUTPUT_ERROR",
    "PLUGIN_MODES",
    "PLUGIN_PATH_ENV",
    "RESULTS_BUCKET",
    "TERMINATION_LIMIT",
    "TIMEOUT",
    "Attempt",
    "Cancelled",
    "Context",
    "InprocAttempt",
    "InprocRunner",
    "InstantRunner",
    "KubeSettings",
    "KubernetesAttempt",
    "KubernetesRunner",
    "ManifestError",
    "Outcome",
    "OutputSink",
    "PluginError",
    "PluginInfo",
    "PluginNotFound",
    "ProcessAttempt",
    "ProcessRunner",
    "Runner",
    "RunnerStatistics",
    "RunningAttempt",
    "Status",
    "build_deployment",
    "build_job",
    "deployment_name",
    "find_plugin",
    "find_plugins",
    "installed_plugins_dir",
    "job_labels",
    "job_name",
    "kube_problems",
    "label_value",
    "plugin_path",
    "read_manifest",
    "read_result",
]
