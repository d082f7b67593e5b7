"""Helpers for the tests of `noetl node start` as a real subprocess.

`running_node` starts a node in its own session and state directory, waits
(bounded) for its "is up on" line and always stops it: SIGTERM, then SIGKILL of
its whole tree after a bound. `running_server` does the same for a standalone
`noetl server`. `Cli` runs the cluster commands (`submit`, `status`, `tree`, ...)
against one NATS address, each with a timeout.

Every process these helpers start is in a new session, so whatever it leaves
behind (its embedded nats-server, a plugin's subprocess) is found and killed.
Processes are looked up in /proc (Linux).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from tests.run_helpers import REPO, Result, cli_command, kill_tree, noetl, wait_until

START_TIMEOUT = 30.0
"""A node is up in about a second; this bounds a broken start."""
STOP_TIMEOUT = 20.0
"""SIGTERM to exit; past it the node's whole tree is killed (and the test fails)."""
HEARTBEAT = 0.3
NODE_CONFIG = f"heartbeat: {HEARTBEAT}s\n"
"""Merged over supervisors/node.yaml: quick heartbeats, so a lost node is seen in ~2 s."""

_UP = re.compile(r"^node (\S+) is up on ((?:nats|tls)://\S+) ")
_SERVER_UP = re.compile(r"^nats-server on ((?:nats|tls)://\S+) ")


def clean_env() -> dict[str, str]:
    """The environment without NATS_* variables: every command gets `--nats` explicitly."""
    return {key: value for key, value in os.environ.items() if not key.startswith("NATS_")}


@attrs.define
class Spawned:
    """A long-running `noetl` subprocess, its stdout and stderr in files."""

    proc: subprocess.Popen[bytes]
    stdout_path: Path
    stderr_path: Path
    returncode: int | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def wait_for_line(self, pattern: re.Pattern[str], timeout: float) -> re.Match[str]:
        """The first stdout line matching `pattern`; fails (with stderr) past `timeout`
        or if the process exits first."""
        deadline = time.monotonic() + timeout
        while True:
            for line in self.stdout().splitlines():
                match = pattern.match(line)
                if match:
                    return match
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"{' '.join(map(str, self.proc.args))} exited {self.proc.returncode} "
                    f"before printing its address\nstdout:\n{self.stdout()}\n"
                    f"stderr:\n{self.stderr()}")
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"no address from {' '.join(map(str, self.proc.args))} within "
                    f"{timeout}s\nstdout:\n{self.stdout()}\nstderr:\n{self.stderr()}")
            time.sleep(0.05)

    def terminate(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM, wait up to `timeout`; the exit status, or None if it had to be killed."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                return None
        self.returncode = self.proc.returncode
        return self.returncode

    def kill(self) -> None:
        """SIGKILL the process, its process group and every descendant."""
        kill_tree(self.proc.pid)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)

    def cleanup(self) -> None:
        """Stop it if it still runs, and kill anything left in its session."""
        if self.proc.poll() is None:
            self.terminate()
        kill_tree(self.proc.pid)  # its session: an orphaned nats-server or plugin child


def spawn(args: list[str], folder: Path, name: str, *, cwd: Path = REPO) -> Spawned:
    folder.mkdir(parents=True, exist_ok=True)
    stdout_path, stderr_path = folder / f"{name}.out", folder / f"{name}.err"
    with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
        proc = subprocess.Popen(args, cwd=cwd, env=clean_env(), stdin=subprocess.DEVNULL,
                                stdout=out, stderr=err, start_new_session=True)
    return Spawned(proc, stdout_path, stderr_path)


@attrs.define
class NodeProcess:
    """A running `noetl node start`."""

    name: str
    url: str
    spawned: Spawned
    state_dir: Path

    @property
    def proc(self) -> subprocess.Popen[bytes]:
        return self.spawned.proc

    @property
    def pid(self) -> int:
        return self.spawned.pid

    def stderr(self) -> str:
        return self.spawned.stderr()

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        return self.spawned.terminate(timeout)


@contextlib.contextmanager
def running_node(folder: Path, name: str, *, nats: str | None = None,
                 config: str = NODE_CONFIG, args: Sequence[str] = ()) -> Iterator[NodeProcess]:
    """`noetl node start --name NAME` (embedded NATS unless `nats`; `args` after the
    others), up, then stopped."""
    folder = folder / f"node-{name}"
    folder.mkdir(parents=True, exist_ok=True)
    config_file = folder / "node.yaml"
    config_file.write_text(config)
    state_dir = folder / "state"
    command = cli_command("node", "start", "--name", name, "--state-dir", state_dir,
                          "--config", config_file)
    if nats is not None:
        command += ["--nats", nats]
    spawned = spawn([*command, *args], folder, "node")
    try:
        match = spawned.wait_for_line(_UP, START_TIMEOUT)
        assert match.group(1) == name, match.group(0)
        yield NodeProcess(name, match.group(2), spawned, state_dir)
    finally:
        spawned.cleanup()


@contextlib.contextmanager
def running_server(folder: Path, *extra: str) -> Iterator[str]:
    """`noetl server EXTRA...`: a standalone nats-server for several nodes; its URL."""
    folder = folder / "server"
    spawned = spawn(cli_command("server", "--state-dir", folder / "state", *extra), folder,
                    "server")
    try:
        yield spawned.wait_for_line(_SERVER_UP, START_TIMEOUT).group(1)
    finally:
        spawned.cleanup()


# -- the cluster commands ---------------------------------------------------------------


