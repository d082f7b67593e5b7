"""`KubeSettings`: how a plugin's Kubernetes Job is placed and sized, and its checks.

The same mapping is written under ``kubernetes:`` in a plugin's `plugin.yaml`
(the plugin's defaults) and under a step (that step's overrides); the two
are merged by `KubeSettings.over()`. `kube_problems()` checks a plain
mapping and says where each problem is as a path of keys and indices, so
the playbook loader can point at the exact line and column and the
manifest reader can name the key.

The keys are the playbook's snake_case; inside `tolerations`, Kubernetes'
own keys (``key``, ``operator``, ``value``, ``effect``,
``tolerationSeconds``), so a toleration can be copied from a pod spec.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import attrs

__all__ = ["KUBERNETES_KEYS", "KubeSettings", "kube_problems", "valid_label_value"]

KUBERNETES_KEYS = ("resources", "env", "service_account", "node_selector", "tolerations")
_RESOURCES_KEYS = ("requests", "limits")
_TOLERATION_KEYS = ("key", "operator", "value", "effect", "tolerationSeconds")
_OPERATORS = ("Exists", "Equal")
_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")

_QUANTITY = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)(([KMGTPE]i)|[numkMGTPE]|"
                       r"([eE][+-]?(\d+(\.\d*)?|\.\d+)))?$")
"""A Kubernetes resource quantity (``500m``, ``1Gi``, ``2``), as the API server parses it."""
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
RESERVED_ENV_PREFIX = "NOETL_"
"""Variables the runner sets for the entrypoint; a plugin or step may not set them."""

Path = tuple[str | int, ...]
Problem = tuple[Path, str]
"""Where (keys and indices from the ``kubernetes:`` mapping) and what."""


def valid_label_value(text: str) -> bool:
    """True if `text` may be a label value: at most 63 characters of the label syntax."""
    return len(text) <= 63 and bool(_LABEL_VALUE.match(text))


def _valid_label_key(key: str) -> bool:
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)):
        return False
    return len(name) <= 63 and bool(_LABEL_NAME.match(name))


def _show(value: Any) -> str:
    return repr(value) if not isinstance(value, dict | list) else type(value).__name__


def kube_problems(value: Any) -> list[Problem]:
    """Every problem of a ``kubernetes:`` mapping; empty if it is valid.

    A path that ends in ``("key", name)`` is about the key `name` itself (unknown)."""
    if not isinstance(value, dict):
        return [((), f"kubernetes must be a mapping of {', '.join(KUBERNETES_KEYS)} "
                     f"(got {_show(value)})")]
    problems: list[Problem] = []
    for key, item in value.items():
        if key not in KUBERNETES_KEYS:
            problems.append((("key", key), f"unknown key {key!r} in kubernetes; "
                                           f"allowed: {', '.join(KUBERNETES_KEYS)}"))
        elif key == "resources":
            problems += _resources(item)
        elif key == "env":
            problems += _env(item)
        elif key == "service_account":
            if not isinstance(item, str) or len(item) > 253 or not _DNS_SUBDOMAIN.match(item):
                problems.append((("service_account",),
                                 f"kubernetes.service_account must be a DNS-1123 name: lower-case "
                                 f"letters, digits, '-' and '.' (got {_show(item)})"))
        elif key == "node_selector":
            problems += _node_selector(item)
        else:
            problems += _tolerations(item)
    return problems


def _resources(value: Any) -> list[Problem]:
    where = "kubernetes.resources"
    if not isinstance(value, dict):
        return [(("resources",), f"{where} must be a mapping of requests and limits "
                                 f"(got {_show(value)})")]
    problems: list[Problem] = []
    for kind, amounts in value.items():
        if kind not in _RESOURCES_KEYS:
            problems.append((("resources", "key", kind),
                             f"unknown key {kind!r} in {where}; allowed: requests, limits"))
            continue
        if not isinstance(amounts, dict):
            problems.append((("resources", kind), f"{where}.{kind} must be a mapping of "
                                                  f"resource to quantity (got {_show(amounts)})"))
            continue
        for resource, amount in amounts.items():
            text = str(amount) if isinstance(amount, int | float) and not isinstance(
                amount, bool) else amount
            if not isinstance(text, str) or not _QUANTITY.match(text):
                problems.append((("resources", kind, resource),
                                 f"{where}.{kind}.{resource} must be a quantity such as 500m, "
                                 f"1Gi or 2 (got {_show(amount)})"))
            elif not _valid_label_key(str(resource)):
                problems.append((("resources", kind, "key", resource),
                                 f"{where}.{kind}: {resource!r} is not a resource name"))
    return problems


def _env(value: Any) -> list[Problem]:
    if not isinstance(value, dict):
        return [(("env",), f"kubernetes.env must be a mapping of name to value "
                           f"(got {_show(value)})")]
    problems: list[Problem] = []
    for name, item in value.items():
        if not isinstance(name, str) or not _ENV_NAME.match(name):
            problems.append((("env", "key", name), f"kubernetes.env: {name!r} is not a "
                                                   f"variable name"))
        elif name.startswith(RESERVED_ENV_PREFIX):
            problems.append((("env", "key", name), f"kubernetes.env: {name} is set by the "
                                                   f"runner ({RESERVED_ENV_PREFIX}* are reserved)"))
        elif not isinstance(item, str | int | float | bool):
            problems.append((("env", name), f"kubernetes.env.{name} must be a string, number "
                                            f"or boolean (got {_show(item)})"))
    return problems


def _node_selector(value: Any) -> list[Problem]:
    if not isinstance(value, dict):
        return [(("node_selector",), f"kubernetes.node_selector must be a mapping of label to "
                                     f"value (got {_show(value)})")]
    problems: list[Problem] = []
    for key, item in value.items():
        if not isinstance(key, str) or not _valid_label_key(key):
            problems.append((("node_selector", "key", key),
                             f"kubernetes.node_selector: {key!r} is not a label key"))
        elif not isinstance(item, str) or not valid_label_value(item):
            problems.append((("node_selector", key),
                             f"kubernetes.node_selector.{key} must be a label value: at most 63 "
                             f"letters, digits, '-', '_' or '.' (got {_show(item)})"))
    return problems


def _tolerations(value: Any) -> list[Problem]:
    if not isinstance(value, list):
        return [(("tolerations",), f"kubernetes.tolerations must be a list (got {_show(value)})")]
    problems: list[Problem] = []
    for index, item in enumerate(value):
        where = f"kubernetes.tolerations[{index}]"
        if not isinstance(item, dict):
            problems.append((("tolerations", index), f"{where} must be a mapping "
                                                     f"(got {_show(item)})"))
            continue
        for key in item:
            if key not in _TOLERATION_KEYS:
                problems.append((("tolerations", index, "key", key),
                                 f"unknown key {key!r} in {where}; allowed: "
                                 f"{', '.join(_TOLERATION_KEYS)}"))
        checks: tuple[tuple[str, Callable[[Any], bool], str], ...] = (
            ("operator", lambda v: v in _OPERATORS, f"one of {', '.join(_OPERATORS)}"),
            ("effect", lambda v: v in _EFFECTS, f"one of {', '.join(_EFFECTS)}"),
            ("key", lambda v: isinstance(v, str) and _valid_label_key(v), "a label key"),
            ("value", lambda v: isinstance(v, str), "a string"),
            ("tolerationSeconds", lambda v: isinstance(v, int) and not isinstance(v, bool),
             "a whole number of seconds"))
        for key, ok, wanted in checks:
            if key in item and not ok(item[key]):
                problems.append((("tolerations", index, key),
                                 f"{where}.{key} must be {wanted} (got {_show(item[key])})"))
        if item.get("operator") == "Exists" and item.get("value"):
            problems.append((("tolerations", index, "value"),
                             f"{where}.value must be empty when operator is Exists"))
    return problems


@attrs.frozen(kw_only=True)
class KubeSettings:
    """A checked ``kubernetes:`` mapping, in the shapes a pod spec takes."""

    resources: Mapping[str, Mapping[str, str]] = attrs.field(factory=dict)
    env: Mapping[str, str] = attrs.field(factory=dict)
    service_account: str | None = None
    node_selector: Mapping[str, str] = attrs.field(factory=dict)
    tolerations: tuple[Mapping[str, Any], ...] = ()

    @classmethod
    def from_mapping(cls, value: Mapping[str, Any] | None) -> KubeSettings:
        """The settings of a ``kubernetes:`` mapping (None: none).

        Raises:
            ValueError: its first problem (`kube_problems()`).
        """
        if value is None:
            return cls()
        problems = kube_problems(value)
        if problems:
            raise ValueError(problems[0][1])
        return cls(
            resources={kind: {name: str(amount) for name, amount in amounts.items()}
                       for kind, amounts in value.get("resources", {}).items()},
            env={name: _env_text(item) for name, item in value.get("env", {}).items()},
            service_account=value.get("service_account"),
            node_selector=dict(value.get("node_selector", {})),
            tolerations=tuple(dict(t) for t in value.get("tolerations", [])),
        )

    def over(self, base: KubeSettings) -> KubeSettings:
        """These settings (a step's) on top of `base` (its plugin's): resources, env and
        node_selector merge name by name; service_account and tolerations replace."""
        resources = {kind: dict(amounts) for kind, amounts in base.resources.items()}
        for kind, amounts in self.resources.items():
            resources.setdefault(kind, {}).update(amounts)
        return KubeSettings(
            resources=resources,
            env={**base.env, **self.env},
            service_account=self.service_account or base.service_account,
            node_selector={**base.node_selector, **self.node_selector},
            tolerations=self.tolerations or base.tolerations,
        )


def _env_text(value: str | int | float | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
