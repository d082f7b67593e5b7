"""The runners a node's workers run attempts with, made from its configuration."""

from __future__ import annotations

from noetl_actors.runners import InprocRunner, ProcessRunner, Runner
from noetl_actors.services._kube import kube_runner
from noetl_actors.services._node_config import NodeConfig
from noetl_actors.supervision import Clock

__all__ = ["node_runners"]


def node_runners(config: NodeConfig, *, clock: Clock, nats_url: str) -> dict[str, Runner]:
    """``inproc`` and ``process``, and ``kubernetes`` if the config enables it (its Jobs'
    pods send large results to `nats_url`). The caller closes each (`Runner.close`).

    Raises:
        KubeConfigError: Kubernetes is enabled, but its cluster cannot be used.
    """
    runners: dict[str, Runner] = {"inproc": InprocRunner(clock=clock), "process": ProcessRunner()}
    if config.kubernetes.enabled:
        runners["kubernetes"] = kube_runner(config.kubernetes, nats_url=nats_url)
    return runners
