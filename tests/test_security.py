"""Credentials by default: who may connect to a node's NATS, and what each role may do.

Real `noetl node start` processes with their embedded server (credentials on,
as every user gets them), real `noetl` commands, and raw nats-py connections
for what the CLI would never send. "Another user" is a process whose state
home is not ours: it has no context and cannot read our seeds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import pytest

from tests.node_helpers import (
    NODE_CONFIG,
    START_TIMEOUT,
    Cli,
    NodeProcess,
    clean_env,
    running_node,
    running_server,
    spawn,
)
from tests.run_helpers import EXAMPLES, REPO, cli_command, cmdline, descendants, noetl, wait_until

pytestmark = pytest.mark.timeout(180)

HELLO = EXAMPLES / "hello.yaml"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def as_stranger(folder: Path) -> dict[str, str]:
    """The environment of another local user: no NATS_*, a state home of its own."""
    home = folder / "stranger-state"
    home.mkdir(exist_ok=True)
    return {**clean_env(), "XDG_STATE_HOME": str(home)}


def own(*args: Any, folder: Path, env: dict[str, str] | None = None) -> Any:
    """`noetl ARGS` as the user who started the node (no --nats unless given)."""
    return noetl(*args, cwd=folder, env=env or clean_env(), timeout=60)


def violations(url: str, seed: Path, *, publish: tuple[str, ...] = (),
               subscribe: tuple[str, ...] = ()) -> list[str]:
    """Connect with `seed`, publish and subscribe as told; the errors the server sent."""

    async def go() -> list[str]:
        errors: list[str] = []

        async def on_error(error: Exception) -> None:
            errors.append(str(error))

        nc = await nats.connect(url, error_cb=on_error, allow_reconnect=False,
                                max_reconnect_attempts=0, nkeys_seed=str(seed))
        try:
            for subject in subscribe:
                await nc.subscribe(subject)
            for subject in publish:
                await nc.publish(subject, b"{}")
            await nc.flush()
            expected = len(publish) + len(subscribe)
            for _ in range(100):  # the server's -ERR comes after the flush's PONG at times
                if len(errors) >= expected:
                    break
                await asyncio.sleep(0.02)
        finally:
            await nc.close()
        return errors

    return asyncio.run(go())


@pytest.fixture
def node(tmp_path: Path) -> Iterator[NodeProcess]:
    with running_node(tmp_path, "alpha") as started:
        yield started


def issue(folder: Path, role: str, name: str, *extra: str) -> Path:
    out = folder / f"{name}.nk"
    result = own("credentials", "issue", role, name, "-o", out, *extra, folder=folder)
    assert result.returncode == 0, result.stderr
    return out


class TestByDefault:
    def test_the_first_start_makes_private_credentials_and_no_secret_is_on_a_command_line(
            self, node: NodeProcess) -> None:
        state, auth = node.state_dir, node.state_dir / "auth"
        assert mode(state) == 0o700 and mode(auth) == 0o700
        for seed in ("node.nk", "admin.nk"):
            assert mode(auth / seed) == 0o600
            assert (auth / seed).read_text().startswith("SU")  # an nkey user seed
        contexts = list((Path(os.environ["XDG_STATE_HOME"]) / "noetl-actors" / "contexts")
                        .glob("nats-*.json"))
        ours = [path for path in contexts if str(state) in path.read_text()]
        assert len(ours) == 1 and mode(ours[0]) == 0o600
        assert mode(ours[0].parent) == 0o700
        server = [pid for pid in sorted(descendants(node.pid))
                  if "nats-server --config" in cmdline(pid)]
        assert server, "no nats-server under the node"
        line = cmdline(server[0])
        assert str(state / "nats-server.conf") in line
        assert "--pass" not in line and "--auth" not in line and "--user" not in line
        assert "--http_port" not in line  # monitoring off unless asked for

    def test_the_same_user_needs_no_flag_and_another_gets_authorization_violation(
            self, node: NodeProcess, tmp_path: Path) -> None:
        submitted = own("submit", HELLO, "--wait", "--nats", node.url, folder=tmp_path)
        assert submitted.returncode == 0, submitted.stderr
        listed = own("list", folder=tmp_path)  # not even --nats: this user's running server
        assert listed.returncode == 0, listed.stderr
        assert "hello" in listed.stdout

        stranger = noetl("list", "--nats", node.url, cwd=tmp_path, env=as_stranger(tmp_path),
                         timeout=60)
        assert stranger.returncode == 1
        lines = stranger.stderr.strip().splitlines()
        assert len(lines) == 1, stranger.stderr
        assert "authorization violation" in lines[0]
        node_start = noetl("node", "start", "--name", "intruder", "--nats", node.url,
                           "--state-dir", tmp_path / "intruder", cwd=tmp_path,
                           env=as_stranger(tmp_path), timeout=60)
        assert node_start.returncode == 1
        assert "authorization violation" in node_start.stderr
        assert "Traceback" not in node_start.stderr + stranger.stderr
        # a bare nats-py client, as in the issue (in a process of its own: nats-py leaves
        # the refused socket open)
        bare = subprocess.run(
            [sys.executable, "-c", "import asyncio, sys, nats\n"
             "asyncio.run(nats.connect(sys.argv[1], allow_reconnect=False, "
             "max_reconnect_attempts=0))", node.url],
            capture_output=True, text=True, timeout=60, check=False)
        assert bare.returncode != 0 and "Authorization Violation" in bare.stderr, bare.stderr


class TestRoles:
    def test_a_client_submits_but_cannot_publish_a_command_nor_touch_an_actor(
            self, node: NodeProcess, tmp_path: Path) -> None:
        seed = issue(tmp_path, "client", "carol")
        env = as_stranger(tmp_path)
        run = noetl("submit", HELLO, "--wait", "--nats", node.url, "--nkey", seed,
                    cwd=tmp_path, env=env, timeout=60)
        assert run.returncode == 0, run.stderr
        workflow_id = noetl("list", "--nats", node.url, "--nkey", seed, "--json", cwd=tmp_path,
                            env=env).document()["workflows"][0]["workflow_id"]
        history = noetl("events", workflow_id, "--nats", node.url, "--nkey", seed,
                        cwd=tmp_path, env=env, timeout=60)
        assert history.returncode == 0, history.stderr
        assert "succeeded" in history.stdout

        denied = violations(node.url, seed, publish=("command.shell.wf-x.t=s",
                                                     "event.echo.wf-x.t=s"))
        assert len(denied) == 2 and all("permissions violation" in e for e in denied), denied
        kill = noetl("kill", "/alpha/services/api", "--nats", node.url, "--nkey", seed,
                     cwd=tmp_path, env=env, timeout=60)
        assert kill.returncode == 1
        assert "permissions violation" in kill.stderr and "noetl.actor.alpha" in kill.stderr

    def test_a_viewer_reads_but_cannot_submit_or_cancel(
            self, node: NodeProcess, tmp_path: Path) -> None:
        workflow_id = Cli(node.url).submit(HELLO)
        seed = issue(tmp_path, "viewer", "vera")
        env = as_stranger(tmp_path)

        def viewer(*args: Any) -> Any:
            return noetl(*args, "--nats", node.url, "--nkey", seed, cwd=tmp_path, env=env,
                         timeout=60)

        submit = viewer("submit", HELLO)
        assert submit.returncode == 1
        assert len(submit.stderr.strip().splitlines()) == 1, submit.stderr
        assert "permissions violation" in submit.stderr and "noetl.api.submit" in submit.stderr
        assert "noetl.api.cancel" in viewer("cancel", workflow_id).stderr
        wait_until(lambda: viewer("status", workflow_id).returncode == 0, 30,
                   "the workflow to succeed, as the viewer reads it")
        assert viewer("list").returncode == 0
        assert viewer("tree").returncode == 0
        assert "succeeded" in viewer("events", workflow_id).stdout

    def test_a_worker_may_take_only_its_plugins_commands(
            self, node: NodeProcess, tmp_path: Path) -> None:
        seed = issue(tmp_path, "worker", "wendy", "--plugin", "echo")
        assert violations(node.url, seed, subscribe=("command.echo.>",)) == []
        denied = violations(node.url, seed, subscribe=("command.shell.>",),
                            publish=("noetl.api.submit", "event.shell.wf-x.t=s"))
        assert len(denied) == 3 and all("permissions violation" in e for e in denied), denied
        refused = own("credentials", "issue", "worker", "nobody", folder=tmp_path)
        assert refused.returncode == 1 and "--plugin" in refused.stderr

    def test_a_revoked_user_is_dropped_and_refused(
            self, node: NodeProcess, tmp_path: Path) -> None:
        seed = issue(tmp_path, "client", "bob")
        env = as_stranger(tmp_path)
        assert noetl("list", "--nats", node.url, "--nkey", seed, cwd=tmp_path,
                     env=env).returncode == 0
        listed = own("credentials", "list", "--nats", node.url, folder=tmp_path)
        assert "bob" in listed.stdout and "client" in listed.stdout

        async def connected_then_revoked() -> bool:
            closed = asyncio.Event()

            async def on_closed() -> None:
                closed.set()

            async def on_error(_error: Exception) -> None:
                pass

            nc = await nats.connect(node.url, nkeys_seed=str(seed), allow_reconnect=False,
                                    closed_cb=on_closed, error_cb=on_error)
            revoked = await asyncio.to_thread(
                own, "credentials", "revoke", "bob", "--nats", node.url, folder=tmp_path)
            assert revoked.returncode == 0, revoked.stderr
            try:
                await asyncio.wait_for(closed.wait(), 20)
            except TimeoutError:
                return False
            finally:
                await nc.close()
            return True

        assert asyncio.run(connected_then_revoked()), "the revoked user's connection stayed"
        again = noetl("list", "--nats", node.url, "--nkey", seed, cwd=tmp_path, env=env)
        assert again.returncode == 1
        assert "authorization violation" in again.stderr
        assert "bob" not in own("credentials", "list", folder=tmp_path).stdout


@contextlib.contextmanager
def node_and_credentialed_worker(tmp_path: Path, plugin: str) -> Iterator[NodeProcess]:
    """A node that runs no `plugin` worker of its own, and a `noetl worker --plugin`
    process with `worker` credentials that does; neither may have met a permission
    violation by the end."""
    config = f"heartbeat: 0.5s\nworkers:\n  plugins:\n    {plugin}: {{enabled: false}}\n"
    with running_node(tmp_path, "alpha", config=config) as started:
        seed = issue(tmp_path, "worker", "wendy", "--plugin", plugin)
        env = as_stranger(tmp_path)
        worker = spawn(["env", f"XDG_STATE_HOME={env['XDG_STATE_HOME']}",
                        *map(str, cli_command("worker", "--nats", started.url, "--nkey", seed,
                                                 "--plugin", plugin))], tmp_path, "worker")
        try:
            worker.wait_for_line(re.compile(rf"^workers for {plugin} on "), 60)
            yield started
        except AssertionError as failed:
            raise AssertionError(f"{failed}\nworker: {worker.stderr()}") from None
        finally:
            worker.cleanup()
        log = (started.state_dir / "nats-server.log").read_text()
        assert "Violation" not in log, [line for line in log.splitlines() if "Violation" in line]


def test_a_worker_with_worker_credentials_runs_its_plugin_for_the_node(tmp_path: Path) -> None:
    """The node runs no echo worker of its own: only the worker with `worker` credentials
    can run the hello playbook's steps."""
    with node_and_credentialed_worker(tmp_path, "echo") as started:
        run = own("submit", HELLO, "--wait", "--nats", started.url, folder=tmp_path)
        assert run.returncode == 0, run.stdout + run.stderr


