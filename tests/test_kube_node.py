"""`runner: kubernetes` steps run as Jobs by real `noetl node start` / `noetl worker` processes.

The cluster is `tests/kube_double.py`, a TEST DOUBLE of the API server (real
HTTP on 127.0.0.1, its "kubelet" runs the Job's entrypoint as a local
process); the nodes reach it through a kubeconfig file, as they would a
real cluster.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from noetl_actors.runners import Attempt, job_name
from tests.kube_double import KubeDouble, kube_double
from tests.kube_helpers import kube_node_config, write_kubeconfig
from tests.node_helpers import HEARTBEAT, Cli, cli_command, running_node, running_server, spawn
from tests.run_helpers import REPO, noetl, wait_until, write_playbook

pytestmark = pytest.mark.timeout(180)
NODE = f"heartbeat: {HEARTBEAT}s\nlease: 2s\n"


@pytest.fixture
def double() -> Iterator[KubeDouble]:
    with kube_double() as started:
        yield started


@pytest.fixture
def kube_config(tmp_path: Path, double: KubeDouble) -> str:
    """A node config that runs Jobs on the double."""
    return kube_node_config(write_kubeconfig(tmp_path / "kubeconfig", double.url), head=NODE)


def shell_job(folder: Path, command: str, *, timeout: str | None = None,
              name: str = "kube") -> Path:
    """One task `t`, one step `s`: `command` in a Job, with GREETING=hello."""
    limit = f"        timeout: {timeout}\n" if timeout else ""
    return write_playbook(folder, name, (
        "tasks:\n  - name: t\n    steps:\n      - name: s\n        plugin: shell\n"
        f"        runner: kubernetes\n{limit}"
        "        kubernetes: {env: {GREETING: hello}}\n"
        f"        with: {{command: {command!r}}}\n"))


def the_job(workflow_id: str, number: int = 1) -> str:
    return job_name(Attempt(workflow_id=workflow_id, task="t", step="s", number=number,
                            plugin="shell"))


def test_a_kubernetes_step_runs_as_one_job_labelled_with_the_owners_epoch(
        tmp_path: Path, double: KubeDouble, kube_config: str) -> None:
    playbook = shell_job(tmp_path, "sleep 2; echo $GREETING")
    with running_node(tmp_path, "a", config=kube_config) as a:
        cli = Cli(a.url)
        workflow_id = cli.submit(playbook)
        record = cli.wait_status(workflow_id, {"succeeded", "failed"}, timeout=60)
        assert record["status"] == "succeeded", record.get("error")
        step = record["tasks"]["t"]["steps"]["s"]
        assert step["output"]["stdout"] == "hello\n"
        assert double.created == [the_job(workflow_id)]
        [job] = double.jobs.values()
        assert job["metadata"]["labels"]["noetl.io/epoch"] == str(record["epoch"]) == "1"
        # it ran for seconds, longer than 3 heartbeats: its worker beat all along
        beats = [e for e in cli.events(workflow_id) if e.get("status") == "heartbeat"]
        assert len(beats) >= 3, beats
    assert a.spawned.returncode == 0, a.stderr()


def test_cancelling_the_workflow_deletes_its_job(
        tmp_path: Path, double: KubeDouble, kube_config: str) -> None:
    playbook = shell_job(tmp_path, "sleep 120")
    with running_node(tmp_path, "a", config=kube_config) as a:
        cli = Cli(a.url)
        workflow_id = cli.submit(playbook)
        wait_until(lambda: double.created, 60, "the step's Job")
        cli.ok("cancel", workflow_id)
        record = cli.wait_status(workflow_id, {"cancelled", "failed", "succeeded"}, timeout=60)
        assert record["status"] == "cancelled", record
        wait_until(lambda: not double.jobs, 60, "the Job deleted")
        assert double.created == [the_job(workflow_id)]


def test_a_step_past_its_timeout_has_its_job_deleted(
        tmp_path: Path, double: KubeDouble, kube_config: str) -> None:
    playbook = shell_job(tmp_path, "sleep 120", timeout="2s")
    with running_node(tmp_path, "a", config=kube_config) as a:
        cli = Cli(a.url)
        workflow_id = cli.submit(playbook)
        record = cli.wait_status(workflow_id, {"succeeded", "failed"}, timeout=90)
        assert record["status"] == "failed"
        assert "ran past its timeout of 2s" in str(record.get("error")), record.get("error")
        wait_until(lambda: not double.jobs, 60, "every Job deleted")  # each attempt's
        assert the_job(workflow_id) in double.created


def test_a_kubernetes_step_on_a_node_without_kubernetes_fails_naming_the_setting(
        tmp_path: Path) -> None:
    playbook = shell_job(tmp_path, "echo never")
    with running_node(tmp_path, "a", config=NODE) as a:
        cli = Cli(a.url)
        workflow_id = cli.submit(playbook)
        record = cli.wait_status(workflow_id, {"succeeded", "failed"}, timeout=90)
        assert record["status"] == "failed"
        assert "this node runs no Kubernetes Jobs: set `kubernetes: {enabled: true}` in its " \
               "node configuration" in str(record.get("error")), record.get("error")


def test_a_noetl_worker_configured_for_kubernetes_runs_the_job(
        tmp_path: Path, double: KubeDouble, kube_config: str) -> None:
    playbook = shell_job(tmp_path, "echo $GREETING from a worker")
    config = tmp_path / "worker.yaml"
    config.write_text(kube_config)
    no_shell = NODE + "workers:\n  plugins:\n    shell: {enabled: false}\n"
    with running_server(tmp_path) as url, \
            running_node(tmp_path, "a", nats=url, config=no_shell):
        worker = spawn(cli_command("worker", "--nats", url, "--plugin", "shell", "--config",
                                   config), tmp_path, "worker")
        try:
            cli = Cli(url)
            workflow_id = cli.submit(playbook)
            record = cli.wait_status(workflow_id, {"succeeded", "failed"}, timeout=60)
            assert record["status"] == "succeeded", record.get("error")
            assert record["tasks"]["t"]["steps"]["s"]["output"]["stdout"] == \
                "hello from a worker\n"
            assert double.created == [the_job(workflow_id)]
        finally:
            worker.cleanup()
        assert worker.returncode == 0, worker.stderr()


def test_a_node_whose_kubeconfig_cannot_be_used_does_not_start(tmp_path: Path) -> None:
    config = tmp_path / "node.yaml"
    config.write_text(kube_node_config(tmp_path / "nowhere", head=NODE))
    result = noetl("node", "start", "--config", config, "--state-dir", tmp_path / "state",
                   cwd=REPO, timeout=60)
    assert result.returncode != 0
    assert f"kubernetes.kubeconfig ({tmp_path / 'nowhere'}): cannot use it" in result.stderr, \
        result.stderr
