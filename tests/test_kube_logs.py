"""A Job's pod log, followed into the runner's output sink, against the Kubernetes TEST DOUBLE.

`tests/kube_double.py` (real HTTP on 127.0.0.1, not Kubernetes) serves
``pods/NAME/log``, followed, from the local process its "kubelet" runs. The
runner's real `kubernetes` client follows it while the Job runs, and the
follow ends with the attempt even when the API server never ends the
stream. Last, a real `noetl node start` configured for the double runs a
Job, and `noetl logs` prints its pod's lines from NATS.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest
from kubernetes import client

from noetl_actors.runners import Attempt, KubernetesRunner, OutputSink, find_plugins
from tests.kube_double import KubeDouble, kube_double
from tests.kube_helpers import kube_node_config, write_kubeconfig
from tests.node_helpers import HEARTBEAT, Cli, running_node
from tests.run_helpers import wait_until, write_playbook

pytestmark = pytest.mark.timeout(180)
WAIT = 60.0


class Recorded:
    """An `OutputSink` that keeps what it is given, and whether the attempt ended."""

    def __init__(self) -> None:
        self.text = ""
        self.ended = threading.Event()
        self.lock = threading.Lock()

    def write(self, attempt: Attempt, text: str) -> None:
        with self.lock:
            assert not self.ended.is_set(), "a write after the end"
            self.text += text

    def end(self, attempt: Attempt) -> None:
        self.ended.set()

    def lines(self) -> list[str]:
        with self.lock:
            return self.text.splitlines()


@pytest.fixture
def double() -> Iterator[KubeDouble]:
    with kube_double() as started:
        yield started


@pytest.fixture
def api(double: KubeDouble) -> Iterator[client.ApiClient]:
    api_client = client.ApiClient(client.Configuration(host=double.url))
    try:
        yield api_client
    finally:
        api_client.close()


def runner_for(api: client.ApiClient, sink: OutputSink) -> KubernetesRunner:
    return KubernetesRunner(api, namespace="noetl-test", nats_url="nats://127.0.0.1:1",
                            watch_timeout=1, output=sink)


def shell(command: str) -> Attempt:
    return Attempt(workflow_id="wf-k", task="load", step="fetch", number=1, plugin="shell",
                   input={"command": command})


def log_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("noetl-log-")]


def test_the_pods_lines_reach_the_sink_while_it_runs_and_end_before_the_outcome(
        double: KubeDouble, api: client.ApiClient, tmp_path: object) -> None:
    gate = f"{tmp_path}/gate"
    sink = Recorded()
    runner = runner_for(api, sink)
    try:
        running = runner.start(find_plugins()["shell"], shell(
            f"echo first; while [ ! -e {gate} ]; do sleep 0.05; done; echo second"))
        ended_first: list[bool] = []
        running.add_done_callback(lambda _outcome: ended_first.append(sink.ended.is_set()))
        wait_until(lambda: "first" in sink.lines(), WAIT, "the first line, while it runs")
        assert running.alive() and "second" not in sink.lines()
        assert double.log_follows == 1, "one follow, not a read per line"
        open(gate, "w").close()
        outcome = running.wait(WAIT)
        assert outcome is not None and outcome.ok, outcome
        assert sink.lines() == ["first", "second"]
        assert ended_first == [True], "the lines end before the outcome is told"
    finally:
        runner.close()
    wait_until(lambda: not log_threads(), 10, "no follow thread left")


def test_a_log_stream_the_server_never_ends_is_cut_when_the_attempt_ends(
        double: KubeDouble, api: client.ApiClient) -> None:
    double.hold_logs = True
    sink = Recorded()
    runner = runner_for(api, sink)
    try:
        running = runner.start(find_plugins()["shell"], shell("echo one; echo two"))
        outcome = running.wait(WAIT)
        assert outcome is not None and outcome.ok, outcome
        assert sink.ended.is_set() and sink.lines() == ["one", "two"]
    finally:
        runner.close()
    wait_until(lambda: not log_threads(), 10, "the follow thread gone, its stream cut")


def test_a_cancelled_job_ends_its_log_too(double: KubeDouble, api: client.ApiClient) -> None:
    sink = Recorded()
    runner = runner_for(api, sink)
    try:
        running = runner.start(find_plugins()["shell"], shell("echo started; sleep 60"))
        wait_until(lambda: "started" in sink.lines(), WAIT, "the pod to print")
        running.cancel()
        outcome = running.wait(WAIT)
        assert outcome is not None and outcome.error_type == "cancelled", outcome
        assert sink.ended.is_set() and sink.lines() == ["started"]
    finally:
        runner.close()
    wait_until(lambda: not log_threads(), 10, "no follow thread left")


def test_a_pod_that_never_starts_has_no_log_and_its_follow_ends_with_it(
        double: KubeDouble, api: client.ApiClient) -> None:
    sink = Recorded()
    runner = KubernetesRunner(api, namespace="noetl-test", nats_url="nats://127.0.0.1:1",
                              watch_timeout=1, output=sink, image_pull_after=1.0)
    plugin = find_plugins()["shell"]
    missing = attrs.evolve(plugin, image="noetl-actors/noetl:missing")
    try:
        outcome = runner.start(missing, shell("echo never")).wait(WAIT)
        assert outcome is not None and outcome.error_type == "ImagePullError", outcome
        assert sink.ended.is_set() and sink.lines() == []
    finally:
        runner.close()
    wait_until(lambda: not log_threads(), 10, "no follow thread left")


# -- from a real node: a Job's lines in noetl logs ------------------------------------------


def test_noetl_logs_prints_a_kubernetes_steps_pod_log_from_a_real_node(
        tmp_path: Path, double: KubeDouble) -> None:
    config = kube_node_config(write_kubeconfig(tmp_path / "kubeconfig", double.url),
                              head=f"heartbeat: {HEARTBEAT}s\n")
    playbook = write_playbook(tmp_path, "kube", """
        tasks:
          - name: t
            steps:
              - name: s
                plugin: shell
                runner: kubernetes
                with: {command: "echo from the pod; echo and again"}
        """)
    with running_node(tmp_path, "a", config=config) as node:
        cli = Cli(node.url)
        workflow_id = cli.submit(playbook)
        record = cli.wait_status(workflow_id, {"succeeded", "failed"}, timeout=90)
        assert record["status"] == "succeeded", record.get("error")
        assert len(double.created) == 1, "it ran as a Job"
        assert cli.ok("logs", workflow_id, "t.s").stdout == "from the pod\nand again\n"
