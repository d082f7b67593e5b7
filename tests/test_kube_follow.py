"""`KubernetesRunner.start(..., follow=True)`: re-attach to an attempt's Job, never make one.

Through the real `kubernetes` client on the `cluster` fixture: `tests/kube_double.py`,
a TEST DOUBLE of the API server, or the real cluster of NOETL_TEST_KUBECONFIG
(see tests/test_kube_runner.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from noetl_actors.runners import Attempt, KubernetesRunner, find_plugins, job_name
from tests.kube_cluster import Cluster

pytestmark = pytest.mark.timeout(120)
WAIT = 60.0


@pytest.fixture
def runner(cluster: Cluster) -> Iterator[KubernetesRunner]:
    """A runner that owns its client: closing the runner closes it."""
    api = client.ApiClient(cluster.api.configuration)
    the_runner = KubernetesRunner(api, namespace=cluster.namespace,
                                  nats_url="nats://127.0.0.1:1", watch_timeout=1,
                                  owns_client=True)
    try:
        yield the_runner
    finally:
        the_runner.close()


def attempt(workflow_id: str = "wf-f", **input: object) -> Attempt:
    return Attempt(workflow_id=workflow_id, task="load", step="fetch", number=1,
                   plugin="python", input=input)


def test_following_an_attempt_whose_job_is_gone_crashes_and_makes_none(
        cluster: Cluster, runner: KubernetesRunner) -> None:
    the_attempt = attempt(function="operator:add", args=[1, 2])
    outcome = runner.start(find_plugins()["python"], the_attempt, follow=True).wait(WAIT)
    assert outcome is not None and outcome.error_type == "crash", outcome
    assert outcome.message == (
        f"the Job {job_name(the_attempt)} of this attempt is gone from namespace "
        f"{cluster.namespace} "
        f"(it ended longer than the node's kubernetes.job_ttl ago, or was deleted); it is "
        f"not made again, lest the attempt run twice")
    assert cluster.created() == []


def test_following_takes_the_result_of_the_attempts_job(
        cluster: Cluster, runner: KubernetesRunner) -> None:
    python = find_plugins()["python"]
    the_attempt = attempt(function="operator:add", args=[1, 2])
    first = runner.start(python, the_attempt, epoch=1)
    assert (outcome := first.wait(WAIT)) is not None and outcome.output == 3, outcome
    again = runner.start(python, the_attempt, epoch=2, follow=True).wait(WAIT)
    assert again is not None and again.output == 3, again
    assert cluster.created() == [job_name(the_attempt)]


def test_a_job_of_the_attempts_name_with_other_labels_is_not_followed(
        cluster: Cluster, runner: KubernetesRunner) -> None:
    python = find_plugins()["python"]
    the_attempt = attempt(function="operator:add", args=[1, 2])
    assert runner.start(python, the_attempt).wait(WAIT) is not None
    patch: Any = client.BatchV1Api(cluster.api).patch_namespaced_job
    patch(job_name(the_attempt), cluster.namespace,  # someone else's Job took the name
          {"metadata": {"labels": {"noetl.io/step": "other"}}})
    for follow in (True, False):  # re-attach, and a create that meets it (409)
        outcome = runner.start(python, the_attempt, follow=follow).wait(WAIT)
        assert outcome is not None and outcome.error_type == "crash", outcome
        assert outcome.message == (f"a Job named {job_name(the_attempt)} in namespace "
                                   f"{cluster.namespace} is not this attempt's: its labels "
                                   f"noetl.io/step differ")
