"""A service plugin -> one ``apps/v1`` Deployment of its workers: a pure function.

A plugin with ``mode: service`` in its ``plugin.yaml`` runs as long-lived
workers in its own image, ``noetl worker --plugin NAME``: each pod joins
the plugin's queue group (``workers-<plugin>``) on ``command.<plugin>.>``,
so NATS gives each command to one of them, and nodes run no worker for it.
Scaling the plugin is scaling the Deployment (`replicas`, or a
HorizontalPodAutoscaler). Its pods carry ``app.kubernetes.io/managed-by:
noetl-actors`` like the Jobs' pods, so the network policy that lets plugin
pods reach NATS lets them too. Resources, env, service account and
placement come from the plugin's ``kubernetes:`` settings, as a Job's do.
"""

from __future__ import annotations

import re
from typing import Any

from noetl_actors.runners._kube_job import CONTAINER_NAME, LABEL_PREFIX, MANAGED_BY, label_value
from noetl_actors.runners._kube_settings import KubeSettings
from noetl_actors.runners._manifest import PluginInfo

__all__ = ["WORKER_COMMAND", "build_deployment", "deployment_name"]

WORKER_COMMAND = ("noetl", "worker")
"""The service's command, before ``--plugin NAME``; NATS comes from ``NATS_URL``."""
_NOT_DNS = re.compile(r"[^a-z0-9]+")


def deployment_name(plugin: str) -> str:
    """``noetl-plugin-<name>``: DNS-1123, lower-cased, other characters as '-'."""
    return f"noetl-plugin-{_NOT_DNS.sub('-', plugin.lower()).strip('-')}"[:63].rstrip("-")


def build_deployment(plugin: PluginInfo, *, nats_url: str, replicas: int = 1,
                     settings: KubeSettings | None = None,
                     namespace: str | None = None) -> dict[str, Any]:
    """The Deployment of `replicas` workers of service plugin `plugin`, on `nats_url`.

    `settings` (an overlay's, say) are laid over the plugin's own
    `kubernetes:` settings, as a step's are over a Job's.

    Raises:
        ValueError: the plugin is not a service (``mode: service``), or `replicas` < 0.
    """
    if not plugin.service or not plugin.image:
        raise ValueError(f"plugin {plugin.name!r} is not a service plugin (mode: service, "
                         f"with an image); its mode is {plugin.mode!r}")
    if replicas < 0:
        raise ValueError(f"replicas must be >= 0 (got {replicas})")
    merged = (settings or KubeSettings()).over(plugin.kubernetes)
    name = deployment_name(plugin.name)
    selector = {"app.kubernetes.io/name": name,
                f"{LABEL_PREFIX}plugin": label_value(plugin.name)}
    labels = {**selector, "app.kubernetes.io/component": "service-plugin",
              "app.kubernetes.io/managed-by": MANAGED_BY}
    env = [{"name": "NATS_URL", "value": nats_url}]
    env += [{"name": key, "value": value} for key, value in sorted(merged.env.items())]
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": plugin.image,
        "command": [*WORKER_COMMAND, "--plugin", plugin.name],
        "env": env,
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    if merged.resources:
        container["resources"] = {kind: dict(amounts)
                                  for kind, amounts in merged.resources.items()}
    pod: dict[str, Any] = {
        "terminationGracePeriodSeconds": 30,  # a worker cancels what runs and says so
        "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001},
        "containers": [container],
        "volumes": [{"name": "tmp", "emptyDir": {}}],
    }
    if merged.service_account:
        pod["serviceAccountName"] = merged.service_account
    else:
        pod["automountServiceAccountToken"] = False
    if merged.node_selector:
        pod["nodeSelector"] = dict(merged.node_selector)
    if merged.tolerations:
        pod["tolerations"] = [dict(t) for t in merged.tolerations]
    metadata: dict[str, Any] = {"name": name, "labels": labels}
    if namespace:
        metadata["namespace"] = namespace
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata,
        "spec": {"replicas": replicas, "selector": {"matchLabels": selector},
                 "template": {"metadata": {"labels": dict(labels)}, "spec": pod}},
    }
