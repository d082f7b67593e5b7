"""The node's health endpoint (`health.port`): what Kubernetes' probes of deploy/ ask.

A real `noetl node start` against a real nats-server: /livez and /readyz
answer 200; when NATS goes away, /readyz turns 503 and says why while
/livez stays 200 (the node reconnects by itself; a restart would not help).
"""

from __future__ import annotations

import http.client
import socket
import textwrap
from pathlib import Path

import pytest

from noetl_actors.bridge import EmbeddedNatsServer
from noetl_actors.errors import PlaybookError
from noetl_actors.services import HealthServer, load_node_config
from tests.node_helpers import NODE_CONFIG, running_node
from tests.run_helpers import wait_until

pytestmark = pytest.mark.timeout(120)


def get(port: int, path: str) -> tuple[int, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_the_health_server_answers_each_check_by_its_verdict() -> None:
    state = {"live": True, "ready": False}
    server = HealthServer("127.0.0.1", 0, live=lambda: (state["live"], "live?"),
                          ready=lambda: (state["ready"], "ready?")).start()
    try:
        assert get(server.port, "/livez") == (200, "live?\n")
        assert get(server.port, "/readyz") == (503, "ready?\n")
        state.update(live=False, ready=True)
        assert get(server.port, "/livez")[0] == 503
        assert get(server.port, "/readyz?verbose")[0] == 200
        assert get(server.port, "/")[0] == 404
    finally:
        server.stop()
        server.stop()


def test_a_check_that_raises_is_a_503_not_a_dead_server() -> None:
    def broken() -> tuple[bool, str]:
        raise RuntimeError("boom")

    server = HealthServer("127.0.0.1", 0, live=broken, ready=broken).start()
    try:
        status, text = get(server.port, "/livez")
        assert status == 503 and "the check failed: RuntimeError('boom')" in text
        assert get(server.port, "/readyz")[0] == 503
    finally:
        server.stop()


def test_a_node_is_live_and_ready_and_not_ready_without_nats(
        tmp_path: Path, nats_server: EmbeddedNatsServer) -> None:
    port = free_port()
    config = NODE_CONFIG + f"health: {{host: 127.0.0.1, port: {port}}}\n"
    with running_node(tmp_path, "h1", nats=nats_server.url, config=config) as node:
        wait_until(lambda: get(port, "/readyz")[0] == 200, 30, "the node to be ready")
        status, text = get(port, "/livez")
        assert status == 200 and "node h1: its root supervisor is alive" in text
        assert "connected to NATS" in get(port, "/readyz")[1]
        nats_server.stop()
        wait_until(lambda: get(port, "/readyz") == (503, "node h1: not connected to NATS\n"),
                   30, "/readyz to say NATS is away")
        assert get(port, "/livez")[0] == 200
        assert node.proc.poll() is None


def test_without_a_health_port_no_endpoint_is_served() -> None:
    assert load_node_config().health_port == 0


def test_a_bad_health_port_is_refused_at_its_line(tmp_path: Path) -> None:
    path = tmp_path / "node.yaml"
    path.write_text(textwrap.dedent("""\
        health:
          port: 70000
        """))
    with pytest.raises(PlaybookError) as caught:
        load_node_config(path)
    assert [str(p) for p in caught.value.problems] == [
        f"{path}:2:9: health.port must be a port number from 1 to 65535, or 0 for no "
        f"endpoint (got 70000)"]