def test_what_a_credentialed_worker_prints_a_client_reads_with_noetl_logs(
        tmp_path: Path) -> None:
    """A `shell` worker with `worker` credentials publishes its step's lines; a `client`
    reads them back with `noetl logs`: no permission violation on either side."""
    playbook = tmp_path / "speak.yaml"
    playbook.write_text("apiVersion: noetl.io/v1\nkind: Playbook\nname: speak\n"
                        "tasks:\n  - name: t\n    steps:\n      - name: s\n"
                        "        plugin: shell\n"
                        "        with: {command: \"echo hello from the worker\"}\n")
    with node_and_credentialed_worker(tmp_path, "shell") as started:
        client_seed = issue(tmp_path, "client", "carol")
        env = as_stranger(tmp_path)
        run = noetl("submit", playbook, "--wait", "--json", "--nats", started.url,
                    "--nkey", client_seed, cwd=tmp_path, env=env, timeout=60)
        assert run.returncode == 0, run.stdout + run.stderr
        workflow_id = run.document()["workflow_id"]
        logs = noetl("logs", workflow_id, "t.s", "--nats", started.url, "--nkey",
                     client_seed, cwd=tmp_path, env=env, timeout=60)
        assert logs.returncode == 0, logs.stderr
        assert "hello from the worker" in logs.stdout


