"""`noetl credentials`: issue, list and revoke the users of an embedded server.

Each user is an nkey with one role (docs/security.md); the server on the
state dir reads its users again at once (SIGHUP), so an issued file works,
and a revoked one stops working, without a restart.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from noetl_actors.cli._main import EXIT_FAILED, main

_ROLES = ("admin", "node", "worker", "client", "viewer", "job")


@main.group()
def credentials() -> None:
    """Issue, list and revoke credentials (nkeys with a role) of an embedded server."""


_STATE_DIR = click.option(
    "--state-dir", type=click.Path(file_okay=False, path_type=Path),
    help="The server's state dir [default: that of --nats/NATS_URL's server, else the "
         "newest running server of yours, else ~/.local/state/noetl-actors].")
_NATS = click.option("--nats", "url", metavar="URL", envvar="NATS_URL",
                     help="Find the state dir of this server of yours (or NATS_URL).")


def _auth(state_dir: Path | None, url: str | None) -> object:
    from noetl_actors.bridge import ServerAuth, default_state_dir, find_context

    if state_dir is None:
        context = find_context(url.split(",")[0] if url else None)
        if url and context is None:
            raise click.UsageError(f"no server of yours is known on {url}: give --state-dir")
        state_dir = Path(context.state_dir) if context is not None else default_state_dir()
    auth = ServerAuth(state_dir)
    if not auth.users_file.is_file():
        raise click.ClickException(f"{state_dir} has no users: start its server first "
                                   "(noetl server or noetl node start)")
    return auth


@credentials.command()
@click.argument("role", type=click.Choice(_ROLES))
@click.argument("name")
@click.option("--plugin", "plugins", multiple=True, metavar="NAME",
              help="A worker's plugin (repeatable; a worker needs at least one).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the seed here [default: NAME.nk in the current folder].")
@_STATE_DIR
@_NATS
def issue(role: str, name: str, plugins: tuple[str, ...], output: Path | None,
          state_dir: Path | None, url: str | None) -> None:
    """Add user NAME with ROLE; write its nkey seed file (mode 0600)."""
    from noetl_actors.bridge import Role, ServerAuth
    from noetl_actors.errors import CredentialsError

    auth = _auth(state_dir, url)
    assert isinstance(auth, ServerAuth)
    out = output or Path(f"{name}.nk")
    if out.exists():
        raise click.ClickException(f"{out} exists: remove it or give another --output")
    try:
        path = auth.issue(Role(role), name=name, plugins=plugins, out=out)
    except CredentialsError as error:
        raise click.ClickException(str(error)) from None
    pid = auth.reload()
    click.echo(f"{path}: user {name}, role {role}"
               + (f" (plugins {', '.join(plugins)})" if plugins else ""))
    told = f"the server (pid {pid}) knows it now" if pid else "no server runs there now"
    click.echo(f"{told}; connect with --nkey {path} (or NATS_NKEY={path})", err=True)


@credentials.command(name="list")
@_STATE_DIR
@_NATS
def list_users(state_dir: Path | None, url: str | None) -> None:
    """List the users: name, role, public key, plugins."""
    from noetl_actors.bridge import ServerAuth

    auth = _auth(state_dir, url)
    assert isinstance(auth, ServerAuth)
    for user in auth.users():
        plugins = f"  plugins {','.join(user.plugins)}" if user.plugins else ""
        click.echo(f"{user.name:<16} {user.role.value:<7} {user.public_key}{plugins}")


@credentials.command()
@click.argument("name")
@_STATE_DIR
@_NATS
def revoke(name: str, state_dir: Path | None, url: str | None) -> None:
    """Remove user NAME: the server drops its connections and refuses it from now on."""
    from noetl_actors.bridge import ServerAuth
    from noetl_actors.errors import CredentialsError

    auth = _auth(state_dir, url)
    assert isinstance(auth, ServerAuth)
    if name in ("node", "admin"):
        click.echo(f"noetl: {name} is the server's own user; to change its key, stop the "
                   f"server, delete {auth.seed_file(name)} and start it again", err=True)
        sys.exit(EXIT_FAILED)
    try:
        user = auth.revoke(name)
    except CredentialsError as error:
        raise click.ClickException(str(error)) from None
    pid = auth.reload()
    told = f"the server (pid {pid}) refuses it now" if pid else "no server runs there now"
    click.echo(f"revoked {user.name} ({user.role.value}, {user.public_key}); {told}")


@credentials.command()
@click.option("--plugin", "plugins", multiple=True, metavar="NAME",
              help="The worker role's plugins (repeatable) [default: every plugin].")
def roles(plugins: tuple[str, ...]) -> None:
    """Print each role's permissions as nats-server config (for a NATS of your own)."""
    from noetl_actors.bridge import render_roles

    click.echo(render_roles(plugins=plugins or ("*",)), nl=False)


@credentials.command(name="new-key")
@click.argument("name")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the seed here [default: NAME.nk].")
def new_key(name: str, output: Path | None) -> None:
    """Make a user nkey for a NATS of your own: the seed in a file (0600), the public key
    on stdout, for its config (deploy/nats/)."""
    from noetl_actors.bridge import new_user_key

    out = output or Path(f"{name}.nk")
    if out.exists():
        raise click.ClickException(f"{out} exists: remove it or give another --output")
    click.echo(new_user_key(out))
