"""The node's own tree, read from YAML: `supervisors/node.yaml` with a user's file over it.

The default preset holds every key; a user's file (``noetl node start
--config FILE``) holds only what it changes. The two are merged as located
YAML, before any check, so a problem points at the file, line and column the
bad value came from: the user's file for what the user wrote, the preset for
the rest. Supervision mappings are read by the playbook's `YamlReader`, so
they take what a playbook's do, `use:` of a named policy included.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, cast

import attrs

from noetl_actors.errors import PlaybookError
from noetl_actors.playbook import (
    API_VERSION,
    TASK_DEFAULT,
    Catalog,
    Located,
    Problem,
    YamlReader,
    described,
    did_you_mean,
    parse_yaml,
    project_dir,
    show,
)
from noetl_actors.runtime import DEFAULT_WORKER_WAIT
from noetl_actors.supervision import SupervisorFlags

__all__ = ["IN_CLUSTER", "KubeConfig", "MetricsConfig", "NodeConfig", "PartConfig",
           "WorkersConfig", "load_node_config"]

NODE_KEYS = ("apiVersion", "kind", "supervision", "services", "workers", "workflows",
             "heartbeat", "lease", "worker_wait", "kubernetes", "health", "logging", "metrics",
             "max_workflows", "max_output", "on_stop")
ON_STOP = ("cancel", "hand_over")
PART_KEYS = ("supervision", "shutdown")
WORKERS_KEYS = (*PART_KEYS, "concurrency", "plugins")
PLUGIN_KEYS = ("concurrency", "enabled")
WAITING_CONCURRENCY = 100_000
"""Attempts at once of a plugin that only waits (`waits: true`, sleep), by default: each
is a timer on the inproc runner's loop, not a thread (docs/plugins.md)."""
LOGGING_KEYS = ("level", "format")
KUBERNETES_KEYS = ("enabled", "kubeconfig", "namespace", "job_ttl", "unschedulable_after",
                   "image_pull_after", "container_error_after", "nats_secret")
_BOUNDS = ("unschedulable_after", "image_pull_after", "container_error_after")
IN_CLUSTER = "in-cluster"
"""`kubernetes.kubeconfig`: the API server and credentials of the pod the node runs in."""
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
HEALTH_KEYS = ("host", "port")
METRICS_KEYS = ("enabled", "host", "port")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
LOG_FORMATS = ("text", "json")


@attrs.frozen
class PartConfig:
    """One supervisor under the node's root: its restart policy and its stop grace (seconds)."""

    flags: SupervisorFlags
    shutdown: float


@attrs.frozen
class WorkersConfig(PartConfig):
    """The plugin workers' supervisor, and how many attempts each worker runs at once.

    `concurrency` holds every plugin of the catalog (disabled ones too);
    `disabled` names the plugins this node runs no worker for (service plugins, unless
    enabled by name).
    """

    default_concurrency: int
    concurrency: Mapping[str, int]
    disabled: frozenset[str]


@attrs.frozen(kw_only=True)
class KubeConfig:
    """The node's Kubernetes runner (``kubernetes:``): where its Jobs go, and its bounds."""

    enabled: bool = False
    """False: this node runs no step as a Job (`runner: kubernetes` steps fail, naming
    this setting)."""
    kubeconfig: str = IN_CLUSTER
    """`IN_CLUSTER`, or a kubeconfig file ("": ``$KUBECONFIG`` or ``~/.kube/config``)."""
    namespace: str = ""
    """Where the Jobs are made; "": the pod's own (in-cluster), else the context's."""
    job_ttl: float = 3600.0
    """Seconds Kubernetes keeps a plugin's finished Job (``ttlSecondsAfterFinished``)."""
    unschedulable_after: float = 300.0
    image_pull_after: float = 120.0
    container_error_after: float = 60.0
    """Seconds a pod may stay unschedulable, unable to pull its image, or unable to
    create its container before its attempt fails (`KubernetesRunner`)."""
    nats_secret: str = ""
    """A Secret in the Jobs' namespace whose key ``seed`` is an nkey seed of the ``job``
    role: the pods log in with it to store large results; "": none (an open NATS)."""


