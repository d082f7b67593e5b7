"""The node's services: plugin workers and the node that runs workflows."""

from noetl_actors.services._node import EVENTS_STREAM as EVENTS_STREAM
from noetl_actors.services._node import Node as Node
from noetl_actors.services._node import WorkflowRun as WorkflowRun
from noetl_actors.services._worker import BucketClaims as BucketClaims
from noetl_actors.services._worker import Claims as Claims
from noetl_actors.services._worker import LocalClaims as LocalClaims
from noetl_actors.services._worker import PluginWorker as PluginWorker

__all__ = [
    "EVENTS_STREAM",
    "BucketClaims",
    "Claims",
    "LocalClaims",
    "Node",
    "PluginWorker",
    "WorkflowRun",
]
