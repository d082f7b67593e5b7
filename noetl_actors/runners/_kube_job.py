"""One attempt -> one ``batch/v1`` Job: a pure function, and the names it is found by.

The Job runs the plugin's `image` with the entrypoint
(``python -m noetl_actors.runners.entry``, `ENTRY_COMMAND`) and hands it
the command in the ``NOETL_COMMAND`` variable (docs/kubernetes.md). It
never restarts on its own (``backoffLimit: 0``, ``restartPolicy: Never``):
restarts are the supervisor's, each a new attempt and so a new Job.

`job_name()` depends on the attempt alone (workflow, task, step, number),
so any node that takes a workflow over finds the Job again; the labels
(`job_labels()`) carry the same facts for a list by selector, each value
cut to the label syntax with a hash where it does not fit. The full
values are in annotations.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from typing import Any

from noetl_actors.runners._attempt import SCHEMA_VERSION, Attempt
from noetl_actors.runners._kube_settings import KubeSettings, valid_label_value
from noetl_actors.runners._manifest import PluginInfo

__all__ = [
    "COMMAND_ENV",
    "CONTAINER_NAME",
    "ENTRY_COMMAND",
    "KUBERNETES_VERSION",
    "LABEL_PREFIX",
    "NATS_URL_ENV",
    "build_job",
    "job_labels",
    "job_name",
    "label_value",
]

KUBERNETES_VERSION = "1.30"
"""The Kubernetes API the manifests are written for, and validated against in the tests."""
ENTRY_COMMAND = ("python", "-m", "noetl_actors.runners.entry")
COMMAND_ENV = "NOETL_COMMAND"
"""The variable that holds the entrypoint's command (JSON, see `entry`)."""
NATS_URL_ENV = "NOETL_NATS_URL"
NATS_KEY_DIR = "/var/run/noetl/nats"
"""Where a Job's pod finds its NATS key (`build_job`'s `nats_secret`)."""
"""The NATS server(s) the entrypoint sends a large result to."""
CONTAINER_NAME = "plugin"
LABEL_PREFIX = "noetl.io/"
MANAGED_BY = "noetl-actors"
_HASH = 10
_NOT_DNS = re.compile(r"[^a-z0-9]+")
_NOT_LABEL = re.compile(r"[^A-Za-z0-9_.-]+")


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:_HASH]


def _key(attempt: Attempt) -> str:
    """What identifies an attempt (not `command_id`, which a caller may choose)."""
    return json.dumps([attempt.workflow_id, attempt.task, attempt.step, attempt.number])


def job_name(attempt: Attempt) -> str:
    """The attempt's Job name: DNS-1123, at most 63 characters, stable across nodes.

    ``noetl-<workflow>-<task>-<step>-<n>`` lower-cased, with every run of other
    characters as one '-', cut to fit, then a hash of the attempt, so two
    attempts whose readable parts read alike still get two names.
    """
    readable = "-".join(_NOT_DNS.sub("-", part.lower()).strip("-") for part in (
        attempt.workflow_id, attempt.task, attempt.step, str(attempt.number)))
    readable = re.sub("-{2,}", "-", readable).strip("-")
    head = f"noetl-{readable}"[:63 - _HASH - 1].rstrip("-")
    return f"{head}-{_digest(_key(attempt))}"


def label_value(text: str) -> str:
    """`text` as a label value: itself if it is one, else its label characters cut to fit,
    then '-' and a hash of the whole text (so distinct texts stay distinct)."""
    if valid_label_value(text):
        return text
    clean = _NOT_LABEL.sub("-", text)[:63 - _HASH - 1]
    clean = re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", clean)
    return f"{clean}-{_digest(text)}" if clean else _digest(text)