@attrs.frozen(kw_only=True)
class MetricsConfig:
    """The node's Prometheus endpoint (``metrics:``; ``noetl node start --metrics-port``)."""

    enabled: bool = False
    host: str = "127.0.0.1"
    """Loopback unless told otherwise: the figures name workflows' plugins and counts."""
    port: int = 0
    """0: a free port, which the node's log prints."""


@attrs.frozen
class NodeConfig:
    """The node's tree: its root's flags, its three parts, heartbeat and logging."""

    root: SupervisorFlags
    services: PartConfig
    workers: WorkersConfig
    workflows: PartConfig
    heartbeat: float
    log_level: str
    log_format: Literal["text", "json"]
    lease: float = 5.0
    """Seconds a served node's lease on a workflow lasts unrenewed (see docs/durability.md)."""
    worker_wait: float = DEFAULT_WORKER_WAIT
    """Seconds a step's command may wait for a worker of its plugin to take it."""
    kubernetes: KubeConfig = KubeConfig()
    """The Kubernetes runner (`runner: kubernetes` steps as Jobs), if enabled."""
    max_workflows: int = 1000
    """Workflows a node runs at once; past it, a submit to it is answered ``busy``."""
    max_output: int = 4 * 1024 * 1024
    """Bytes of JSON a step's output may have; past it, the attempt fails (``output``)."""
    on_stop: Literal["cancel", "hand_over"] = "cancel"
    """What a served node stopped cleanly (SIGTERM) does with its running workflows:
    cancel them, or let their leases go for another node (or itself, started again) to
    take them over."""
    health_host: str = "0.0.0.0"
    health_port: int = 0
    """Where ``/livez`` and ``/readyz`` are served (`serve_health`); 0: not at all."""
    metrics: MetricsConfig = MetricsConfig()
    """Where its Prometheus metrics are served (`serve_metrics`), if at all."""


def load_node_config(path: Path | None = None, *, catalog: Catalog | None = None) -> NodeConfig:
    """The default preset (``supervisors/node.yaml``), with the file at `path` merged over it.

    `catalog` gives the plugins (`workers.plugins` names them) and the named
    policies (`use:`); by default, `Catalog.default()`.

    Raises:
        PlaybookError: every problem found, each with file:line:col.
        OSError: a file cannot be read.
    """
    preset_path = project_dir("supervisors") / "node.yaml"
    preset = _parse(preset_path)
    problems = list(preset.problems)
    tree = preset.root
    if path is not None:
        user = _parse(path)
        problems += user.problems
        if user.root is not None:
            checked = _check_user_root(user.root)
            problems += checked
            if tree is not None and not checked:
                tree = _merge(tree, user.root)
    if problems or tree is None:
        raise PlaybookError(problems)
    reader = _NodeReader(str(preset_path), catalog or Catalog.default())
    config = reader.node(tree)
    metrics = reader.metrics(tree)  # apart from node(): its own key, its own check
    if config is not None and metrics is not None:
        config = attrs.evolve(config, metrics=metrics)
    if reader.problems or config is None or metrics is None:
        # The user's problems first: those are the ones the user is fixing.
        raise PlaybookError(sorted(reader.problems, key=lambda p: (
            p.file == reader.preset_file, p.file, p.line, p.col)))
    return config


# -- located YAML that knows its file ---------------------------------------------------


@attrs.frozen
class _Sourced(Located):
    """A `Located` value that also knows its file (the preset or the user's)."""

    file: str = ""


@attrs.frozen
class _Parsed:
    root: _Sourced | None
    problems: list[Problem]


def _parse(path: Path) -> _Parsed:
    root, problems = parse_yaml(path.read_text(encoding="utf-8"), str(path))
    return _Parsed(_sourced(root, str(path)) if root is not None else None, problems)


def _sourced(node: Located, file: str) -> _Sourced:
    value: Any = node.value
    if isinstance(value, dict):
        value = {key: (_sourced(k, file), _sourced(v, file)) for key, (k, v) in value.items()}
    elif isinstance(value, list):
        value = [_sourced(item, file) for item in value]
    return _Sourced(value, node.line, node.col, file)


