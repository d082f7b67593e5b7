"""The Kubernetes Job runner through the real `kubernetes` client, on the `cluster` fixture.

By default that is a TEST DOUBLE: `tests/kube_double.py`, a small API server
of the suite's own (real HTTP on 127.0.0.1) whose "kubelet" runs a Job's
command as a local process: the entrypoint, for real. It refuses every Job
that kubernetes-validate refuses. What it does not prove is listed in its
docstring and in docs/kubernetes.md. With NOETL_TEST_KUBECONFIG set, the same
tests run on that real cluster (tests/kube_cluster.py), except those that
play the double's own faults or need the pod to reach this machine's NATS.
"""

from __future__ import annotations

import http.client
import json
from typing import Any

import attrs
import pytest

from noetl_actors.bridge import EmbeddedNatsServer
from noetl_actors.runners import (
    Attempt,
    KubernetesRunner,
    KubeSettings,
    Status,
    find_plugins,
    job_name,
)
from tests.kube_cluster import Cluster
from tests.run_helpers import wait_until

pytestmark = pytest.mark.timeout(120)
WAIT = 60.0


def runner_for(cluster: Cluster, nats_url: str = "nats://127.0.0.1:1", **bounds: Any
               ) -> KubernetesRunner:
    return KubernetesRunner(cluster.api, namespace=cluster.namespace, nats_url=nats_url,
                            **{"watch_timeout": 1, **bounds})


def attempt(plugin: str, number: int = 1, timeout: float | None = None, **input: object
            ) -> Attempt:
    return Attempt(workflow_id="wf-k", task="load", step="fetch", number=number, plugin=plugin,
                   input=input, timeout=timeout)


def test_an_attempt_runs_as_one_job_and_returns_its_output(
        cluster: Cluster) -> None:
    runner = runner_for(cluster)
    try:
        running = runner.start(find_plugins()["python"],
                               attempt("python", function="operator:add", args=[2, 3]))
        outcome = running.wait(WAIT)
        assert outcome is not None and outcome.ok, outcome
        assert outcome.output == 5
        assert cluster.created() == [job_name(running.attempt)]
    finally:
        runner.close()


def test_a_large_output_comes_back_whole_through_nats(
        cluster: Cluster, nats_server: EmbeddedNatsServer) -> None:
    cluster.need_double("the pod must reach this machine's NATS on 127.0.0.1")
    runner = runner_for(cluster, nats_server.url)
    try:
        running = runner.start(find_plugins()["python"], attempt(
            "python", function="operator:mul", args=["z", 50_000]))
        outcome = running.wait(WAIT)
        assert outcome is not None and outcome.ok, outcome
        assert outcome.output == "z" * 50_000
    finally:
        runner.close()


def test_a_plugin_failure_keeps_its_error_type(cluster: Cluster) -> None:
    runner = runner_for(cluster)
    try:
        outcome = runner.start(find_plugins()["shell"],
                               attempt("shell", command="exit 4")).wait(WAIT)
        assert outcome is not None and outcome.status is Status.FAILED
        assert outcome.error_type == "ShellError"
    finally:
        runner.close()


def test_cancel_deletes_the_job_and_its_process(cluster: Cluster) -> None:
    runner = runner_for(cluster)
    try:
        running = runner.start(find_plugins()["shell"], attempt("shell", command="sleep 60"))
        running.cancel()
        outcome = running.wait(WAIT)
        assert outcome is not None and outcome.error_type == "cancelled"
        wait_until(lambda: not cluster.job_names(), WAIT, "the Job deleted")
    finally:
        runner.close()


def test_a_job_past_its_deadline_is_a_timeout(cluster: Cluster) -> None:
    runner = runner_for(cluster)
    try:
        outcome = runner.start(find_plugins()["shell"],
                               attempt("shell", timeout=1.0, command="sleep 60")).wait(WAIT)
        assert outcome is not None and outcome.error_type == "timeout", outcome
        wait_until(lambda: not cluster.job_names(), WAIT, "the Job deleted")
    finally:
        runner.close()


def test_starting_an_attempt_whose_job_exists_follows_it_and_makes_no_second(
        cluster: Cluster) -> None:
    runner = runner_for(cluster)
    try:
        the_attempt = attempt("python", function="operator:add", args=[1, 1])
        first = runner.start(find_plugins()["python"], the_attempt)
        second = runner.start(find_plugins()["python"], the_attempt)
        for running in (first, second):
            outcome = running.wait(WAIT)
            assert outcome is not None and outcome.output == 2, outcome
        assert cluster.created() == [job_name(the_attempt)]
    finally:
        runner.close()