def job_labels(attempt: Attempt, *, epoch: int) -> dict[str, str]:
    """The labels of the attempt's Job and pod: what a list by selector finds it by."""
    return {
        "app.kubernetes.io/managed-by": MANAGED_BY,
        f"{LABEL_PREFIX}workflow": label_value(attempt.workflow_id),
        f"{LABEL_PREFIX}task": label_value(attempt.task),
        f"{LABEL_PREFIX}step": label_value(attempt.step),
        f"{LABEL_PREFIX}attempt": str(attempt.number),
        f"{LABEL_PREFIX}epoch": str(epoch),
        f"{LABEL_PREFIX}plugin": label_value(attempt.plugin),
    }


def build_job(
    plugin: PluginInfo,
    attempt: Attempt,
    *,
    epoch: int,
    settings: KubeSettings,
    ttl_after_finished: float,
    nats_url: str,
    namespace: str | None = None,
    nats_secret: str = "",
) -> dict[str, Any]:
    """The ``batch/v1`` Job that runs `attempt` of `plugin` once.

    `settings` are the step's merged over the plugin's (`KubeSettings.over`);
    `epoch` is the owner's lease epoch, `ttl_after_finished` (seconds) how
    long Kubernetes keeps the finished Job (a node setting); `nats_secret` the Secret
    whose key ``seed`` the pod logs in to NATS with (mounted, named by ``NATS_NKEY``).

    Raises:
        ValueError: the plugin has no image, or does not support ``kubernetes``.
    """
    if "kubernetes" not in plugin.modes or not plugin.image:
        raise ValueError(f"plugin {plugin.name!r} cannot run as a Kubernetes Job "
                         f"(its modes: {', '.join(plugin.modes)}; image: {plugin.image})")
    labels = job_labels(attempt, epoch=epoch)
    command = {"schema_version": SCHEMA_VERSION, "plugin": plugin.name,
               "attempt": attempt.to_json()}
    env = [{"name": COMMAND_ENV, "value": json.dumps(command, separators=(",", ":"))},
           {"name": NATS_URL_ENV, "value": nats_url}]
    env += [{"name": name, "value": value} for name, value in sorted(settings.env.items())]
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": plugin.image,
        "command": list(ENTRY_COMMAND),
        "env": env,
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
    }
    if settings.resources:
        container["resources"] = {kind: dict(amounts)
                                  for kind, amounts in settings.resources.items()}
    pod: dict[str, Any] = {"restartPolicy": "Never", "containers": [container]}
    if nats_secret:
        env.append({"name": "NATS_NKEY", "value": f"{NATS_KEY_DIR}/seed"})
        container["volumeMounts"] = [{"name": "nats-key", "mountPath": NATS_KEY_DIR,
                                      "readOnly": True}]
        pod["volumes"] = [{"name": "nats-key", "secret": {
            "secretName": nats_secret, "items": [{"key": "seed", "path": "seed"}],
            "defaultMode": 0o400}}]
    if settings.service_account:
        pod["serviceAccountName"] = settings.service_account
    else:
        pod["automountServiceAccountToken"] = False  # a plugin needs no API access by default
    if settings.node_selector:
        pod["nodeSelector"] = dict(settings.node_selector)
    if settings.tolerations:
        pod["tolerations"] = [dict(t) for t in settings.tolerations]
    metadata: dict[str, Any] = {
        "name": job_name(attempt),
        "labels": labels,
        "annotations": {
            f"{LABEL_PREFIX}workflow-id": attempt.workflow_id,
            f"{LABEL_PREFIX}task-name": attempt.task,
            f"{LABEL_PREFIX}step-name": attempt.step,
            f"{LABEL_PREFIX}command-id": attempt.command_id,
        },
    }
    if namespace:
        metadata["namespace"] = namespace
    spec: dict[str, Any] = {
        "backoffLimit": 0,
        "ttlSecondsAfterFinished": max(0, math.ceil(ttl_after_finished)),
        "template": {"metadata": {"labels": dict(labels)}, "spec": pod},
    }
    if attempt.timeout is not None:
        spec["activeDeadlineSeconds"] = max(1, math.ceil(attempt.timeout))
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata, "spec": spec}
