"""Contexts: how every `noetl` command of a user finds that user's embedded servers.

Like the `nats` CLI's contexts, but written by the server rather than by
hand. A node or `noetl server` that starts an embedded server with users
writes one file for it, mode 0600 in a 0700 folder:

    $XDG_STATE_HOME/noetl-actors/contexts/nats-127.0.0.1-<port>.json
    {"url": ..., "state_dir": ..., "admin": <seed file>, "node": <seed file>,
     "ca": ..., "cert": ..., "key": ..., "pid": ..., "process": ...}

A command given `--nats URL` (or NATS_URL) and no credentials uses the
context of that URL, if there is one; a cluster command given no URL at all
uses the newest context whose server still runs. Nodes and workers use the
`node` seed, every other command the `admin` one. Another user of the
machine can read neither the context nor the seeds it names (their folders
are 0700), so their commands get "authorization violation".
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import attrs

from noetl_actors._process import is_process, started
from noetl_actors.bridge._auth import private_dir, write_private
from noetl_actors.bridge._options import ConnectOptions
from noetl_actors.bridge._server_state import default_state_dir

__all__ = ["Context", "contexts_dir", "find_context", "remove_context", "use_context",
           "write_context"]

logger = logging.getLogger("noetl_actors.bridge")


def contexts_dir() -> Path:
    return default_state_dir() / "contexts"


def _key(url: str) -> str | None:
    """``127.0.0.1-4222`` for a loopback URL (localhost and 127.0.0.1 are one); None
    for another host, which has no context."""
    parts = urlsplit(url if "://" in url else f"nats://{url}")
    host = parts.hostname or ""
    if host not in ("127.0.0.1", "localhost", "::1"):
        return None
    try:
        port = parts.port or 4222
    except ValueError:
        return None
    return f"127.0.0.1-{port}"


@attrs.frozen(kw_only=True)
class Context:
    """One embedded server of this user's, and the files to reach it."""

    url: str
    state_dir: str
    admin: str | None = None
    node: str | None = None
    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    pid: int | None = None
    process: str | None = None

    def runs(self) -> bool:
        return self.pid is not None and is_process(self.pid, self.process)

    def options(self, options: ConnectOptions, *, role: str) -> ConnectOptions:
        """`options` with this context's URL (if they have none), seed and TLS files."""
        seed = self.node if role == "node" else self.admin
        changes: dict[str, Any] = {"nkey_file": seed}
        if not options.servers:
            changes["servers"] = (self.url,)
        if self.ca and options.tls_ca is None:
            changes.update(tls_ca=self.ca, tls_cert=self.cert, tls_key=self.key)
        return attrs.evolve(options, **{k: v for k, v in changes.items() if v is not None})


def write_context(context: Context) -> Path | None:
    """Write `context` (replacing that URL's); also removes contexts of servers that
    are gone. Returns its file (None if it could not be written: logged)."""
    key = _key(context.url)
    if key is None:
        return None
    folder = contexts_dir()
    try:
        private_dir(folder)
        for path in folder.glob("nats-*.json"):
            other = _read(path)
            if other is None or not other.runs():
                with contextlib.suppress(OSError):
                    path.unlink()
        data = attrs.asdict(context)
        for field in ("state_dir", "admin", "node", "ca", "cert", "key"):
            if data[field] is not None:  # read by commands run from other folders
                data[field] = os.path.abspath(data[field])
        data["process"] = data["process"] or (
            started(context.pid) if context.pid is not None else None)
        return write_private(folder / f"nats-{key}.json", json.dumps(data, indent=1))
    except OSError as error:
        logger.warning("could not write the context of %s in %s: %s", context.url, folder,
                       error)
        return None


def remove_context(url: str, *, pid: int | None = None) -> None:
    """Remove the context of `url` (only if it is server `pid`'s, when given)."""
    key = _key(url)
    if key is None:
        return
    path = contexts_dir() / f"nats-{key}.json"
    found = _read(path)
    if found is not None and (pid is None or found.pid == pid):
        with contextlib.suppress(OSError):
            path.unlink()


def find_context(url: str | None = None) -> Context | None:
    """The context of `url`; with no url, the newest one whose server runs."""
    folder = contexts_dir()
    if url is not None:
        key = _key(url)
        return _read(folder / f"nats-{key}.json") if key is not None else None
    candidates = []
    for path in folder.glob("nats-*.json"):
        context = _read(path)
        if context is not None and context.runs():
            with contextlib.suppress(OSError):
                candidates.append((path.stat().st_mtime, context))
    return max(candidates, key=lambda pair: pair[0])[1] if candidates else None


def use_context(options: ConnectOptions, *, role: str = "admin",
                current: bool = False) -> ConnectOptions:
    """`options` as given if they carry credentials; else with those of the context of
    their (first) server, or with `current` and no server, of the newest running one."""
    if options.has_credentials:
        return options
    if options.servers:
        context = find_context(options.servers[0])
    elif current:
        context = find_context()
    else:
        return options
    return context.options(options, role=role) if context is not None else options


def _read(path: Path) -> Context | None:
    try:
        data = json.loads(path.read_text())
        fields = {field.name for field in attrs.fields(Context)}
        return Context(**{k: v for k, v in data.items() if k in fields})
    except (OSError, ValueError, TypeError):
        return None
