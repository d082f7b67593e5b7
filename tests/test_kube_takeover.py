"""Re-attach: a Job outlives the node or worker that made it; another follows it, never
making a second one.

Real `noetl server`, `noetl node start` and `noetl worker` processes, real
kill -9; the cluster is `tests/kube_double.py`, a TEST DOUBLE of the API
server whose "kubelet" runs each Job's entrypoint as a process of the test
(so a pod outlives the node that made its Job, as in a cluster). Each step
appends a line to a file when its pod starts, then waits for a gate file
the test makes: a pod run twice shows there twice.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from noetl_actors.runners import Attempt, job_name
from tests.kube_double import KubeDouble, kube_double
from tests.kube_helpers import kube_node_config, write_kubeconfig
from tests.node_helpers import (
    HEARTBEAT,
    Cli,
    Spawned,
    cli_command,
    running_node,
    running_server,
    spawn,
)
from tests.run_helpers import wait_until, write_playbook
from tests.takeover_helpers import LEASE, lines_of

pytestmark = pytest.mark.timeout(180)
NODE = f"heartbeat: {HEARTBEAT}s\nlease: {LEASE}s\n"
NO_SHELL = NODE + "workers:\n  plugins:\n    shell: {enabled: false}\n"


@pytest.fixture
def double() -> Iterator[KubeDouble]:
    with kube_double() as started:
        yield started


@pytest.fixture
def kubeconfig(tmp_path: Path, double: KubeDouble) -> Path:
    return write_kubeconfig(tmp_path / "kubeconfig", double.url)


def gated_job(folder: Path, lines: Path, gate: Path) -> Path:
    """One step in a Job: it appends `pod` to `lines`, waits for `gate`, prints ``done``."""
    command = (f"echo pod >> {lines}; while [ ! -e {gate} ]; do sleep 0.05; done; "
               f"echo done")
    return write_playbook(folder, "gated", (
        "tasks:\n  - name: t\n    steps:\n      - name: s\n        plugin: shell\n"
        f"        runner: kubernetes\n        with: {{command: {command!r}}}\n"))


def the_job(workflow_id: str) -> str:
    return job_name(Attempt(workflow_id=workflow_id, task="t", step="s", number=1,
                            plugin="shell"))


def finished(double: KubeDouble) -> bool:
    with double.lock:
        return any(job["status"].get("conditions") for job in double.jobs.values())


def followed_by(cli: Cli, workflow_id: str, who: str) -> bool:
    """True once a worker of `who` (a node's name, or a worker's) said it has attempt 1."""
    return any(event.get("status") in ("accepted", "started") and event.get("attempt") == 1
               and f"/{who}/" in f"{event.get('worker')}/"
               for event in cli.events(workflow_id))


def succeeded_once(record: dict[str, object], double: KubeDouble, workflow_id: str,
                   lines: Path) -> None:
    assert record["status"] == "succeeded", record.get("error")
    step = record["tasks"]["t"]["steps"]["s"]  # type: ignore[index]
    assert step["output"]["stdout"] == "done\n", step
    assert step["attempts"] == 1, step
    assert double.created == [the_job(workflow_id)]  # one Job, made once
    assert lines_of(lines) == ["pod"]  # one pod ran


def test_a_new_owner_follows_the_job_its_dead_predecessor_made(
        tmp_path: Path, double: KubeDouble, kubeconfig: Path) -> None:
    lines, gate = tmp_path / "lines.txt", tmp_path / "gate"
    playbook = gated_job(tmp_path, lines, gate)
    config = kube_node_config(kubeconfig, head=NODE)
    with running_server(tmp_path) as url:
        cli = Cli(url)
        with running_node(tmp_path, "a", nats=url, config=config) as a:
            workflow_id = cli.submit(playbook)
            wait_until(lambda: lines_of(lines), 60, "the Job's pod to start")
            a.spawned.kill()  # the owner and the worker following the Job
            assert a.proc.returncode == -signal.SIGKILL
        with running_node(tmp_path, "b", nats=url, config=config) as b:
            wait_until(lambda: followed_by(cli, workflow_id, "b"), 60,
                       "a worker of b to follow the Job", 0.2)
            assert not finished(double)  # it follows a running Job
            gate.touch()
            record = cli.wait_status(workflow_id, {"succeeded", "failed"}, timeout=60)
            assert record["node"] == "b" and record["epoch"] == 2
            assert f"took over workflow {workflow_id} from node a" in b.stderr()
        succeeded_once(record, double, workflow_id, lines)


def test_a_new_owner_takes_the_result_of_a_job_that_ended_while_no_one_watched(
        tmp_path: Path, double: KubeDouble, kubeconfig: Path) -> None:
    lines, gate = tmp_path / "lines.txt", tmp_path / "gate"
    playbook = gated_job(tmp_path, lines, gate)
    config = kube_node_config(kubeconfig, head=NODE)
    with running_server(tmp_path) as url:
        cli = Cli(url)
        with running_node(tmp_path, "a", nats=url, config=config) as a:
            workflow_id = cli.submit(playbook)
            wait_until(lambda: lines_of(lines), 60, "the Job's pod to start")
            a.spawned.kill()
        gate.touch()
        wait_until(lambda: finished(double), 60, "the Job to end, no node alive")
        with running_node(tmp_path, "b", nats=url, config=config):
            record = cli.wait_status(workflow_id, {"succeeded", "failed"}, timeout=60)
            assert record["node"] == "b" and record["epoch"] == 2
        succeeded_once(record, double, workflow_id, lines)


def test_a_job_whose_worker_died_is_followed_by_another_worker(
        tmp_path: Path, double: KubeDouble, kubeconfig: Path) -> None:
    """The owner lives; the `noetl worker` that made the Job is killed: the step calls for
    another worker to follow it, instead of taking the attempt for lost."""
    lines, gate = tmp_path / "lines.txt", tmp_path / "gate"
    playbook = gated_job(tmp_path, lines, gate)
    config = tmp_path / "worker.yaml"
    config.write_text(kube_node_config(kubeconfig, head=NODE))

    def worker(name: str) -> Spawned:
        return spawn(cli_command("worker", "--nats", url, "--plugin", "shell", "--config",
                                 config), tmp_path, name)

    with running_server(tmp_path) as url, \
            running_node(tmp_path, "a", nats=url, config=NO_SHELL):
        cli = Cli(url)
        first = worker("worker-1")
        try:
            workflow_id = cli.submit(playbook)
            wait_until(lambda: lines_of(lines), 60, "the Job's pod to start")
        finally:
            first.kill()
        killed_at = time.time()
        second = worker("worker-2")
        try:
            wait_until(lambda: [e for e in cli.events(workflow_id) if e.get("status")
                                == "started" and e["at"] > killed_at], 60,
                       "another worker to follow the Job", 0.2)
            assert not finished(double)
            gate.touch()
            record = cli.wait_status(workflow_id, {"succeeded", "failed"}, timeout=60)
        finally:
            second.cleanup()
        assert record["node"] == "a" and record["epoch"] == 1
        succeeded_once(record, double, workflow_id, lines)
