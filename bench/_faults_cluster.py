"""The fault suite's cluster: one `noetl server`, nodes and a `noetl worker`, and the kills.

Everything is a real process on loopback: ``noetl server --state-dir D
--port P`` is the NATS (restarted on the same port and store), each node is
``noetl node start --nats URL --name nX --config C --state-dir S`` with
workers for every plugin, and one ``noetl worker --nats URL --plugin shell``
takes shell steps beside them. Each kill is a SIGKILL of a process the
suite started or of a descendant of one (found in /proc).
"""

from __future__ import annotations

import re
import shutil
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from _faults_procs import Proc, Processes, command_line, descendants, kill9, name_of, noetl

START_TIMEOUT = 60.0
"""Seconds a process has to print its "up" line (nodes start in ~1-2 s when idle)."""
SERVER_UP = re.compile(r"^nats-server on (nats://\S+) ")
NODE_UP = re.compile(r"^node (\S+) is up on (nats://\S+) ")
WORKER_UP = re.compile(r"^workers for ")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Cluster:
    """The processes of one run of the suite, by role."""

    procs: Processes
    folder: Path
    config: Path
    lines: Path
    port: int = field(default_factory=free_port)
    server: Proc | None = None
    nodes: dict[str, Proc] = field(default_factory=dict)
    worker: Proc | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start_server(self) -> None:
        """`noetl server` on the cluster's port and store; returns once it listens."""
        self.server = self.procs.start("server", noetl(
            "server", "--state-dir", self.folder / "nats-state", "--port", str(self.port)),
            stop_last=True)
        url = self.server.wait_line(SERVER_UP, START_TIMEOUT).group(1)
        if url != self.url:
            raise RuntimeError(f"noetl server listens on {url}, not on {self.url}")

    def start_nodes(self, count: int) -> None:
        """`count` nodes n1, n2, ...; returns once every one is up."""
        for n in range(1, count + 1):
            name = f"n{n}"
            self.nodes[name] = self.procs.start(name, noetl(
                "node", "start", "--nats", self.url, "--name", name, "--config", self.config,
                "--state-dir", self.folder / name))
        for name, proc in self.nodes.items():
            up = proc.wait_line(NODE_UP, START_TIMEOUT).group(1)
            if up != name:
                raise RuntimeError(f"node {name} says it is {up}")

    def start_worker(self) -> None:
        """A `noetl worker` for the shell plugin; returns once it is up."""
        self.worker = self.procs.start("worker", noetl(
            "worker", "--nats", self.url, "--plugin", "shell"))
        self.worker.wait_line(WORKER_UP, START_TIMEOUT)

    def live_nodes(self) -> list[str]:
        return [name for name, proc in self.nodes.items() if proc.alive()]

    # -- the kills ---------------------------------------------------------------------

    def kill_plugin(self) -> str | None:
        """kill -9 a `sh` running one of the suite's steps under the `noetl worker` (else
        under a node); what was done, or None if no step's `sh` runs now."""
        owners = ([self.worker] if self.worker else []) + list(self.nodes.values())
        for proc in owners:
            if not proc.alive():
                continue
            for pid in descendants(proc.pid):
                line = command_line(pid)
                if name_of(pid) == "sh" and str(self.lines) in line and kill9(pid):
                    said = line.split("echo ", 1)[-1].split(" >>", 1)[0]
                    return f"killed plugin subprocess sh (pid {pid}) under {proc.name}: {said}"
        return None

    def kill_worker(self) -> str:
        """kill -9 the `noetl worker`, and start a new one; what was done."""
        assert self.worker is not None
        old = self.worker
        self.procs.kill(old)
        self.start_worker()
        return f"killed noetl worker (pid {old.pid}); started {self.worker.name} " \
               f"(pid {self.worker.pid})"

    def kill_node(self, name: str) -> None:
        """kill -9 node `name`; it is not started again."""
        self.procs.kill(self.nodes[name])

    def kill_nats(self, down: float) -> str:
        """kill -9 the nats-server and its `noetl server`, wait `down` seconds, start
        `noetl server` again on the same port and store; what was done."""
        assert self.server is not None
        old = self.server
        self.procs.remember()
        real = [pid for pid in descendants(old.pid) if name_of(pid) == "nats-server"]
        if not real:
            raise RuntimeError(f"no nats-server process under noetl server (pid {old.pid})")
        run_dirs = [_option(command_line(pid), "--ports_file_dir") for pid in real]
        began = time.monotonic()
        for pid in real:
            kill9(pid)
        self.procs.kill(old)
        for folder in run_dirs:  # what its `noetl server` would have removed at its exit
            if folder is not None and Path(folder).name.startswith("noetl-nats-"):
                shutil.rmtree(folder, ignore_errors=True)
        time.sleep(max(down - (time.monotonic() - began), 0.0))
        self.start_server()
        return (f"killed nats-server (pid {', '.join(map(str, real))}) and noetl server "
                f"(pid {old.pid}); noetl server up again on {self.url} after "
                f"{time.monotonic() - began:.1f}s")


def _option(line: str, name: str) -> str | None:
    """The value of option `name` in a command line, or None."""
    words = line.split()
    return words[words.index(name) + 1] if name in words[:-1] else None
