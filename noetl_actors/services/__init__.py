"""The node's services: plugin workers and the node that runs workflows.

Also the command API's vocabulary (its subjects and buckets, `_protocol`),
which the client (`noetl_actors.client`) speaks too.

Lazy, by a module-level ``__getattr__``: ``from noetl_actors.services import
api_subject`` loads the few lines of the protocol, not the whole node
(bridge, runtime, runners, pykka). The client and the CLI import names
from here for that reason; moving the protocol to a package of its own
would only split one vocabulary in two places.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from noetl_actors._lazy import lazy_exports

if TYPE_CHECKING:
    from noetl_actors.services._claims import BucketClaims as BucketClaims
    from noetl_actors.services._claims import Claims as Claims
    from noetl_actors.services._claims import LocalClaims as LocalClaims
    from noetl_actors.services._health import HealthServer as HealthServer
    from noetl_actors.services._health import serve_health as serve_health
    from noetl_actors.services._lifecycle_log import LifecycleLog as LifecycleLog
    from noetl_actors.services._logs import LOGS_STREAM as LOGS_STREAM
    from noetl_actors.services._logs import LogPublisher as LogPublisher
    from noetl_actors.services._logs import log_subject as log_subject
    from noetl_actors.services._logs import logs_filter as logs_filter
    from noetl_actors.services._metrics import MetricsServer as MetricsServer
    from noetl_actors.services._metrics import NodeMetrics as NodeMetrics
    from noetl_actors.services._metrics import serve_metrics as serve_metrics
    from noetl_actors.services._node import EVENTS_STREAM as EVENTS_STREAM
    from noetl_actors.services._node import Node as Node
    from noetl_actors.services._node import WorkflowRun as WorkflowRun
    from noetl_actors.services._node_config import MetricsConfig as MetricsConfig
    from noetl_actors.services._node_config import NodeConfig as NodeConfig
    from noetl_actors.services._node_config import load_node_config as load_node_config
    from noetl_actors.services._protocol import actor_subject as actor_subject
    from noetl_actors.services._protocol import api_subject as api_subject
    from noetl_actors.services._protocol import node_subject as node_subject
    from noetl_actors.services._worker import PluginWorker as PluginWorker

_WHERE = {
    "EVENTS_STREAM": "_node",
    "LOGS_STREAM": "_logs",
    "LogPublisher": "_logs",
    "log_subject": "_logs",
    "logs_filter": "_logs",
    "HealthServer": "_health",
    "serve_health": "_health",
    "LifecycleLog": "_lifecycle_log",
    "MetricsServer": "_metrics",
    "NodeMetrics": "_metrics",
    "serve_metrics": "_metrics",
    "MetricsConfig": "_node_config",
    "Node": "_node",
    "WorkflowRun": "_node",
    "NodeConfig": "_node_config",
    "load_node_config": "_node_config",
    "actor_subject": "_protocol",
    "api_subject": "_protocol",
    "node_subject": "_protocol",
    "BucketClaims": "_claims",
    "Claims": "_claims",
    "LocalClaims": "_claims",
    "PluginWorker": "_worker",
}

__all__ = [
    "EVENTS_STREAM",
    "LOGS_STREAM",
    "BucketClaims",
    "Claims",
    "HealthServer",
    "LifecycleLog",
    "LocalClaims",
    "LogPublisher",
    "MetricsConfig",
    "MetricsServer",
    "Node",
    "NodeConfig",
    "NodeMetrics",
    "PluginWorker",
    "WorkflowRun",
    "actor_subject",
    "api_subject",
    "load_node_config",
    "log_subject",
    "logs_filter",
    "node_subject",
    "serve_health",
    "serve_metrics",
]


__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
