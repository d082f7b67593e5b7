"""How to reach NATS: the options NATS users expect, from flags or the environment."""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

__all__ = ["ConnectOptions"]

_SCHEMES = ("nats://", "tls://", "ws://", "wss://")


def _servers(value: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else list(value)
    servers = tuple(item.strip() for item in items if item.strip())
    for server in servers:
        if not server.startswith(_SCHEMES):
            raise ValueError(
                f"NATS server {server!r} must start with one of {', '.join(_SCHEMES)}"
            )
    return servers


def _existing_file(_instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and not Path(value).is_file():
        raise ValueError(f"{attribute.name}: no such file: {value}")


@attrs.frozen(kw_only=True)
class ConnectOptions:
    """Where NATS is and how to log in. No `servers` means: use the embedded server.

    `max_reconnect_attempts=-1` (the default) reconnects forever, waiting
    `reconnect_wait` seconds (plus jitter) between rounds.
    """

    servers: tuple[str, ...] = attrs.field(default=(), converter=_servers)
    name: str = "noetl"
    user: str | None = None
    password: str | None = None
    token: str | None = None
    creds_file: str | None = attrs.field(default=None, validator=_existing_file)
    nkey_file: str | None = attrs.field(default=None, validator=_existing_file)
    tls_ca: str | None = attrs.field(default=None, validator=_existing_file)
    tls_cert: str | None = attrs.field(default=None, validator=_existing_file)
    tls_key: str | None = attrs.field(default=None, validator=_existing_file)
    connect_timeout: float = 5.0
    reconnect_wait: float = 0.5
    max_reconnect_attempts: int = -1

    def __attrs_post_init__(self) -> None:
        if (self.user is None) != (self.password is None):
            raise ValueError("user and password go together: give both or neither")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together: give both or neither")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> ConnectOptions:
        """Read NATS_URL (comma-separated), NATS_USER, NATS_PASSWORD, NATS_TOKEN,
        NATS_CREDS, NATS_NKEY, NATS_CA, NATS_CERT and NATS_KEY; `overrides` that are
        not None win (flags over environment)."""
        env = os.environ if environ is None else environ
        names = {
            "servers": "NATS_URL", "user": "NATS_USER", "password": "NATS_PASSWORD",
            "token": "NATS_TOKEN", "creds_file": "NATS_CREDS", "nkey_file": "NATS_NKEY",
            "tls_ca": "NATS_CA",
            "tls_cert": "NATS_CERT", "tls_key": "NATS_KEY",
        }
        values: dict[str, Any] = {field: env[var] for field, var in names.items() if env.get(var)}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    @property
    def embedded(self) -> bool:
        return not self.servers

    @property
    def has_credentials(self) -> bool:
        """True if any way to log in is given (a user, token, creds or nkey file)."""
        return any(value is not None for value in
                   (self.user, self.token, self.creds_file, self.nkey_file))

    def with_servers(self, *servers: str) -> ConnectOptions:
        return attrs.evolve(self, servers=servers)

    def tls_context(self) -> ssl.SSLContext | None:
        if not (self.tls_ca or self.tls_cert):
            return None
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.tls_ca)
        if self.tls_cert and self.tls_key:
            context.load_cert_chain(self.tls_cert, self.tls_key)
        return context

    def nats_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `nats.aio.client.Client.connect`."""
        if not self.servers:
            raise ValueError("no NATS servers: start the embedded server first")
        kwargs: dict[str, Any] = {
            "servers": list(self.servers),
            "name": self.name,
            "connect_timeout": self.connect_timeout,
            "reconnect_time_wait": self.reconnect_wait,
            "max_reconnect_attempts": self.max_reconnect_attempts,
            "allow_reconnect": True,
        }
        if self.user is not None:
            kwargs.update(user=self.user, password=self.password)
        if self.token is not None:
            kwargs["token"] = self.token
        if self.creds_file is not None:
            kwargs["user_credentials"] = self.creds_file
        if self.nkey_file is not None:
            kwargs["nkeys_seed"] = self.nkey_file
        tls = self.tls_context()
        if tls is not None:
            kwargs["tls"] = tls
        return kwargs

    def refused(self) -> str:
        """One line for a server that refused us: "authorization violation", and why."""
        if not self.has_credentials:
            why = ("we gave no credentials and know none of yours for it: give --nkey FILE "
                   "(its owner issues one with `noetl credentials issue`), --creds FILE or "
                   "--user NAME")
        else:
            given = (f"user {self.user}" if self.user else "a token" if self.token
                     else f"nkey {self.nkey_file}" if self.nkey_file
                     else f"creds {self.creds_file}")
            why = f"the server refused our credentials ({given})"
        return f"{self.describe()}: authorization violation: {why}"

    def describe(self) -> str:
        """The servers, without secrets, for messages."""
        return ", ".join(self.servers) or "the embedded server"
