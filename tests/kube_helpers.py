"""Checks of Kubernetes objects without a cluster: the schema, and what only a server checks.

`kubernetes-validate` checks an object against the OpenAPI schema of the
pinned Kubernetes version (`KUBERNETES_VERSION`), strictly (no unknown
fields). The API server checks more than its schema says; `server_problems`
adds the rules our objects could break: names (DNS-1123), label keys and
values (syntax, 63 characters), and a Job's pod `restartPolicy`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import kubernetes_validate

from noetl_actors.runners import KUBERNETES_VERSION

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def validate(obj: dict[str, Any]) -> None:
    """Raise kubernetes_validate.ValidationError if the pinned schema refuses `obj`."""
    kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def label_problems(labels: dict[str, str], where: str) -> list[str]:
    problems = []
    for key, value in labels.items():
        prefix, _, name = key.rpartition("/")
        if prefix and (len(prefix) > 253 or not DNS_SUBDOMAIN.match(prefix)):
            problems.append(f"{where}: label key prefix {prefix!r}")
        if len(name) > 63 or not LABEL_NAME.match(name):
            problems.append(f"{where}: label key {key!r}")
        if not isinstance(value, str) or len(value) > 63 or not LABEL_VALUE.match(value):
            problems.append(f"{where}: label value {value!r} of {key!r}")
    return problems


def server_problems(obj: dict[str, Any]) -> list[str]:
    """What an API server would refuse in `obj` beyond its schema (the rules we can break)."""
    kind = obj.get("kind")
    meta = obj.get("metadata", {})
    name = meta.get("name", "")
    problems = []
    # Jobs, Services, Namespaces and pods' containers use DNS-1123 labels (63); the
    # rest DNS-1123 subdomains (253). A Job's name also becomes a label value.
    limit, pattern = (63, DNS_LABEL) if kind in ("Job", "Service", "Namespace",
                                                 "StatefulSet") else (253, DNS_SUBDOMAIN)
    if not name or len(name) > limit or not pattern.match(name):
        problems.append(f"{kind} name {name!r} is not a DNS-1123 name of <= {limit}")
    problems += label_problems(meta.get("labels", {}), f"{kind} {name}")
    template = obj.get("spec", {}).get("template")
    if template is not None:
        problems += label_problems(template.get("metadata", {}).get("labels", {}),
                                   f"{kind} {name} pod template")
        policy = template.get("spec", {}).get("restartPolicy", "Always")
        if kind == "Job" and policy not in ("Never", "OnFailure"):
            problems.append(f"Job {name}: restartPolicy {policy!r} (Never or OnFailure only)")
        for container in template.get("spec", {}).get("containers", []):
            if not DNS_LABEL.match(container.get("name", "")):
                problems.append(f"{kind} {name}: container name {container.get('name')!r}")
    return problems


def check(obj: dict[str, Any]) -> None:
    """Both: the pinned schema, strictly, and the server's own rules."""
    validate(obj)
    assert server_problems(obj) == []


def write_kubeconfig(path: Path, server: str, *, namespace: str = "noetl-test") -> Path:
    """A kubeconfig whose current context is `server` (the double: plain HTTP, no user)."""
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "test",
        "clusters": [{"name": "test", "cluster": {"server": server}}],
        "users": [{"name": "test", "user": {}}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test",
                                                  "namespace": namespace}}],
    }))
    return path


def kube_node_config(kubeconfig: Path, *, head: str) -> str:
    """A node's config: `head` (heartbeat, lease...), then Kubernetes through `kubeconfig`."""
    return (f"{head}kubernetes:\n  enabled: true\n  kubeconfig: {kubeconfig}\n"
            f"  namespace: noetl-test\n")
