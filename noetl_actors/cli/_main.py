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


def load_node_config_or_exit(path: Path | None) -> Any:
    """A node's configuration (`path`, or the built-in one), or exit 2 with one line
    per problem."""
    from noetl_actors.errors import PlaybookError
    from noetl_actors.services import load_node_config

    try:
        return load_node_config(path)
    except PlaybookError as error:
        for problem in error.problems:
            click.echo(str(problem), err=True)
    except OSError as error:
        click.echo(f"{path}: cannot read it: {error.strerror}", err=True)
    sys.exit(EXIT_INVALID)


SET_OPTION = click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
                    help="Override a var (repeatable).")
FILE_ARGUMENT = click.argument("file", type=click.Path(dir_okay=False))


_NATS_FLAGS = (
    ("--nats", "servers", "URL", "NATS server(s), comma-separated (or NATS_URL) "
                                 "[default: start an embedded one]"),
    ("--user", "user", "NAME", "NATS user; its password from NATS_PASSWORD, "
                               "--password-file or a prompt (or NATS_USER)"),
    ("--password-file", "password_file", "FILE", "file holding the NATS password"),
    ("--token-file", "token_file", "FILE", "file holding a NATS token (or NATS_TOKEN)"),
    ("--creds", "creds_file", "FILE", "NATS credentials file, JWT and nkey (or NATS_CREDS)"),
    ("--nkey", "nkey_file", "FILE", "NATS nkey seed file, as `noetl credentials` issues "
                                    "(or NATS_NKEY)"),
    ("--tlsca", "tls_ca", "FILE", "CA certificate to trust for TLS (or NATS_CA)"),
    ("--tlscert", "tls_cert", "FILE", "client certificate for TLS, with --tlskey (or NATS_CERT)"),
    ("--tlskey", "tls_key", "FILE", "client key for TLS (or NATS_KEY)"),
)
"""No flag takes a secret itself: `ps` shows a command line to every local user."""


def _secret(path: str | None, what: str) -> str | None:
    if path is None:
        return None
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except OSError as error:
        raise click.BadParameter(f"{path}: cannot read it: {error.strerror}",
                                 param_hint=what) from None


def nats_options_for(*, role: str = "admin", current: bool = False
                     ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The NATS flags every command that connects takes, as one `nats` argument.

    Flags win over the NATS_* environment variables, as in NATS's own tools.
    Without credentials, those of this user's context for the server are used
    (`role`: its `node` or `admin` seed); with `current`, a command given no
    server at all uses the newest running context's (bridge/_context.py).
    """

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(command)
        def with_options(**kwargs: Any) -> Any:
            from noetl_actors.bridge import ConnectOptions, use_context

            given = {field: kwargs.pop(f"nats_{field}") for _, field, _, _ in _NATS_FLAGS}
            password = _secret(given.pop("password_file"), "--password-file")
            token = _secret(given.pop("token_file"), "--token-file")
            try:
                options = ConnectOptions.from_env(password=password, token=token, **given)
            except ValueError as error:
                if "user and password" not in str(error) or not sys.stdin.isatty():
                    raise click.BadParameter(str(error), param_hint="NATS options") from None
                secret = click.prompt(f"NATS password of {given.get('user')}",
                                      hide_input=True, err=True)
                options = ConnectOptions.from_env(password=secret, token=token, **given)
            try:
                options = use_context(options, role=role, current=current)
            except ValueError as error:  # a context whose files are gone
                raise click.ClickException(f"this user's context for the server: {error}; "
                                           "give --nats and credentials") from None
            return command(nats=options, **kwargs)

        for flag, field, metavar, text in reversed(_NATS_FLAGS):
            with_options = click.option(flag, f"nats_{field}", metavar=metavar, help=text)(
                with_options)
        return with_options

    return decorate


nats_options = nats_options_for()
"""For commands that start an embedded server unless given one (`run`, `events`)."""
cluster_options = nats_options_for(current=True)
"""For commands that talk to running nodes: no --nats, this user's running server."""


STATE_DIR_OPTION = click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path),
                          help="Where the embedded server keeps JetStream.")