def _merge(base: _Sourced, over: _Sourced) -> _Sourced:
    """`over` on `base`: mappings merge key by key (a null value drops the key); any
    other value of `over` replaces `base`'s. A merged mapping stands where `over`'s is."""
    if over.kind != "mapping" or base.kind != "mapping":
        return over
    items = dict(base.value)
    for key, (key_node, value) in over.value.items():
        if value.value is None:
            items.pop(key, None)
        elif key in items:
            items[key] = (key_node, _merge(items[key][1], value))
        else:
            items[key] = (key_node, value)
    return _Sourced(items, over.line, over.col, over.file)


def _check_user_root(root: _Sourced) -> list[Problem]:
    """A user's file is a mapping, and of kind Node if it says: checked before the merge,
    so a playbook given by mistake is one clear problem, not one per key."""
    file = root.file
    if root.kind != "mapping":
        return [Problem(file, root.line, root.col,
                        f"a node configuration must be a mapping (got {described(root)})")]
    problems = []
    for key, wanted in (("kind", "Node"), ("apiVersion", API_VERSION)):
        entry = root.value.get(key)
        if entry is not None and entry[1].value != wanted:
            value = entry[1]
            problems.append(Problem(file, value.line, value.col,
                                    f"{key} must be {wanted!r} (got {described(value)})"))
    return problems


# -- the checks ----------------------------------------------------------------------------


