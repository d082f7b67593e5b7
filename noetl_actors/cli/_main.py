"""The `noetl` group and what its commands share: loading, flags, exit codes.

Errors a user can act on (`NoetlError`) are printed as one line with a
non-zero exit status; tracebacks are for bugs.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from noetl_actors import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="noetl")
def main() -> None:
    """noetl-actors: run NoETL playbooks on Erlang-style supervision trees."""


EXIT_FAILED = 1
"""Exit status for a workflow that failed or was cancelled, or a request refused."""
EXIT_INVALID = 2
"""Exit status for invalid input (a playbook, a flag): nothing ran."""
EXIT_CANCELLED = 130
"""Exit status after Ctrl-C."""


def parse_sets(values: tuple[str, ...]) -> dict[str, Any]:
    """``--set key=value`` pairs; values read as YAML scalars (``3`` is a number)."""
    import yaml

    overrides: dict[str, Any] = {}
    for value in values:
        key, sep, raw = value.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{value!r}: use key=value", param_hint="--set")
        try:
            overrides[key.strip()] = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError:
            overrides[key.strip()] = raw
    return overrides


def try_load(path: str, overrides: dict[str, Any]) -> Any:
    """A checked playbook, or None after printing one line per problem (warnings too)."""
    from noetl_actors.errors import PlaybookError
    from noetl_actors.playbook import load_playbook

    try:
        playbook = load_playbook(path, overrides=overrides)
    except PlaybookError as error:
        for problem in error.problems:
            click.echo(str(problem), err=True)
        return None
    except OSError as error:
        click.echo(f"{path}: cannot read it: {error.strerror}", err=True)
        return None
    for warning in playbook.warnings:
        click.echo(str(warning), err=True)
    return playbook


def load_or_exit(path: str, sets: tuple[str, ...]) -> Any:
    """Load a playbook or exit 2 with one line per problem."""
    playbook = try_load(path, parse_sets(sets))
    if playbook is None:
        sys.exit(EXIT_INVALID)
    return playbook


SET_OPTION = click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
                    help="Override a var (repeatable).")
FILE_ARGUMENT = click.argument("file", type=click.Path(dir_okay=False))


_NATS_FLAGS = (
    ("--nats", "servers", "URL", "NATS server(s), comma-separated (or NATS_URL) "
                                 "[default: start an embedded one]"),
    ("--user", "user", "NAME", "NATS user, with --password (or NATS_USER)"),
    ("--password", "password", "SECRET", "NATS password (or NATS_PASSWORD)"),
    ("--token", "token", "TOKEN", "NATS token (or NATS_TOKEN)"),
    ("--creds", "creds_file", "FILE", "NATS credentials file, JWT and nkey (or NATS_CREDS)"),
    ("--tlsca", "tls_ca", "FILE", "CA certificate to trust for TLS (or NATS_CA)"),
    ("--tlscert", "tls_cert", "FILE", "client certificate for TLS, with --tlskey (or NATS_CERT)"),
    ("--tlskey", "tls_key", "FILE", "client key for TLS (or NATS_KEY)"),
)


def nats_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The NATS flags every command that connects takes, as one `nats` argument.

    Flags win over the NATS_* environment variables, as in NATS's own tools.
    """

    @functools.wraps(command)
    def with_options(**kwargs: Any) -> Any:
        from noetl_actors.bridge import ConnectOptions

        given = {field: kwargs.pop(f"nats_{field}") for _, field, _, _ in _NATS_FLAGS}
        try:
            options = ConnectOptions.from_env(**given)
        except ValueError as error:
            raise click.BadParameter(str(error), param_hint="NATS options") from None
        return command(nats=options, **kwargs)

    for flag, field, metavar, text in reversed(_NATS_FLAGS):
        with_options = click.option(flag, f"nats_{field}", metavar=metavar, help=text)(
            with_options)
    return with_options


STATE_DIR_OPTION = click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path),
                          help="Where the embedded server keeps JetStream.")
