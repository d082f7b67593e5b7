"""The bridge's link to NATS (bridge/_link.py): its state, and publishes with a message id
that reach their stream through an outage.

`Resends` alone on given times; then a real nats-server killed and started again
on its port and store, with a real `Bridge`.
"""

from __future__ import annotations

import collections
import logging
import os
import signal
from collections.abc import Iterator

import pytest

from noetl_actors.bridge import Bridge, ConnectOptions, EmbeddedNatsServer, LinkState
from noetl_actors.bridge._link import Resends
from noetl_actors.supervision import EventKind, start_supervisor
from tests.helpers import Recorder
from tests.test_bridge import FLAGS, WAIT, eventually

pytestmark = pytest.mark.timeout(120)


def item(n: int) -> tuple[str, bytes, dict[str, str]]:
    return (f"ev.{n}", b"{}", {"Nats-Msg-Id": f"m-{n}"})


# -- Resends, on given times ----------------------------------------------------------


def test_while_the_link_is_up_only_the_last_seconds_are_kept() -> None:
    resends = Resends(before=2.0)
    for n, at in enumerate([0.0, 1.0, 2.5, 3.0]):
        resends.keep(item(n), at)
    assert len(resends) == 3, "what was handed over more than 2 s ago is forgotten"
    assert resends.back(4.0) == [], "no outage: nothing to send again"


def test_after_an_outage_what_came_shortly_before_it_and_during_it_goes_again() -> None:
    resends = Resends(before=2.0)
    resends.keep(item(0), 0.0)   # long before: it reached the server
    resends.keep(item(1), 9.0)   # just before the link was seen down: maybe lost
    resends.down(10.0)
    resends.keep(item(2), 15.0)  # while down
    resends.down(16.0)           # seen down again: the first time counts
    assert resends.back(30.0) == [item(1), item(2)]
    assert resends.back(31.0) == [], "once per outage"
    resends.down(31.5)  # gone again at once: what was just sent again may be lost too
    assert resends.back(40.0) == [item(1), item(2)]


def test_an_outage_keeps_at_most_the_limit_and_warns_once(
        caplog: pytest.LogCaptureFixture) -> None:
    resends = Resends(before=2.0, limit=3)
    resends.down(0.0)
    with caplog.at_level(logging.WARNING, logger="noetl_actors.bridge"):
        for n in range(6):
            resends.keep(item(n), 1.0 + n)
    assert resends.back(10.0) == [item(3), item(4), item(5)]
    assert [r.getMessage() for r in caplog.records] == [
        "more than 3 publishes with a message id wait for NATS to come back: the oldest "
        "are no longer kept to be sent again"]


# -- a real server goes away -------------------------------------------------------------


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def bridge(nats_server: EmbeddedNatsServer, recorder: Recorder) -> Iterator[Bridge]:
    bridge = Bridge(ConnectOptions(servers=nats_server.url, name="link"), observers=[recorder])
    tree = start_supervisor(FLAGS, [bridge.child_spec()], id="link")
    try:
        assert bridge.wait_connected(WAIT)
        bridge.ensure_stream("EV", ["ev.>"])
        yield bridge
    finally:
        tree.stop(timeout=20)


def stored(bridge: Bridge) -> collections.Counter[int]:
    """How often the stream holds each message, by its number."""
    return collections.Counter(d.data["n"] for d in bridge.history("EV", ["ev.>"]))


def restart(server: EmbeddedNatsServer, recorder: Recorder, count: int) -> None:
    """Start the killed server again on its port and store; wait for the `count`th
    reconnect."""
    server.stop()
    server.start()
    recorder.wait_for(EventKind.RECONNECTED, count=count, timeout=WAIT)


def test_the_link_says_when_nats_is_away_and_counts_each_change(
        nats_server: EmbeddedNatsServer, bridge: Bridge, recorder: Recorder) -> None:
    before = bridge.link()
    assert before.up
    nats_server.kill()
    recorder.wait_for(EventKind.DISCONNECTED, timeout=WAIT)
    assert bridge.link() == LinkState(up=False, changes=before.changes + 1)
    restart(nats_server, recorder, 1)
    assert bridge.link() == LinkState(up=True, changes=before.changes + 2)


def test_a_message_id_stores_a_publish_once_however_often_it_is_sent(
        bridge: Bridge) -> None:
    for _ in range(3):
        bridge.publish("ev.a", {"n": 1}, msg_id="m-1")
    bridge.publish("ev.b", {"n": 2}, msg_id="m-2")
    eventually(lambda: stored(bridge) == {1: 1, 2: 1}, "each message stored once")


def test_a_publish_written_to_a_server_that_dies_unread_is_stored_once_it_is_back(
        nats_server: EmbeddedNatsServer, bridge: Bridge, recorder: Recorder) -> None:
    """The write succeeds (the socket takes it), the server never reads it: lost without
    a word, but for the copy sent again after the reconnect."""
    bridge.publish("ev.a", {"n": 0}, msg_id="m-0")
    eventually(lambda: stored(bridge) == {0: 1}, "the first message stored")
    assert nats_server.pid is not None
    os.kill(nats_server.pid, signal.SIGSTOP)  # it reads nothing more
    bridge.publish("ev.a", {"n": 1}, msg_id="m-1")
    bridge.publish("ev.a", {"n": 2})  # no id: not kept, lost with the server
    eventually(lambda: bridge.statistics().published >= 3, "the publishes handed over")
    nats_server.kill()
    recorder.wait_for(EventKind.DISCONNECTED, timeout=WAIT)

    restart(nats_server, recorder, 1)
    eventually(lambda: stored(bridge) == {0: 1, 1: 1}, "the message with an id, once")
    assert bridge.statistics().resent >= 1


def test_publishes_with_an_id_past_nats_pys_buffer_all_reach_the_stream_once(
        nats_server: EmbeddedNatsServer, bridge: Bridge, recorder: Recorder) -> None:
    nats_server.kill()
    recorder.wait_for(EventKind.DISCONNECTED, timeout=WAIT)
    count = 3000  # of 1 KB: more than nats-py's 2 MiB
    for n in range(count):
        bridge.publish("ev.x", {"n": n, "pad": "x" * 1000}, msg_id=f"m-{n}")
    eventually(lambda: bridge.statistics().unsent > 0, "nats-py to refuse some")

    restart(nats_server, recorder, 1)
    eventually(lambda: stored(bridge) == dict.fromkeys(range(count), 1),
               "every message once", timeout=30)
