"""The Kubernetes the runner's tests run on: a real cluster if one is given, else the double.

With ``NOETL_TEST_KUBECONFIG=/path/to/kubeconfig`` set, `open_cluster()`
gives a client of that kubeconfig's current context and a namespace of the
test's own (``noetl-test-<random>``), created first and deleted after the
test (with everything in it). Without it, a fresh `KubeDouble` (a TEST
DOUBLE of the API server, tests/kube_double.py) and its namespace
``noetl-test``.

A variable of the suite's own, not ``KUBECONFIG``: that one is set on many
machines for other work, and the tests must never create Jobs in whatever
cluster happens to be current. docs/kubernetes.md says how to run them on
kind.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Iterator
from typing import Any

import attrs
import pytest
from kubernetes import client, config

from tests.kube_double import KubeDouble, kube_double

KUBECONFIG_ENV = "NOETL_TEST_KUBECONFIG"
DOUBLE_NAMESPACE = "noetl-test"


def real_kubeconfig() -> str | None:
    """The kubeconfig of the real cluster to test on, if one is given."""
    return os.environ.get(KUBECONFIG_ENV) or None


def backend() -> str:
    """Which Kubernetes the runner's tests run on, for the pytest header."""
    path = real_kubeconfig()
    if path is None:
        return (f"kubernetes: the TEST DOUBLE (tests/kube_double.py); set {KUBECONFIG_ENV} "
                f"to run the runner's tests on a real cluster")
    return f"kubernetes: the real cluster of {KUBECONFIG_ENV}={path}"


@attrs.frozen
class Cluster:
    """Where a test's Jobs go: `api` (a client, closed after the test) and `namespace`."""

    api: client.ApiClient
    namespace: str
    double: KubeDouble | None
    """The double, when the tests run on it (its own faults can be played)."""

    @property
    def real(self) -> bool:
        return self.double is None

    def need_double(self, why: str) -> KubeDouble:
        """The double; the test is skipped on a real cluster (`why`: what needs the double)."""
        if self.double is None:
            pytest.skip(f"needs the test double: {why}")
        return self.double

    def job_names(self) -> list[str]:
        """The Jobs in the namespace now (the double's: every Job not deleted)."""
        if self.double is not None:
            with self.double.lock:
                return [name for (_ns, name) in self.double.jobs]
        listed = client.BatchV1Api(self.api).list_namespaced_job(
            self.namespace, _preload_content=False)
        try:
            return [item["metadata"]["name"] for item in json.loads(listed.data)["items"]]
        finally:
            listed.release_conn()

    def created(self) -> list[str]:
        """Every Job created in the test, in order. The double records each create; a real
        cluster tells only of the Jobs still there (none of the tests deletes one it
        counts)."""
        return list(self.double.created) if self.double is not None else self.job_names()


@contextlib.contextmanager
def open_cluster() -> Iterator[Cluster]:
    """A `Cluster` for one test, torn down after it."""
    path = real_kubeconfig()
    if path is None:
        with kube_double() as double:
            api = client.ApiClient(client.Configuration(host=double.url))
            try:
                yield Cluster(api, DOUBLE_NAMESPACE, double)
            finally:
                api.close()
        return
    configuration = client.Configuration()
    config.load_kube_config(config_file=path, client_configuration=configuration,  # type: ignore[no-untyped-call]
                            persist_config=False)
    api = client.ApiClient(configuration)
    namespace = f"noetl-test-{uuid.uuid4().hex[:8]}"
    core: Any = client.CoreV1Api(api)
    core.create_namespace({"apiVersion": "v1", "kind": "Namespace",
                           "metadata": {"name": namespace,
                                        "labels": {"app.kubernetes.io/part-of":
                                                   "noetl-actors-tests"}}})
    try:
        yield Cluster(api, namespace, None)
    finally:
        try:
            core.delete_namespace(namespace, propagation_policy="Foreground")
        finally:
            api.close()
