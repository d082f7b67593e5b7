"""The users of an embedded nats-server: nkeys with a role each, kept in its state dir.

    <state-dir>/                  mode 0700
      nats-server.conf            the server's config (includes auth/users.conf)
      auth/                       mode 0700
        users.json                name, role, public key (and plugins) of each user
        users.conf                the `authorization` block nats-server reads
        password.json             a --user/NATS_PASSWORD given at start, if any
        node.nk, admin.nk, ...    the seeds (private keys) issued here, mode 0600

A user is an nkey: the server keeps only its public key and sends a nonce
the client signs with its seed, so neither a config file nor the wire ever
carries a secret that logs in. The first start makes two users: `node` (the
node's own connection) and `admin` (this machine's user, through its
context, `_context`). `issue()` adds one, `revoke()` takes one away; a
running server reads the change on SIGHUP (`reload()`), and drops the
connections of a revoked user.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
from pathlib import Path

import attrs

from noetl_actors.bridge._roles import Role, permissions
from noetl_actors.errors import CredentialsError

__all__ = ["ServerAuth", "User", "new_user_key", "private_dir", "write_private"]

logger = logging.getLogger("noetl_actors.bridge")

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def private_dir(path: Path) -> Path:
    """Make `path` (and its parents) and make it mode 0700: only its owner may look in."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def write_private(path: Path, text: str | bytes) -> Path:
    """Write `path` as mode 0600 from the start (never readable by others, even briefly),
    whole (a reader never sees half of it)."""
    temporary = path.with_name(f".{path.name}.tmp")
    with contextlib.suppress(FileNotFoundError):
        temporary.unlink()
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(text.encode() if isinstance(text, str) else text)
    temporary.replace(path)
    return path


def new_user_seed() -> tuple[bytes, str]:
    """A fresh user nkey: (its seed, its public key)."""
    import nkeys

    seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)
    return seed, nkeys.from_seed(bytearray(seed)).public_key.decode()


def new_user_key(out: Path) -> str:
    """Write a fresh user nkey's seed to `out` (0600); its public key."""
    seed, public = new_user_seed()
    write_private(out, seed + b"\n")
    return public


@attrs.frozen(kw_only=True)
class User:
    """One user of the server: its name, role and public key (never its seed)."""

    name: str
    role: Role
    public_key: str
    plugins: tuple[str, ...] = ()

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "role": self.role.value, "public_key": self.public_key,
                "plugins": list(self.plugins)}


class ServerAuth:
    """The users of the embedded server on `state_dir` (see the module's docstring)."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir)
        self.dir = self.state_dir / "auth"

    @property
    def users_file(self) -> Path:
        return self.dir / "users.json"

    @property
    def config_file(self) -> Path:
        """The `authorization` block, included by the server's config."""
        return self.dir / "users.conf"

    def seed_file(self, name: str) -> Path:
        return self.dir / f"{name}.nk"

    def ensure(self, *, password_user: tuple[str, str] | None = None) -> None:
        """Make the state dir private, the first users (node, admin) if there are none,
        and the server's `authorization` block (with `password_user`, an admin, if given)."""
        private_dir(self.state_dir)
        private_dir(self.dir)
        password = self.dir / "password.json"
        if password_user is not None:
            write_private(password, json.dumps({"user": password_user[0],
                                                "password": password_user[1]}))
        else:
            with contextlib.suppress(FileNotFoundError):
                password.unlink()
        names = {user.name for user in self.users()}
        for role in (Role.NODE, Role.ADMIN):
            if role.value not in names or not self.seed_file(role.value).is_file():
                self.issue(role, name=role.value, replace=True)
        self._render()

    def users(self) -> list[User]:
        try:
            data = json.loads(self.users_file.read_text())
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as error:
            raise CredentialsError(f"{self.users_file}: cannot read it ({error})") from None
        return [User(name=u["name"], role=Role(u["role"]), public_key=u["public_key"],
                     plugins=tuple(u.get("plugins", ()))) for u in data.get("users", [])]

    def issue(self, role: Role, *, name: str, plugins: tuple[str, ...] = (),
              out: Path | None = None, replace: bool = False) -> Path:
        """Add user `name` of `role` and write its seed to `out` (default: in the auth
        dir), mode 0600; the running server is not told (`reload()`). Returns the file.

        Raises:
            CredentialsError: a bad or taken name, a worker without plugins.
        """
        if not _NAME.match(name):
            raise CredentialsError(f"credentials name {name!r}: use letters, digits, '-' "
                                   "and '_' (at most 64)")
        try:
            permissions(role, plugins=plugins)
        except ValueError as error:
            raise CredentialsError(str(error)) from None
        users = [user for user in self.users() if user.name != name or not replace]
        if any(user.name == name for user in users):
            raise CredentialsError(f"a user named {name!r} exists on {self.state_dir}; "
                                   "revoke it first or give another --name")
        private_dir(self.dir)
        seed, public = new_user_seed()
        path = out if out is not None else self.seed_file(name)
        write_private(path, seed + b"\n")
        users.append(User(name=name, role=role, public_key=public, plugins=plugins))
        self._save(users)
        return path

    def revoke(self, name: str) -> User:
        """Remove user `name` (its seed file here too); `reload()` tells the server.

        Raises:
            CredentialsError: no such user.
        """
        users = self.users()
        gone = [user for user in users if user.name == name]
        if not gone:
            known = ", ".join(user.name for user in users) or "none"
            raise CredentialsError(f"no user named {name!r} on {self.state_dir} "
                                   f"(users: {known})")
        self._save([user for user in users if user.name != name])
        with contextlib.suppress(FileNotFoundError):
            self.seed_file(name).unlink()
        return gone[0]

    def reload(self) -> int | None:
        """Have the running server on this state dir read its users again (SIGHUP);
        its pid, or None if none runs."""
        from noetl_actors.bridge._server_state import read_former

        former = read_former(self.state_dir)
        if former is None or former.pid is None or not former.runs():
            return None
        os.kill(former.pid, signal.SIGHUP)
        return former.pid

    def _save(self, users: list[User]) -> None:
        write_private(self.users_file,
                      json.dumps({"users": [user.to_json() for user in users]}, indent=1))
        self._render()

    def _render(self) -> None:
        entries = [{"nkey": user.public_key,
                    "permissions": permissions(user.role, plugins=user.plugins)}
                   for user in self.users()]
        try:
            password = json.loads((self.dir / "password.json").read_text())
            entries.append({"user": password["user"], "password": password["password"],
                            "permissions": permissions(Role.ADMIN)})
        except (OSError, ValueError, KeyError):
            pass
        # JSON is valid nats-server config syntax
        write_private(self.config_file,
                      "authorization {\n  users: " + json.dumps(entries, indent=1) + "\n}\n")