def test_a_workflow_runs_over_tls_with_client_certificates(tmp_path: Path) -> None:
    """`noetl server --tls`: a node and the CLI of the same user find the local CA and
    their client certificate; another user with our CA but no certificate is refused,
    and one given every file with --tlsca/--tlscert/--tlskey gets in."""
    with running_server(tmp_path, "--tls") as url:
        assert url.startswith("tls://")
        tls = tmp_path / "server" / "state" / "tls"
        assert mode(tls) == 0o700 and mode(tls / "ca-key.pem") == 0o600
        with running_node(tmp_path, "alpha", nats=url):
            run = own("submit", HELLO, "--wait", "--json", "--nats", url, folder=tmp_path)
            assert run.returncode == 0, run.stderr
            assert run.document()["status"] == "succeeded"

            seed = issue(tmp_path, "client", "tess", "--state-dir",
                         str(tmp_path / "server" / "state"))
            env = as_stranger(tmp_path)
            no_cert = noetl("list", "--nats", url, "--nkey", seed, "--tlsca", tls / "ca.pem",
                            cwd=tmp_path, env=env, timeout=60)
            assert no_cert.returncode == 1
            assert len(no_cert.stderr.strip().splitlines()) == 1, no_cert.stderr
            with_cert = noetl("submit", HELLO, "--wait", "--nats", url, "--nkey", seed,
                              "--tlsca", tls / "ca.pem", "--tlscert", tls / "client.pem",
                              "--tlskey", tls / "client-key.pem", cwd=tmp_path, env=env,
                              timeout=60)
            assert with_cert.returncode == 0, with_cert.stderr


