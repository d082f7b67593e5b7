"""Shared fixtures: every test ends with no actor running and no thread left."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pykka
import pytest

from noetl_actors.bridge import EmbeddedNatsServer

if TYPE_CHECKING:
    from tests.kube_cluster import Cluster

THREAD_LEAK_WAIT = 5.0


@pytest.fixture(autouse=True)
def _no_leaked_threads() -> Iterator[None]:
    """Fail a test that leaves an actor or any other thread behind.

    Threads get a bounded moment to finish (an actor's thread ends a little
    after its exit is reported); anything still alive then is a leak.
    """
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + THREAD_LEAK_WAIT
    leaked: list[threading.Thread] = []
    while time.monotonic() < deadline:
        leaked = [t for t in threading.enumerate() if t not in before and t.is_alive()]
        if not leaked:
            break
        time.sleep(0.01)
    if leaked:
        pykka.ActorRegistry.stop_all(block=False)
        pytest.fail(f"threads left running after the test: {[t.name for t in leaked]}")


@pytest.fixture
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedNatsServer]:
    """A real nats-server with JetStream on a free loopback port, stopped after the test."""
    server = EmbeddedNatsServer(state_dir=tmp_path_factory.mktemp("nats")).start()
    try:
        yield server
    finally:
        server.stop()


def pytest_report_header(config: pytest.Config) -> str:
    """Which Kubernetes the runner's tests run on: the test double, or a real cluster."""
    from tests.kube_cluster import backend

    return backend()


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    """The Kubernetes of one runner test: a real cluster's namespace of its own when
    NOETL_TEST_KUBECONFIG is set, else a fresh test double (tests/kube_cluster.py)."""
    from tests.kube_cluster import open_cluster

    with open_cluster() as opened:
        yield opened
