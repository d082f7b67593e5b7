"""The bridge when the server stalls or goes away mid-call: what a timed-out or
interrupted call leaves behind, on the client and on the server."""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import signal
import threading
from collections.abc import Iterator
from typing import Any

import nats.aio.client
import pytest

from noetl_actors.bridge import Bridge, ConnectOptions, Delivery, EmbeddedNatsServer
from noetl_actors.errors import BridgeTimeout
from noetl_actors.supervision import EventKind, start_supervisor
from tests.helpers import Recorder
from tests.test_bridge import FLAGS, WAIT, eventually, server_subscriptions

AFTER_STALL = 30.0
"""How long a stalled server (SIGSTOP, then SIGCONT) may take to answer again."""


class Sink:
    """A mailbox that keeps what it is told, for the test thread to take."""

    def __init__(self) -> None:
        self.got: queue.Queue[Delivery] = queue.Queue()

    def tell(self, message: Any) -> None:
        self.got.put(message)


@pytest.fixture
def bridge(nats_server: EmbeddedNatsServer) -> Iterator[Bridge]:
    bridge = Bridge(ConnectOptions(servers=nats_server.url, name="stall"))
    tree = start_supervisor(FLAGS, [bridge.child_spec()], id="stall")
    try:
        assert bridge.wait_connected(WAIT)
        yield bridge
    finally:
        tree.stop(timeout=20)


@contextlib.contextmanager
def stalled(server: EmbeddedNatsServer) -> Iterator[None]:
    """The server answers nothing (SIGSTOP, and stopped) until the block ends (SIGCONT)."""
    pid = server.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        eventually(lambda: _state(pid) == "T", "the server stopped")
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0]


def subscribe_while_stalled(server: EmbeddedNatsServer, bridge: Bridge, subject: str) -> None:
    """A subscribe that times out while the server stalls, its SUB and PING written."""
    with stalled(server), pytest.raises(BridgeTimeout):
        bridge.subscribe(subject, Sink(), timeout=0.5)


def test_a_subscribe_that_timed_out_while_the_server_stalled_leaves_the_bridge_hearing(
    nats_server: EmbeddedNatsServer, bridge: Bridge,
) -> None:
    subscribe_while_stalled(nats_server, bridge, "ghost")

    later = Sink()
    bridge.subscribe("later", later, timeout=AFTER_STALL)
    bridge.publish("later", {"n": 1})
    assert later.got.get(timeout=AFTER_STALL).data["n"] == 1



def test_a_subscribe_that_timed_out_while_the_server_stalled_is_not_left_on_the_server(
    nats_server: EmbeddedNatsServer, bridge: Bridge,
) -> None:
    subscribe_while_stalled(nats_server, bridge, "ghost")

    assert bridge.statistics().subscriptions == 0
    eventually(lambda: "ghost" not in server_subscriptions(nats_server, "stall"),
               "the timed-out subscription gone from the server", timeout=AFTER_STALL)


def test_a_publish_acked_with_an_id_in_flight_across_a_bridge_restart_lands_once(
    nats_server: EmbeddedNatsServer, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Its acks are lost until the bridge has restarted: it is sent again on the new
    connection, and the stream holds it once."""
    answered = nats.aio.client.Client._request_sub_callback
    restarted, ack_lost = threading.Event(), threading.Event()

    async def lossy(self: nats.aio.client.Client, msg: Any) -> None:
        if not restarted.is_set() and b'"seq":' in msg.data:  # a PubAck
            ack_lost.set()
            return
        await answered(self, msg)

    monkeypatch.setattr(nats.aio.client.Client, "_request_sub_callback", lossy)
    bridge = Bridge(ConnectOptions(servers=nats_server.url, name="acked"))
    tree = start_supervisor(FLAGS, [bridge.child_spec()], id="acked")
    try:
        assert bridge.wait_connected(WAIT)
        bridge.ensure_stream("ONCE", ["once.>"])
        ack = bridge.publish_acked("once.a", {"n": 1}, msg_id="m-1", timeout=AFTER_STALL)
        assert ack_lost.wait(WAIT), "the publish never reached the server"
        tree.crash_child("bridge", "the test crashed the bridge")
        eventually(lambda: bridge.statistics().connections == 2 and bridge.wait_connected(0),
                   "the bridge restarted")
        restarted.set()

        assert ack.get(timeout=AFTER_STALL).stream == "ONCE"
        [stored] = bridge.history("ONCE", ["once.>"])
        assert stored.data["n"] == 1
    finally:
        tree.stop(timeout=20)


def test_publishes_past_nats_pys_reconnect_buffer_are_counted_lost_and_warned_once(
    nats_server: EmbeddedNatsServer, caplog: pytest.LogCaptureFixture,
) -> None:
    recorder = Recorder()
    bridge = Bridge(ConnectOptions(servers=nats_server.url, name="away"), observers=[recorder])
    tree = start_supervisor(FLAGS, [bridge.child_spec()], id="away")
    try:
        assert bridge.wait_connected(WAIT)
        nats_server.kill()
        recorder.wait_for(EventKind.DISCONNECTED, timeout=WAIT)
        count = 3000  # of 1 KB: more than nats-py's 2 MiB
        with caplog.at_level(logging.WARNING, logger="noetl_actors.bridge"):
            for i in range(count):
                bridge.publish("away.x", {"i": i, "pad": "x" * 1000})
            eventually(lambda: bridge.statistics().unsent > count // 4, "publishes lost")
            [full] = warnings(caplog)
            assert "reconnect buffer is full" in full

            nats_server.stop()
            nats_server.start()
            recorder.wait_for(EventKind.RECONNECTED, timeout=WAIT)
            eventually(lambda: len(warnings(caplog)) >= 2, "the outage's count")
        stats = bridge.statistics()
        assert stats.published + stats.unsent == count
        assert warnings(caplog) == [full, f"{stats.unsent} publishes were lost while "
                                          f"{nats_server.url} was away"]
    finally:
        tree.stop(timeout=20)


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "noetl_actors.bridge" and r.levelno >= logging.WARNING]
