"""What an embedded nats-server leaves in its state dir for the next start there.

A server started with `remember` writes ``nats-server.json`` in its state
dir once it is ready: its pid and start time, its owner's (the process that
started it), and its port. The next server on that state dir reads it:

- a former server still alive whose owner lives too is in use (a node or
  `noetl server` runs there): refused, since two servers must never share a
  store (JetStream does not lock it);
- a former server whose owner is dead is on its way out (its watchdog sent
  it SIGTERM when the owner died): the start waits for it, bounded, sends it
  SIGTERM itself if it lingers, and refuses if it still runs;
- a remembered port that is free is taken again, so the `NATS_URL` users
  kept from the last start still works; a taken one is not.

Any start reads the file (a `noetl events --state-dir` must not open a
store a node is using); only remembering servers write it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
from pathlib import Path
from typing import Any

import attrs

from noetl_actors._process import is_process, started, wait_gone
from noetl_actors.errors import StoreInUse

__all__ = ["STATE_FILE", "FormerServer", "default_state_dir", "port_is_free", "read_former",
           "write_state"]

logger = logging.getLogger("noetl_actors.bridge")

def default_state_dir() -> Path:
    """Where a node keeps its state: $XDG_STATE_HOME/noetl-actors or ~/.local/state/..."""
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "noetl-actors"


STATE_FILE = "nats-server.json"
LINGER = 10.0
"""Seconds a former server may take to exit once its owner is gone (it flushes its store)."""


@attrs.frozen
class FormerServer:
    """The server the state file names (it may be long gone)."""

    pid: int | None
    process: str | None
    owner: int | None
    owner_process: str | None
    port: int | None

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> FormerServer:
        def number(key: str) -> int | None:
            value = data.get(key)
            return value if isinstance(value, int) and not isinstance(value, bool) else None

        def text(key: str) -> str | None:
            value = data.get(key)
            return value if isinstance(value, str) else None

        return cls(pid=number("pid"), process=text("process"), owner=number("owner"),
                   owner_process=text("owner_process"), port=number("port"))

    def runs(self) -> bool:
        return self.pid is not None and is_process(self.pid, self.process)

    def owner_runs(self) -> bool:
        return self.owner is not None and is_process(self.owner, self.owner_process)

    def wait_gone(self, state_dir: Path, *, linger: float = LINGER) -> None:
        """Return once this server no longer runs.

        Raises:
            StoreInUse: its owner lives, or it outlived its owner and SIGTERM.
        """
        if not self.runs():
            return
        assert self.pid is not None
        if self.owner is not None and self.owner_runs():
            url = f"nats://127.0.0.1:{self.port}"
            join = f", on {url}: join it with --nats {url}," if self.port is not None else ":"
            raise StoreInUse(
                f"state dir {state_dir} is in use by the nats-server of process {self.owner}"
                f"{_command_of(self.owner)}{join} stop that process, or give this one "
                "another --state-dir")
        logger.info("the nats-server of a former start (pid %d) is still exiting; waiting "
                    "for it", self.pid)
        if wait_gone(self.pid, self.process, linger / 2):
            return
        if self.process is not None:  # known to be that very server: ask it ourselves
            logger.warning("the nats-server of a former start (pid %d) outlived its owner; "
                           "stopping it", self.pid)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(self.pid, signal.SIGTERM)
            if wait_gone(self.pid, self.process, linger / 2):
                return
        raise StoreInUse(
            f"the nats-server of a former start (pid {self.pid}) still runs on state dir "
            f"{state_dir} and did not exit within {linger:g}s; stop it (kill {self.pid}) and "
            "start again")


def read_former(state_dir: Path) -> FormerServer | None:
    """What the state file of `state_dir` says; None if there is none (or it is unreadable)."""
    try:
        data = json.loads((state_dir / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return FormerServer.from_data(data) if isinstance(data, dict) else None


def write_state(state_dir: Path, *, pid: int | None, port: int | None) -> None:
    """Record the server now on `state_dir` (`pid` None: stopped; the port is kept)."""
    data = {"pid": pid, "process": started(pid) if pid is not None else None,
            "owner": os.getpid(), "owner_process": started(os.getpid()), "port": port}
    path = state_dir / STATE_FILE
    temporary = path.with_suffix(".tmp")
    try:
        temporary.write_text(json.dumps(data) + "\n")
        temporary.replace(path)  # never half a file, whoever reads it
    except OSError as error:
        logger.warning("could not write %s: %s", path, error)


def port_is_free(port: int) -> bool:
    """True if a server could listen on 127.0.0.1:`port` now (as nats-server does:
    connections of a former server in TIME_WAIT do not stop it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _command_of(pid: int) -> str:
    """`` (its command line)`` where /proc tells it, else nothing."""
    try:
        line = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").strip()
    except OSError:
        return ""
    return f" ({line.decode(errors='replace')[:120]})" if line else ""