def test_deploy_nats_config_runs_a_workflow_with_a_user_per_role(tmp_path: Path) -> None:
    """deploy/nats/ as shipped (one server: its cluster block out, the store in tmp), with
    keys of our own: a node, a worker of echo and a client, each with its role; roles.conf
    is what `noetl credentials roles` prints."""
    shipped = REPO / "deploy" / "nats"
    roles = own("credentials", "roles", folder=tmp_path)
    assert roles.stdout == (shipped / "roles.conf").read_text(), \
        "deploy/nats/roles.conf is stale: noetl credentials roles > deploy/nats/roles.conf"
    conf = (shipped / "nats.conf").read_text()
    conf = re.sub(r"\ncluster \{.*?\n\}\n", "\n", conf, flags=re.S)
    conf = conf.replace("store_dir: /data", f"store_dir: {tmp_path / 'data'}")
    conf = conf.replace("port: 4222", "port: -1").replace("http_port: 8222", "")
    (tmp_path / "nats.conf").write_text(conf + f"\nports_file_dir: {tmp_path}\n")
    (tmp_path / "roles.conf").write_text(roles.stdout)
    env = {**os.environ, "POD_NAME": "nats-0"}
    for role in ("node", "worker", "client", "viewer", "admin", "job"):
        made = own("credentials", "new-key", role, "-o", tmp_path / f"{role}.nk",
                   folder=tmp_path)
        assert made.returncode == 0, made.stderr
        env[f"NOETL_{role.upper()}_NKEY"] = made.stdout.strip()
    from noetl_actors.bridge import find_nats_server

    server = subprocess.Popen([find_nats_server(), "-c", str(tmp_path / "nats.conf")],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        ports = wait_until(lambda: list(tmp_path.glob("*.ports")), 30, "the ports file")
        port = json.loads(ports[0].read_text())["nats"][0].rsplit(":", 1)[-1]
        url = f"nats://127.0.0.1:{port}"
        config = "workers:\n  plugins:\n    echo: {enabled: false}\n"
        node_dir = tmp_path / "node"
        node_dir.mkdir()
        (node_dir / "node.yaml").write_text(config)
        node = spawn(["env", f"NATS_NKEY={tmp_path / 'node.nk'}",
                      *map(str, cli_command("node", "start", "--name", "k0", "--nats", url,
                                            "--config", node_dir / "node.yaml",
                                            "--state-dir", node_dir / "state"))],
                     node_dir, "node")
        worker = spawn([*map(str, cli_command("worker", "--nats", url, "--nkey",
                                              tmp_path / "worker.nk", "--plugin", "echo"))],
                       tmp_path, "worker")
        try:
            node.wait_for_line(re.compile(r"^node k0 is up"), 60)
            worker.wait_for_line(re.compile(r"^workers for echo on "), 60)
            stranger = as_stranger(tmp_path)
            run = noetl("submit", HELLO, "--wait", "--nats", url, "--nkey",
                        tmp_path / "client.nk", cwd=tmp_path, env=stranger, timeout=60)
            assert run.returncode == 0, run.stdout + run.stderr + worker.stderr()
            viewer = noetl("submit", HELLO, "--nats", url, "--nkey", tmp_path / "viewer.nk",
                           cwd=tmp_path, env=stranger, timeout=60)
            assert viewer.returncode == 1 and "permissions violation" in viewer.stderr
            nobody = noetl("list", "--nats", url, cwd=tmp_path, env=stranger, timeout=60)
            assert nobody.returncode == 1 and "authorization violation" in nobody.stderr
        finally:
            worker.cleanup()
            node.cleanup()
    finally:
        server.terminate()
        _, errors = server.communicate(timeout=30)
    assert b"Violation" not in errors.replace(b"Publish Violation - Subject \"noetl.api.submit",
                                              b""), errors.decode()[-3000:]


def test_a_user_given_to_a_node_without_nats_is_its_embedded_servers(tmp_path: Path) -> None:
    """`noetl node start --user etl` (its password from a file, never on a command line)
    adds that user to its own server: another user logs in with it."""
    secret = tmp_path / "password"
    secret.write_text("s3cret\n")
    node = spawn([*map(str, cli_command("node", "start", "--name", "solo", "--user", "etl",
                                        "--password-file", secret,
                                        "--state-dir", tmp_path / "state"))],
                 tmp_path, "node")
    try:
        url = node.wait_for_line(re.compile(r"^node solo is up on (\S+) "), 60).group(1)
        for pid in [node.pid, *descendants(node.pid)]:
            assert "s3cret" not in cmdline(pid)
        stranger = as_stranger(tmp_path)
        wrong = noetl("list", "--nats", url, "--user", "etl", cwd=tmp_path,
                      env={**stranger, "NATS_PASSWORD": "wrong"}, timeout=60)
        assert wrong.returncode == 1 and "authorization violation" in wrong.stderr
        right = noetl("list", "--nats", url, "--user", "etl", cwd=tmp_path,
                      env={**stranger, "NATS_PASSWORD": "s3cret"}, timeout=60)
        assert right.returncode == 0, right.stderr
    finally:
        node.cleanup()


def test_a_node_started_with_a_relative_state_dir_is_reached_from_another_folder(
        tmp_path: Path) -> None:
    """The context names its seeds by absolute paths: a command run elsewhere had
    crashed with a traceback on `state/auth/admin.nk`."""
    there = tmp_path / "there"
    there.mkdir()
    (there / "node.yaml").write_text(NODE_CONFIG)
    spawned = spawn(cli_command("node", "start", "--name", "rel", "--state-dir", "state",
                                "--config", "node.yaml"), there, "node", cwd=there)
    try:
        url = spawned.wait_for_line(re.compile(r"^node rel is up on (\S+) "),
                                    START_TIMEOUT).group(1)
        submitted = own("submit", HELLO, "--wait", "--nats", url, folder=tmp_path)
        assert submitted.returncode == 0, submitted.stderr
        listed = own("list", "--nats", url, folder=tmp_path)
        assert listed.returncode == 0, listed.stderr
        assert "hello" in listed.stdout
    finally:
        spawned.cleanup()


def test_a_context_whose_seed_is_gone_is_a_one_line_error(tmp_path: Path) -> None:
    contexts = Path(os.environ["XDG_STATE_HOME"]) / "noetl-actors" / "contexts"
    contexts.mkdir(parents=True, exist_ok=True)
    context = contexts / "nats-127.0.0.1-9.json"  # port 9: no server, and none is reached
    context.write_text(json.dumps({"url": "nats://127.0.0.1:9", "state_dir": str(tmp_path),
                                   "admin": str(tmp_path / "gone.nk")}))
    try:
        listed = own("list", "--nats", "nats://127.0.0.1:9", folder=tmp_path)
    finally:
        context.unlink()
    assert listed.returncode == 1 and "Traceback" not in listed.stderr, listed.stderr
    assert listed.stderr.strip() == (
        f"Error: this user's context for the server: nkey_file: no such file: "
        f"{tmp_path / 'gone.nk'}; give --nats and credentials")
