"""The runners a node's workers run attempts with, made from its configuration."""

from __future__ import annotations

from noetl_actors.bridge import Bridge
from noetl_actors.runners import InprocRunner, ProcessRunner, Runner
from noetl_actors.services._kube import kube_runner
from noetl_actors.services._logs import LogPublisher
from noetl_actors.services._node_config import NodeConfig
from noetl_actors.supervision import Clock

__all__ = ["node_runners"]


def node_runners(config: NodeConfig, bridge: Bridge, *, clock: Clock,
                 shared: bool) -> dict[str, Runner]:
    """``inproc`` and ``process``, and ``kubernetes`` if the config enables it (its Jobs'
    pods send large results to the bridge's first NATS address). The caller closes each
    (`Runner.close`).

    On a `shared` NATS (a served node, a `noetl worker`) what plugins print, and Jobs'
    pod logs, are published on `bridge` as steps' output lines (`LogPublisher`, `noetl
    logs`); alone on its private NATS (`noetl run`) plugins print to the terminal.

    Raises:
        KubeConfigError: Kubernetes is enabled, but its cluster cannot be used.
    """
    lines = LogPublisher(bridge.publish, clock) if shared else None
    runners: dict[str, Runner] = {"inproc": InprocRunner(clock=clock, output=lines),
                                  "process": ProcessRunner(output=lines)}
    if config.kubernetes.enabled:
        runners["kubernetes"] = kube_runner(config.kubernetes, nats_url=bridge.options.servers[0],
                                            output=lines)
    return runners
