"""The Job's entrypoint, `python -m noetl_actors.runners.entry`, run for real.

Each test runs the entrypoint as a subprocess, as a pod would, with its
command in NOETL_COMMAND and its termination message in a file of the test's
own; a large result goes through a real nats-server (JetStream object store).
`read_result` is what the Job runner will use to read the message back.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from noetl_actors.bridge import EmbeddedNatsServer, Role, ServerAuth
from noetl_actors.errors import ResultError
from noetl_actors.runners import (
    COMMAND_ENV,
    NATS_URL_ENV,
    TERMINATION_LIMIT,
    Attempt,
    Status,
    job_name,
    read_result,
)
from tests.node_helpers import clean_env
from tests.run_helpers import REPO, wait_until
from tests.test_security import violations

pytestmark = pytest.mark.timeout(120)
RUN_TIMEOUT = 60.0


def run_entry(tmp_path: Path, command: str | None, nats_url: str | None = None,
              **extra_env: str) -> tuple[subprocess.CompletedProcess[str], bytes]:
    env = {**clean_env(), **extra_env}
    env.pop(COMMAND_ENV, None)
    env["NOETL_RESULT_PATH"] = str(tmp_path / "termination-log")
    if command is not None:
        env[COMMAND_ENV] = command
    if nats_url is not None:
        env[NATS_URL_ENV] = nats_url
    done = subprocess.run([sys.executable, "-m", "noetl_actors.runners.entry"], env=env,
                          cwd=REPO, capture_output=True, text=True, timeout=RUN_TIMEOUT,
                          check=False)
    path = tmp_path / "termination-log"
    return done, path.read_bytes() if path.exists() else b""


def command_for(plugin: str, **input: object) -> tuple[Attempt, str]:
    attempt = Attempt(workflow_id="wf-7", task="load", step="fetch", number=1, plugin=plugin,
                      input=input, timeout=50.0)
    return attempt, json.dumps({"schema_version": 1, "plugin": plugin,
                                "attempt": attempt.to_json()})


def test_a_small_result_is_the_termination_message_itself(tmp_path: Path) -> None:
    _attempt, command = command_for("python", function="operator:mul", args=["ab", 3])
    done, message = run_entry(tmp_path, command)
    assert done.returncode == 0, done.stderr
    assert len(message) <= TERMINATION_LIMIT
    outcome = read_result(message, nats_url=None)
    assert (outcome.status, outcome.output) == (Status.SUCCEEDED, "ababab")


def test_a_100_kib_result_goes_through_the_object_store_whole(
        tmp_path: Path, nats_server: EmbeddedNatsServer) -> None:
    attempt, command = command_for("python", function="operator:mul",
                                   args=["0123456789abcdef", 100 * 1024 // 16])
    done, message = run_entry(tmp_path, command, nats_server.url)
    assert done.returncode == 0, done.stderr
    assert len(message) <= TERMINATION_LIMIT
    pointer = json.loads(message)["result"]
    assert (pointer["bucket"], pointer["name"]) == ("noetl-results", job_name(attempt))
    assert pointer["size"] > 100 * 1024
    outcome = read_result(message, nats_url=nats_server.url)
    assert outcome.ok and outcome.output == "0123456789abcdef" * (100 * 1024 // 16)


def test_a_large_result_without_nats_fails_the_attempt_and_says_why(tmp_path: Path) -> None:
    _attempt, command = command_for("python", function="operator:mul", args=["x", 10000])
    done, message = run_entry(tmp_path, command, "nats://127.0.0.1:1")
    assert done.returncode == 2
    outcome = read_result(message, nats_url=None)
    assert outcome.error_type == "ResultError"
    assert "over the termination message's 4096 bytes and could not be stored in NATS " \
           "at nats://127.0.0.1:1" in outcome.message


def test_with_a_job_roles_key_a_large_result_is_stored_on_a_nats_that_asks_for_one(
        tmp_path: Path) -> None:
    """The embedded server's default: credentials. The pod's key (NATS_NKEY, mounted from
    `kubernetes.nats_secret`) is of the `job` role: it stores the result, nothing else."""
    server = EmbeddedNatsServer(state_dir=tmp_path / "server", remember=True).start()
    try:  # remember: its pid is on record, for `reload()` to find (as `noetl server`'s)
        auth = ServerAuth(tmp_path / "server")
        seed = auth.issue(Role.JOB, name="jobs", out=tmp_path / "job.nk")
        auth.reload()
        _attempt, command = command_for("python", function="operator:mul", args=["j", 9000])
        refused, _ = run_entry(tmp_path, command, server.url, NATS_NKEY=str(tmp_path / "no"))
        assert refused.returncode == 2, "no key of the server's: the result is not stored"

        def stored() -> bytes | None:
            done, message = run_entry(tmp_path, command, server.url, NATS_NKEY=str(seed))
            return message if done.returncode == 0 else None

        message = wait_until(stored, 30, "the server to know the job key (SIGHUP)", 0.2)
        # read back as this user's own commands read (the server's context)
        assert read_result(message, nats_url=server.url).output == "j" * 9000
        denied = violations(server.url, seed, publish=("command.shell.wf-x.t=s",
                                                       "noetl.api.submit"))
        assert len(denied) == 2 and all("permissions violation" in e for e in denied), denied
    finally:
        server.stop()


def test_a_pointer_to_a_damaged_or_missing_object_is_refused(
        tmp_path: Path, nats_server: EmbeddedNatsServer) -> None:
    _attempt, command = command_for("python", function="operator:mul", args=["y", 9000])
    done, message = run_entry(tmp_path, command, nats_server.url)
    assert done.returncode == 0, done.stderr
    data = json.loads(message)
    data["result"]["sha256"] = "0" * 64
    with pytest.raises(ResultError, match=r"do not match its pointer"):
        read_result(json.dumps(data), nats_url=nats_server.url)
    data["result"]["name"] = "no-such-object"
    with pytest.raises(ResultError, match=r"cannot be read from NATS"):
        read_result(json.dumps(data), nats_url=nats_server.url)


def test_a_plugin_error_is_in_the_termination_message_with_its_type(tmp_path: Path) -> None:
    _attempt, command = command_for("shell", command="echo doomed >&2; exit 3")
    done, message = run_entry(tmp_path, command)
    assert done.returncode == 1
    outcome = read_result(message, nats_url=None)
    assert outcome.status is Status.FAILED
    assert outcome.error_type == "ShellError"
    assert "exit" in outcome.message and "3" in outcome.message
    assert "noetl entry: shell failed: ShellError" in done.stderr


def test_an_input_error_is_the_plugins_failure_too(tmp_path: Path) -> None:
    _attempt, command = command_for("shell")  # no `command`, a required input
    done, message = run_entry(tmp_path, command)
    assert done.returncode == 1
    assert read_result(message, nats_url=None).error_type == "InputError"


@pytest.mark.parametrize(("command", "says"), [
    (None, "NOETL_COMMAND is not set"),
    ("{not json", "NOETL_COMMAND is not JSON"),
    ('{"schema_version": 9}', "NOETL_COMMAND must be a mapping with schema_version 1 (got 9)"),
    ('{"schema_version": 1, "plugin": "python", "attempt": {"task": "t"}}',
     "NOETL_COMMAND's attempt lacks 'command_id'"),
    ('{"schema_version": 1, "plugin": "python", "attempt": "x"}',
     "NOETL_COMMAND holds a bad attempt"),
    (command_for("nope")[1], "no plugin 'nope'"),
])
def test_a_bad_command_is_one_line_and_a_non_zero_exit(
        tmp_path: Path, command: str | None, says: str) -> None:
    done, message = run_entry(tmp_path, command)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("noetl entry: bad command: "), done.stderr
    assert says in lines[0]
    assert "Traceback" not in done.stderr
    outcome = read_result(message, nats_url=None)
    assert outcome.error_type == "CommandError" and says in outcome.message


def test_a_message_that_is_not_ours_is_refused() -> None:
    with pytest.raises(ResultError, match=r"not a noetl answer of schema_version 1"):
        read_result(b"OOMKilled", nats_url=None)
    with pytest.raises(ResultError, match=r"neither an outcome nor a result pointer"):
        read_result(b'{"schema_version": 1}', nats_url=None)


def test_an_unwritable_termination_path_is_one_line(tmp_path: Path) -> None:
    _attempt, command = command_for("python", function="operator:mul", args=["a", 2])
    env = {**clean_env(), COMMAND_ENV: command,
           "NOETL_RESULT_PATH": str(tmp_path / "missing" / "log")}
    done = subprocess.run([sys.executable, "-m", "noetl_actors.runners.entry"], env=env,
                          cwd=REPO, capture_output=True, text=True, timeout=RUN_TIMEOUT,
                          check=False)
    assert done.returncode == 2
    assert done.stderr.startswith("noetl entry: cannot write the answer: ")
    assert os.path.exists(tmp_path) and "Traceback" not in done.stderr
