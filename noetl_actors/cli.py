"""The `noetl` command line."""

from __future__ import annotations

import click

from noetl_actors import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="noetl")
def main() -> None:
    """noetl-actors: run NoETL playbooks on Erlang-style supervision trees."""


@main.command()
def demo() -> None:
    """Start a supervision tree, crash its children, watch them restart."""
    from noetl_actors.console.demo import run_demo

    run_demo()


if __name__ == "__main__":
    main()
