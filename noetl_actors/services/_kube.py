"""The node's Kubernetes runner, made from its `kubernetes:` settings (`KubeConfig`).

`kube_runner()` loads the cluster's address and credentials (in-cluster, or
a kubeconfig file and its current context), makes the ``ApiClient`` and a
`KubernetesRunner` that owns it: the node closes the runner at its stop, and
the runner closes the client (its connection pool) after its last attempt.
The ``kubernetes`` package is imported only here and in the runner, so a
node without Kubernetes never loads it.
"""

from __future__ import annotations

import os
from pathlib import Path

from noetl_actors.errors import KubeConfigError
from noetl_actors.runners import KubernetesRunner, OutputSink
from noetl_actors.services._node_config import IN_CLUSTER, KubeConfig

__all__ = ["NOT_ENABLED", "kube_runner"]

SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
"""Where a pod reads its own namespace."""
NOT_ENABLED = ("this node runs no Kubernetes Jobs: set `kubernetes: {enabled: true}` in its "
               "node configuration (noetl node start --config FILE, or noetl worker --config "
               "FILE; docs/kubernetes.md)")
"""Why a `runner: kubernetes` attempt fails on a node without the runner."""


def kube_runner(config: KubeConfig, *, nats_url: str,
                output: OutputSink | None = None) -> KubernetesRunner:
    """The runner of `config` (which must be enabled), for Jobs whose pods send large
    results to `nats_url`; their pods' logs go to `output`.

    Raises:
        KubeConfigError: the cluster cannot be reached as configured (no kubeconfig, a
            bad one, no service account in-cluster); the message names the setting.
    """
    from kubernetes import client
    from kubernetes import config as kube_config

    configuration = client.Configuration()
    namespace = config.namespace
    try:
        if config.kubeconfig == IN_CLUSTER:
            kube_config.load_incluster_config(  # type: ignore[no-untyped-call]
                client_configuration=configuration)
            if not namespace:
                namespace = SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
        else:
            path = os.path.expanduser(config.kubeconfig) if config.kubeconfig else None
            kube_config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=path, client_configuration=configuration, persist_config=False)
            if not namespace:
                _contexts, active = kube_config.list_kube_config_contexts(  # type: ignore[no-untyped-call]
                    config_file=path)
                namespace = (active.get("context") or {}).get("namespace") or "default"
    except (kube_config.ConfigException, OSError, ValueError, TypeError) as error:
        where = "in-cluster" if config.kubeconfig == IN_CLUSTER else \
            (config.kubeconfig or "$KUBECONFIG or ~/.kube/config")
        raise KubeConfigError(f"kubernetes.kubeconfig ({where}): cannot use it: "
                              f"{error}") from None
    return KubernetesRunner(
        client.ApiClient(configuration), namespace=namespace, nats_url=nats_url,
        ttl_after_finished=config.job_ttl, unschedulable_after=config.unschedulable_after,
        image_pull_after=config.image_pull_after,
        container_error_after=config.container_error_after, owns_client=True, output=output,
        nats_secret=config.nats_secret)