@attrs.frozen
class Cli:
    """`noetl ...` against one NATS address, each call bounded by `timeout`."""

    url: str
    timeout: float = 30.0

    def __call__(self, *args: str | os.PathLike[str], timeout: float | None = None) -> Result:
        return noetl(*args, "--nats", self.url, cwd=REPO, env=clean_env(),
                     timeout=self.timeout if timeout is None else timeout)

    def ok(self, *args: str | os.PathLike[str], timeout: float | None = None) -> Result:
        """Run it and require exit 0."""
        result = self(*args, timeout=timeout)
        assert result.returncode == 0, (
            f"noetl {' '.join(map(str, args))} exited {result.returncode}\n"
            f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}")
        return result

    def json(self, *args: str | os.PathLike[str]) -> dict[str, Any]:
        """Run it with --json (exit 0 or 1: `status` exits 1 for a failed workflow)."""
        result = self(*args, "--json")
        assert result.returncode in (0, 1) and result.stdout, (
            f"noetl {' '.join(map(str, args))} --json exited {result.returncode}\n"
            f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}")
        return result.document()

    def submit(self, path: Path, *extra: str) -> str:
        """Start a workflow; its id."""
        return self.ok("submit", path, *extra).stdout.strip()

    def status(self, workflow_id: str) -> dict[str, Any]:
        return self.json("status", workflow_id)

    def tree(self) -> dict[str, dict[str, Any]]:
        """`noetl tree --json` by node name."""
        return {node["name"]: node for node in self.json("tree")["nodes"]}

    def events(self, workflow_id: str) -> list[dict[str, Any]]:
        result = self.ok("events", workflow_id, "--json")
        return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]

    def wait_status(self, workflow_id: str, wanted: str | set[str],
                    timeout: float = 20.0) -> dict[str, Any]:
        """Poll `status` until the workflow's status is `wanted`; the record."""
        wanted = {wanted} if isinstance(wanted, str) else wanted
        seen: dict[str, Any] = {}

        def reached() -> dict[str, Any] | None:
            seen["record"] = record = self.status(workflow_id)
            return record if record["status"] in wanted else None

        try:
            return wait_until(reached, timeout, f"{workflow_id} to be {wanted}", 0.1)  # type: ignore[no-any-return]
        except AssertionError as error:
            record = seen.get("record", {})
            raise AssertionError(f"{error}; last status {record.get('status')}: "
                                 f"{json.dumps(record.get('tasks'))}") from None


def actor(tree: Mapping[str, Any], path: str) -> dict[str, Any] | None:
    """The actor at `path` in a `tree --json` node's tree, or None."""
    todo = [tree]
    while todo:
        picture = todo.pop()
        if picture["path"] == path:
            return dict(picture)
        todo.extend(picture.get("children", []))
    return None


def processes_with(marker: str) -> dict[int, str]:
    """Every living process whose command line holds `marker`: pid -> command line."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            line = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text()
        except OSError:
            continue
        if marker in line and state[state.rindex(")") + 2:][:1] not in ("Z", "X"):
            found[int(entry.name)] = line
    return found


# -- the raw API (nats-py), for requests the CLI would never send ---------------------


def login(url: str) -> dict[str, Any]:
    """nats-py's connect arguments for `url`: this user's admin seed for a server that a
    node or `noetl server` of this test run started (its context), else none."""
    from noetl_actors.bridge import find_context

    context = find_context(url)
    return {"nkeys_seed": context.admin} if context is not None and context.admin else {}


def raw_requests(url: str, requests: list[tuple[str, bytes]],
                 timeout: float = 5.0) -> list[dict[str, Any] | None]:
    """Send each (subject, payload) as a NATS request; each reply as JSON, None if
    none came within `timeout`."""
    import nats
    import nats.errors

    async def go() -> list[dict[str, Any] | None]:
        nc = await nats.connect(url, allow_reconnect=False, max_reconnect_attempts=0,
                                **login(url))
        replies: list[dict[str, Any] | None] = []
        try:
            for subject, payload in requests:
                try:
                    msg = await nc.request(subject, payload, timeout=timeout)
                except nats.errors.TimeoutError:
                    replies.append(None)
                    continue
                replies.append(json.loads(msg.data))
        finally:
            await nc.close()
        return replies

    return asyncio.run(go())


def read_record(url: str, workflow_id: str) -> dict[str, Any] | None:
    """A workflow's record straight from the ``noetl-workflows`` bucket (no node needed)."""
    import nats
    from nats.js.errors import KeyNotFoundError

    async def go() -> dict[str, Any] | None:
        nc = await nats.connect(url, allow_reconnect=False, max_reconnect_attempts=0,
                                **login(url))
        try:
            kv = await nc.jetstream().key_value("noetl-workflows")
            try:
                entry = await kv.get(workflow_id)
            except KeyNotFoundError:
                return None
            return json.loads(entry.value) if entry.value else None
        finally:
            await nc.close()

    return asyncio.run(go())


def claimed_keys(url: str) -> list[str]:
    """The keys of the ``noetl-claims`` bucket: the attempts workers claimed."""
    import nats
    from nats.js.errors import NoKeysError

    async def go() -> list[str]:
        nc = await nats.connect(url, allow_reconnect=False, max_reconnect_attempts=0,
                                **login(url))
        try:
            kv = await nc.jetstream().key_value("noetl-claims")
            try:
                return list(await kv.keys())
            except NoKeysError:
                return []
        finally:
            await nc.close()

    return asyncio.run(go())
