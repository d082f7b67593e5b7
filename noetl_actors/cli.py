"""The `noetl` command line.

Errors a user can act on (`NoetlError`) are printed as one line with a
non-zero exit status; tracebacks are for bugs.
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from typing import Any

import click

from noetl_actors import __version__
from noetl_actors.errors import NoetlError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="noetl")
def main() -> None:
    """noetl-actors: run NoETL playbooks on Erlang-style supervision trees."""


@main.command()
def demo() -> None:
    """Start a supervision tree, crash its children, watch them restart."""
    from noetl_actors.console.demo import run_demo

    run_demo()


@main.command()
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Where JetStream keeps its store [default: ~/.local/state/noetl-actors].")
@click.option("--port", type=click.IntRange(1, 65535), help="Client port [default: a free one].")
@click.option("--monitor-port", type=click.IntRange(1, 65535),
              help="HTTP monitoring port [default: a free one].")
@click.option("--user", help="Require this user (with --password).")
@click.option("--password", help="Require this password (with --user).")
def server(**options: Any) -> None:
    """Run the embedded nats-server (loopback, JetStream) until Ctrl-C.

    Nodes on this machine can then share it with --nats <url>.
    """
    from noetl_actors.bridge import EmbeddedNatsServer

    try:
        nats = EmbeddedNatsServer(**options).start()
    except (NoetlError, ValueError) as error:
        raise click.ClickException(str(error)) from None
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    click.echo(f"nats-server on {nats.url} (monitoring {nats.monitor_url}), "
               f"JetStream store {nats.store_dir}")
    click.echo("Ctrl-C stops it.")
    sys.stdout.flush()
    try:
        while not stop.wait(0.5):
            if not nats.is_running():
                raise click.ClickException(f"nats-server exited; see {nats.log_file}")
    finally:
        nats.stop()
    click.echo("nats-server stopped.")


if __name__ == "__main__":
    main()