def test_the_double_refuses_a_job_kubernetes_validate_refuses(cluster: Cluster) -> None:
    """Raw HTTP: the client's own checks must not be what refuses these."""
    double = cluster.need_double("what the double itself refuses")
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "ok"},
           "spec": {"template": {"spec": {"restartPolicy": "Never",
                                          "containers": [{"name": "c", "image": "i"}]}}}}
    bad_name = json.loads(json.dumps(job))
    bad_name["metadata"]["name"] = "Bad_Name"
    misspelt = json.loads(json.dumps(job))
    misspelt["spec"]["backOffLimit"] = 0
    restarts = json.loads(json.dumps(job))
    restarts["spec"]["template"]["spec"]["restartPolicy"] = "Always"
    port = int(double.url.rsplit(":", 1)[1])
    for body in (bad_name, misspelt, restarts):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            connection.request("POST", "/apis/batch/v1/namespaces/noetl-test/jobs",
                               body=json.dumps(body),
                               headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            assert response.status == 422, response.read()
            response.read()
        finally:
            connection.close()
    assert cluster.created() == []


def test_an_image_that_cannot_be_pulled_fails_early_with_the_pods_message(
        cluster: Cluster) -> None:
    runner = runner_for(cluster, image_pull_after=0.5)
    plugin = attrs.evolve(find_plugins()["python"], image="noetl-actors/noetl:missing")
    try:
        outcome = runner.start(plugin, attempt("python", timeout=300.0)).wait(WAIT)
        assert outcome is not None and outcome.error_type == "ImagePullError", outcome
        if not cluster.real:  # a real kubelet's words depend on its container runtime
            assert 'ErrImagePull: rpc error: code = NotFound desc = failed to pull and ' \
                   'unpack image "noetl-actors/noetl:missing": not found' in outcome.message
        assert "noetl-actors/noetl:missing" in outcome.message
        wait_until(lambda: not cluster.job_names(), WAIT, "the Job deleted")
    finally:
        runner.close()


def test_a_pod_no_node_takes_fails_as_unschedulable(
        cluster: Cluster) -> None:
    runner = runner_for(cluster, unschedulable_after=0.5)
    try:
        outcome = runner.start(find_plugins()["python"], attempt("python"),
                               settings=KubeSettings.from_mapping(
                                   {"node_selector": {"pool": "gpu"}})).wait(WAIT)
        assert outcome is not None and outcome.error_type == "Unschedulable", outcome
        assert "node(s) didn't match Pod's node affinity/selector" in outcome.message
        wait_until(lambda: not cluster.job_names(), WAIT, "the Job deleted")
    finally:
        runner.close()


def test_a_pod_stuck_for_less_than_its_bound_is_waited_for(
        cluster: Cluster) -> None:
    runner = runner_for(cluster)  # the default bounds: minutes
    plugin = attrs.evolve(find_plugins()["python"], image="noetl-actors/noetl:missing")
    try:
        running = runner.start(plugin, attempt("python"))
        assert running.wait(2.0) is None
        assert running.alive() and len(cluster.job_names()) == 1
        running.cancel()
        outcome = running.wait(WAIT)
        assert outcome is not None and outcome.error_type == "cancelled"
    finally:
        runner.close()


def test_a_watch_that_expires_or_drops_is_taken_up_again(
        cluster: Cluster) -> None:
    """410 Gone (the server compacted its history): list again and watch from the new
    version; a dropped stream: watch again. The attempt ends as if nothing happened."""
    double = cluster.need_double("it plays 410 Gone and dropped watches")
    runner = runner_for(cluster, watch_timeout=30)
    try:
        running = runner.start(find_plugins()["shell"],
                               attempt("shell", command="sleep 3; echo done"))
        wait_until(lambda: double.watching >= 1, WAIT, "the runner to watch its Job")
        double.compact()
        double.drop_watches()
        wait_until(lambda: double.expired >= 1, WAIT, "a watch from before to get 410")
        outcome = running.wait(WAIT)
        assert outcome is not None and outcome.ok, outcome
        assert outcome.output["stdout"] == "done\n"
        assert len(cluster.created()) == 1
    finally:
        runner.close()