class _NodeReader(YamlReader):
    """The playbook reader, reporting each problem in the file its value came from."""

    def __init__(self, preset_file: str, catalog: Catalog) -> None:
        super().__init__(preset_file, catalog)
        self.preset_file = preset_file

    def error(self, at: Located, message: str) -> None:
        file = at.file if isinstance(at, _Sourced) else self.file
        self.problems.append(Problem(file, at.line, at.col, message))

    def node(self, root: Located) -> NodeConfig | None:
        keys = self.keys(root, NODE_KEYS, "the node configuration",
                         required=[k for k in NODE_KEYS if k != "apiVersion"])
        if root.kind != "mapping":
            return None
        if "kind" in keys and keys["kind"].value != "Node":
            self.error(keys["kind"], f"kind must be 'Node' (got {described(keys['kind'])})")
        if "apiVersion" in keys and keys["apiVersion"].value != API_VERSION:
            self.error(keys["apiVersion"], f"apiVersion must be {API_VERSION!r} "
                                           f"(got {described(keys['apiVersion'])})")
        flags = self.supervision(keys["supervision"], TASK_DEFAULT, {}) \
            if "supervision" in keys else None
        services = self.part(keys["services"], "services") if "services" in keys else None
        workers = self.workers(keys["workers"]) if "workers" in keys else None
        workflows = self.part(keys["workflows"], "workflows") if "workflows" in keys else None
        heartbeat = self.heartbeat(keys["heartbeat"]) if "heartbeat" in keys else None
        lease = self.positive(keys["lease"], "lease") if "lease" in keys else None
        worker_wait = self.positive(keys["worker_wait"], "worker_wait") \
            if "worker_wait" in keys else None
        level, log_format = self.log(keys["logging"]) if "logging" in keys else (None, None)
        kube = self.kubernetes(keys["kubernetes"]) if "kubernetes" in keys else None
        health = self.health(keys["health"]) if "health" in keys else None
        max_workflows = self.concurrency(keys["max_workflows"], "max_workflows") \
            if "max_workflows" in keys else None
        max_output = self.concurrency(keys["max_output"], "max_output") \
            if "max_output" in keys else None
        on_stop = self.one_of(keys["on_stop"], ON_STOP, "on_stop") if "on_stop" in keys else None
        if (max_workflows is None or max_output is None or on_stop is None or flags is None
                or services is None
                or workers is None or workflows is None
                or heartbeat is None or lease is None or worker_wait is None or level is None
                or log_format is None or kube is None or health is None):
            return None
        return NodeConfig(root=flags, services=services, workers=workers, workflows=workflows,
                          heartbeat=heartbeat, lease=lease, worker_wait=worker_wait,
                          kubernetes=kube, health_host=health[0], health_port=health[1],
                          max_workflows=max_workflows, max_output=max_output,
                          on_stop=cast(Literal["cancel", "hand_over"], on_stop),
                          log_level=level, log_format=cast(Literal["text", "json"], log_format))

    def part(self, node: Located, what: str) -> PartConfig | None:
        keys = self.keys(node, PART_KEYS, what, required=PART_KEYS)
        return self.part_of(keys, what)

    def part_of(self, keys: Mapping[str, Located], what: str) -> PartConfig | None:
        flags = self.supervision(keys["supervision"], TASK_DEFAULT, {},
                                 f"{what}.supervision") if "supervision" in keys else None
        shutdown = self.duration(keys["shutdown"], f"{what}.shutdown") \
            if "shutdown" in keys else None
        if flags is None or shutdown is None:
            return None
        return PartConfig(flags=flags, shutdown=shutdown)

    def workers(self, node: Located) -> WorkersConfig | None:
        keys = self.keys(node, WORKERS_KEYS, "workers", required=(*PART_KEYS, "concurrency"))
        part = self.part_of(keys, "workers")
        default = self.concurrency(keys["concurrency"], "workers.concurrency") \
            if "concurrency" in keys else None
        overrides: dict[str, int] = {}
        # A service plugin runs in workers of its own (noetl worker --plugin), unless enabled.
        disabled = {name for name, plugin in self.catalog.plugins.items() if plugin.service}
        ok = "plugins" not in keys or self.plugins(keys["plugins"], overrides, disabled)
        if part is None or default is None or not ok:
            return None
        concurrency = {
            name: overrides.get(name, WAITING_CONCURRENCY if plugin.waits else default)
            for name, plugin in sorted(self.catalog.plugins.items())
        }
        return WorkersConfig(flags=part.flags, shutdown=part.shutdown,
                             default_concurrency=default, concurrency=concurrency,
                             disabled=frozenset(disabled))

    def plugins(self, node: Located, concurrency: dict[str, int], disabled: set[str]) -> bool:
        """Per-plugin overrides into `concurrency` and `disabled`; False if one is wrong.

        A name the catalog lacks is a problem in the user's file, and skipped in the
        preset: the preset speaks of the built-in plugins, which a node given its own
        plugin path may not have."""
        if not self.expect(node, "mapping", "workers.plugins"):
            return False
        known = self.catalog.plugins
        ok = True
        for name, (key_node, value) in node.value.items():
            what = f"workers.plugins.{name}"
            keys = self.keys(value, PLUGIN_KEYS, what)
            ok = ok and value.kind == "mapping" and len(keys) == len(value.value)
            if name not in known:
                if isinstance(key_node, _Sourced) and key_node.file == self.preset_file:
                    continue
                suggestion = did_you_mean(str(name), known)
                self.error(key_node, f"unknown plugin {name!r} in workers.plugins{suggestion}; "
                                     f"known: {', '.join(sorted(known)) or 'none'}")
                ok = False
            if "concurrency" in keys:
                count = self.concurrency(keys["concurrency"], f"{what}.concurrency")
                if count is None:
                    ok = False
                else:
                    concurrency[name] = count
            if "enabled" in keys:
                if self.expect(keys["enabled"], "boolean", f"{what}.enabled"):
                    if not keys["enabled"].value:
                        disabled.add(name)
                    else:
                        disabled.discard(name)
                else:
                    ok = False
        return ok

    def concurrency(self, node: Located, what: str) -> int | None:
        value = node.value
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            self.error(node, f"{what} must be a whole number >= 1 (got {show(value)})")
            return None
        return value

    def heartbeat(self, node: Located) -> float | None:
        return self.positive(node, "heartbeat")

    def positive(self, node: Located, what: str) -> float | None:
        seconds = self.duration(node, what)
        if seconds == 0:
            self.error(node, f"{what} must be longer than 0")
            return None
        return seconds

    def kubernetes(self, node: Located) -> KubeConfig | None:
        """The Kubernetes runner's settings: whether it runs, where, and its bounds."""
        keys = self.keys(node, KUBERNETES_KEYS, "kubernetes", required=KUBERNETES_KEYS)
        enabled = keys["enabled"].value if "enabled" in keys and self.expect(
            keys["enabled"], "boolean", "kubernetes.enabled") else None
        kubeconfig = keys["kubeconfig"].value if "kubeconfig" in keys and self.expect(
            keys["kubeconfig"], "string", "kubernetes.kubeconfig") else None
        namespace = None
        if "namespace" in keys:
            value = keys["namespace"].value
            if value == "" or (isinstance(value, str) and len(value) <= 63
                               and _DNS_LABEL.match(value)):
                namespace = value
            else:
                self.error(keys["namespace"], f"kubernetes.namespace must be a namespace name "
                                              f"(lower-case letters, digits and '-', at most 63) "
                                              f"or \"\" for the default (got {show(value)})")
        nats_secret = None
        if "nats_secret" in keys:
            value = keys["nats_secret"].value
            if value == "" or (isinstance(value, str) and len(value) <= 253
                               and all(_DNS_LABEL.match(part) for part in value.split("."))):
                nats_secret = value
            else:
                self.error(keys["nats_secret"], f"kubernetes.nats_secret must be a Secret's "
                                                f"name or \"\" for none (got {show(value)})")
        seconds = {key: self.duration(keys[key], f"kubernetes.{key}")
                   for key in ("job_ttl", *_BOUNDS) if key in keys}
        if enabled is None or kubeconfig is None or namespace is None or nats_secret is None or any(
                seconds.get(key) is None for key in ("job_ttl", *_BOUNDS)):
            return None
        return KubeConfig(enabled=enabled, kubeconfig=kubeconfig, namespace=namespace,
                          nats_secret=nats_secret,
                          **{key: value for key, value in seconds.items() if value is not None})

    def health(self, node: Located) -> tuple[str, int] | None:
        """Where the health endpoint listens: a host and a port (0: no endpoint)."""
        keys = self.keys(node, HEALTH_KEYS, "health", required=HEALTH_KEYS)
        host = port = None
        if "host" in keys and self.expect(keys["host"], "string", "health.host"):
            host = keys["host"].value
        if "port" in keys:
            value = keys["port"].value
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
                self.error(keys["port"], f"health.port must be a port number from 1 to 65535, "
                                         f"or 0 for no endpoint (got {show(value)})")
            else:
                port = value
        return None if host is None or port is None else (host, port)

    def metrics(self, root: Located) -> MetricsConfig | None:
        """``metrics:`` of the node's configuration: whether, and where, it is served."""
        entry = root.value.get("metrics") if root.kind == "mapping" else None
        if entry is None:
            return None  # node() says it is missing
        keys = self.keys(entry[1], METRICS_KEYS, "metrics", required=METRICS_KEYS)
        enabled = host = port = None
        if "enabled" in keys and self.expect(keys["enabled"], "boolean", "metrics.enabled"):
            enabled = keys["enabled"].value
        if "host" in keys and self.expect(keys["host"], "string", "metrics.host"):
            host = keys["host"].value
        if "port" in keys:
            value = keys["port"].value
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
                self.error(keys["port"], f"metrics.port must be a port number from 1 to 65535, "
                                         f"or 0 for a free one (got {show(value)})")
            else:
                port = value
        if enabled is None or host is None or port is None:
            return None
        return MetricsConfig(enabled=enabled, host=host, port=port)

    def log(self, node: Located) -> tuple[str | None, str | None]:
        keys = self.keys(node, LOGGING_KEYS, "logging", required=LOGGING_KEYS)
        level = self.one_of(keys["level"], LOG_LEVELS, "logging.level") \
            if "level" in keys else None
        log_format = self.one_of(keys["format"], LOG_FORMATS, "logging.format") \
            if "format" in keys else None
        return level, log_format

    def one_of(self, node: Located, options: tuple[str, ...], what: str) -> str | None:
        """One of `options`, in any case (``INFO`` is ``info``)."""
        text = str(node.value).lower() if node.kind == "string" else None
        if text is not None and text in options:
            return text
        self.error(node, f"{what} must be one of {', '.join(options)} (got {show(node.value)})"
                         f"{did_you_mean(str(node.value).lower(), options)}")
        return None
