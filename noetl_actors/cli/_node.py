"""`noetl node start`: a long-running supervisor node, until SIGTERM or SIGINT."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from noetl_actors._gc import collect_in_larger_steps
from noetl_actors.cli._main import load_node_config_or_exit, main, nats_options_for

if TYPE_CHECKING:
    from noetl_actors.services import MetricsServer, Node

logger = logging.getLogger("noetl_actors.node")


@main.group()
def node() -> None:
    """Run a supervisor node: its workers, workflows and command API."""


def default_name() -> str:
    """``<host>-<pid>``, made subject-safe: unique on a machine, readable on a cluster."""
    from noetl_actors.playbook import to_name

    host = to_name(socket.gethostname().split(".")[0], fill="-") or "node"
    return f"{host}-{os.getpid()}"


@node.command()
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path),
              help="YAML merged over supervisors/node.yaml (the node's tree and policies).")
@nats_options_for(role="node")
@click.option("--name", help="The node's name on the cluster [default: <host>-<pid>].")
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Where the embedded server keeps JetStream "
                   "[default: ~/.local/state/noetl-actors/<name>].")
@click.option("--log-format", type=click.Choice(["text", "json"]),
              help="Log lines on stderr [default: the config's logging.format].")
@click.option("--metrics-port", type=click.IntRange(0, 65535),
              help="Serve Prometheus metrics on this port (0: a free one; the log says "
                   "which) [default: the config's metrics.port, if metrics.enabled].")
@click.option("--metrics-host",
              help="Where the metrics port listens [default: the config's metrics.host, "
                   "127.0.0.1].")
def start(config_file: Path | None, nats: Any, name: str | None, state_dir: Path | None,
          log_format: str | None, metrics_port: int | None, metrics_host: str | None) -> None:
    """Start a node and serve until SIGTERM or SIGINT, then stop in reverse order."""
    collect_in_larger_steps()
    from noetl_actors.bridge import check_token, default_state_dir
    from noetl_actors.errors import NoetlError
    from noetl_actors.services import LifecycleLog, Node, serve_health

    name = name or default_name()
    try:
        check_token(name, "node name")
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--name") from None
    config = load_node_config_or_exit(config_file)
    _configure_logging(config.log_level, log_format or config.log_format)

    stop = threading.Event()
    asked_at: list[float] = []
    """When the first SIGTERM or SIGINT came: the shutdown the log reports is from then
    (a signal during `start()` waits for it to finish before the stop begins)."""

    def on_signal(number: int, _frame: Any) -> None:
        logger.info("%s: stopping", signal.Signals(number).name)
        if not asked_at:
            asked_at.append(time.monotonic())
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)
    server_dir = state_dir or default_state_dir() / name
    lifecycle_log = LifecycleLog(logger)
    the_node = Node(name=name, config=config, options=nats, state_dir=server_dir, serve=True,
                    observers=[lifecycle_log])
    lifecycle_log.node = the_node
    health = metrics = None
    try:
        the_node.start()
        if config.health_port:
            try:
                health = serve_health(the_node, config.health_host, config.health_port)
            except OSError as error:
                raise click.ClickException(f"health endpoint on {config.health_host}:"
                                           f"{config.health_port}: {error.strerror}") from None
            logger.info("health on http://%s:%d (/livez, /readyz)", config.health_host,
                        health.port)
        metrics = _serve_metrics(the_node, metrics_host, metrics_port)
        where = "embedded, " if nats.embedded else ""
        if the_node.server is not None and the_node.server.port_note:
            where = f"embedded, {the_node.server.port_note}, "
        click.echo(f"node {name} is up on {the_node.url} ({where}other terminals: "
                   f"--nats {the_node.url} or NATS_URL={the_node.url})")
        sys.stdout.flush()
        logger.info("node %s serving on %s", name, the_node.url)
        while not stop.wait(0.5):
            if the_node.server is not None and not the_node.server.is_running():
                raise click.ClickException(
                    f"the embedded nats-server exited; see {the_node.server.log_file}")
    except NoetlError as error:
        raise click.ClickException(str(error)) from None
    finally:
        began = asked_at[0] if asked_at else time.monotonic()
        if health is not None:
            health.stop()
        if metrics is not None:
            metrics.stop()
        the_node.stop()
        logger.info("node %s stopped in %.1fs", name, time.monotonic() - began)


def _serve_metrics(node: Node, host: str | None, port: int | None) -> MetricsServer | None:
    """The node's metrics endpoint, if the flags or its config ask for one; its URL logged."""
    from noetl_actors.services import serve_metrics

    wanted = node.config.metrics
    if port is None and host is None and not wanted.enabled:
        return None
    host = host if host is not None else wanted.host
    try:
        server = serve_metrics(node, host, port if port is not None else wanted.port)
    except OSError as error:
        raise click.ClickException(f"metrics endpoint on {host}:{port or wanted.port}: "
                                   f"{error.strerror or error}") from None
    logger.info("metrics on %s", server.url)
    return server


class _JsonFormatter(logging.Formatter):
    """One JSON object a line; a line about a workflow has its `fields` (`LOG_FIELDS`)."""

    def __init__(self, fields: tuple[str, ...]) -> None:
        super().__init__()
        self._fields = fields

    def format(self, record: logging.LogRecord) -> str:
        entry = {"at": record.created, "level": record.levelname.lower(),
                 "logger": record.name, "message": record.getMessage()}
        entry.update({key: getattr(record, key) for key in self._fields if hasattr(record, key)})
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def _configure_logging(level: str, log_format: str) -> None:
    from noetl_actors.runtime import LOG_FIELDS

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter(LOG_FIELDS) if log_format == "json" else logging.Formatter(
        "%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.getLogger("nats").setLevel(logging.CRITICAL)  # its reconnect chatter is ours to tell
