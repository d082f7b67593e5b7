"""The bridge against real nats-server processes: mailboxes on subjects, JetStream,
supervision of the connection, and the server going away."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import inspect
import json
import logging
import queue
import threading
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import nats
import nats.aio.client
import pykka
import pytest

from noetl_actors.bridge import (
    DEAD_LETTER_SUBJECT,
    Bridge,
    ConnectOptions,
    Delivery,
    EmbeddedNatsServer,
    PubAck,
    encode,
)
from noetl_actors.bridge._connection import Connection
from noetl_actors.bridge._loop import LoopThread
from noetl_actors.bridge._nats_internals import _DirectClient, fast_paths, writable
from noetl_actors.errors import AuthorizationError, BridgeError, ConnectionLost, SupervisionError
from noetl_actors.supervision import (
    Backoff,
    ChildSpec,
    EventKind,
    ExitKind,
    ExitReason,
    Restart,
    SupervisedActor,
    SupervisorFlags,
    SupervisorRef,
    start_supervisor,
)
from tests.helpers import Recorder
from tests.run_helpers import wait_until

WAIT = 10.0
QUIET = 0.5
"""How long a test watches for a message that must not come."""
FLAGS = SupervisorFlags(max_restarts=5, within=60)
BRIDGE = "/root/bridge"

T = TypeVar("T")


# -- actors --------------------------------------------------------------------


class Inbox(SupervisedActor):
    """Puts every `Delivery` it is told into a queue; answers or acks it if asked.

    'crash' makes it raise; anything else that is not a Delivery is ignored.
    """

    def __init__(
        self,
        deliveries: queue.Queue[Delivery],
        *,
        bridge: Bridge | None = None,
        answer: bool = False,
        ack: bool = False,
    ) -> None:
        super().__init__()
        self.deliveries = deliveries
        self.bridge = bridge
        self.answer = answer
        self.ack = ack

    def on_receive(self, message: Any) -> Any:
        if message == "crash":
            raise ValueError("the inbox crashed on purpose")
        if isinstance(message, Delivery):
            self.deliveries.put(message)
            if self.answer:
                assert self.bridge is not None
                self.bridge.respond(message, {"echo": message.data.get("text")})
            if self.ack:
                message.ack()
        return None


# -- a node: a supervisor whose first child is the bridge ------------------------


class Node:
    """A root supervisor with the bridge as its child; actors join as temporary children."""

    def __init__(self, bridge: Bridge, tree: SupervisorRef, recorder: Recorder) -> None:
        self.bridge = bridge
        self.tree = tree
        self.recorder = recorder

    def inbox(self, id: str, **kwargs: Any) -> tuple[pykka.ActorRef[Inbox], queue.Queue[Delivery]]:
        deliveries: queue.Queue[Delivery] = queue.Queue()
        spec = ChildSpec(
            id=id,
            start=functools.partial(Inbox, deliveries, bridge=self.bridge, **kwargs),
            restart=Restart.TEMPORARY,
        )
        return self.tree.start_child(spec), deliveries


@contextlib.contextmanager
def node(
    server: EmbeddedNatsServer,
    *,
    flags: SupervisorFlags = FLAGS,
    id: str = "root",
    **options: Any,
) -> Iterator[Node]:
    recorder = Recorder()
    options.setdefault("name", f"test-{id}")
    bridge = Bridge(ConnectOptions(servers=server.url, **options), observers=[recorder])
    tree = start_supervisor(flags, [bridge.child_spec()], id=id, observers=[recorder])
    try:
        # A subscribe made before the bridge has attached its connection returns
        # at once and reaches the server a moment later: tests start connected.
        assert bridge.wait_connected(WAIT), "the bridge did not connect"
        yield Node(bridge, tree, recorder)
    finally:
        tree.stop(timeout=20)
        # What the bridge left unclosed (sockets, asyncio tasks) is reported
        # when it is collected: collect now, so that it is reported here and
        # not in whichever later test happens to trigger the collection.
        gc.collect()


# -- waiting -------------------------------------------------------------------


def take(deliveries: queue.Queue[Delivery], count: int, timeout: float = WAIT) -> list[Delivery]:
    """The next `count` deliveries; fails if they do not all come within `timeout`."""
    deadline = time.monotonic() + timeout
    got: list[Delivery] = []
    while len(got) < count:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"got {len(got)} of {count} messages within {timeout:g}s")
        with contextlib.suppress(queue.Empty):
            got.append(deliveries.get(timeout=remaining))
    return got


def assert_nothing_more(deliveries: queue.Queue[Delivery], within: float = QUIET) -> None:
    try:
        extra = deliveries.get(timeout=within)
    except queue.Empty:
        return
    raise AssertionError(f"an unexpected message arrived: {extra}")


def eventually(check: Callable[[], T], what: str, timeout: float = WAIT) -> T:
    """Poll `check` until it returns something truthy; fail with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g}s: {what} (last: {result!r})")
        time.sleep(0.02)


# -- looking at the server from outside ------------------------------------------


def monitor(server: EmbeddedNatsServer, endpoint: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{server.monitor_url}/{endpoint}", timeout=5) as response:
        result: dict[str, Any] = json.load(response)
        return result


def server_connections(server: EmbeddedNatsServer, name: str) -> list[dict[str, Any]]:
    """The server's open client connections called `name`, with their subscriptions."""
    connz = monitor(server, "connz?subs=1")
    return [c for c in connz.get("connections") or [] if c.get("name") == name]


def server_subscriptions(server: EmbeddedNatsServer, name: str) -> list[str]:
    return sorted(
        subject
        for connection in server_connections(server, name)
        for subject in connection.get("subscriptions_list") or []
    )


def with_client(server: EmbeddedNatsServer, work: Callable[[Any], Awaitable[T]], **kw: Any) -> T:
    """Run `work(client)` with a plain nats-py client of our own, not the bridge's."""

    async def run() -> T:
        client = await nats.connect(server.url, name="test-raw-client", **kw)
        try:
            return await work(client)
        finally:
            await client.close()

    return asyncio.run(run())


def consumer_info(server: EmbeddedNatsServer, stream: str, durable: str) -> Any:
    async def info(client: Any) -> Any:
        return await client.jetstream().consumer_info(stream, durable)

    return with_client(server, info)


@contextlib.contextmanager
def connection_to(server: EmbeddedNatsServer) -> Iterator[Connection]:
    """A `Connection` alone, on a loop thread of its own (stopped after)."""
    loop = LoopThread().start()
    try:
        connection = Connection(ConnectOptions(servers=server.url), loop=loop).open()
        try:
            yield connection
        finally:
            connection.close()
    finally:
        loop.stop()


def kill_the_loop(bridge: Bridge) -> None:
    """Make the bridge's asyncio loop thread die, as a bug in a callback would.

    The connection is reachable only through private attributes: the bridge
    offers no way to break itself, so the test reaches in.
    """

    def die() -> None:
        raise SystemExit("the test killed the NATS loop")

    connection = bridge._core.connection
    assert connection is not None, "the bridge has no connection to break"
    connection.loop.call_soon_threadsafe(die)


# -- core NATS -------------------------------------------------------------------


class TestCoreNats:
    def test_a_published_message_reaches_the_subscribed_actor_as_a_delivery(
        self, nats_server: EmbeddedNatsServer
    ) -> None:
        with node(nats_server) as n:
            ref, deliveries = n.inbox("orders")
            n.bridge.subscribe("orders.created", ref)

            n.bridge.publish("orders.created", {"order": 7}, headers={"Trace-Id": "abc"})

            [delivery] = take(deliveries, 1)
            assert delivery.subject == "orders.created"
            assert delivery.data == {"schema_version": 1, "order": 7}
            assert delivery.headers["Trace-Id"] == "abc"
            assert delivery.reply is None and delivery.js is None
            assert_nothing_more(deliveries)

    def test_publishes_from_many_threads_arrive_in_each_threads_order_headers_or_not(
        self, nats_server: EmbeddedNatsServer
    ) -> None:
        # Plain publishes are written straight to the socket; those with headers
        # go through nats-py's publish(): one order either way.
        with node(nats_server) as n:
            ref, deliveries = n.inbox("ordered")
            n.bridge.subscribe("ordered.>", ref)

            def publish(thread: int) -> None:
                for i in range(100):
                    headers = {"Nth": str(i)} if i % 10 == 0 else None
                    n.bridge.publish(f"ordered.{thread}", {"i": i}, headers=headers)

            threads = [threading.Thread(target=publish, args=(t,)) for t in range(4)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()

            got = take(deliveries, 400)
            for t in range(4):
                assert [d.data["i"] for d in got if d.subject == f"ordered.{t}"] == list(range(100))
            assert all(d.headers.get("Nth") == str(d.data["i"]) for d in got
                       if d.data["i"] % 10 == 0)

    def test_a_thread_keeps_its_order_while_nats_py_holds_a_full_buffer(
        self, nats_server: EmbeddedNatsServer
    ) -> None:
        # A message with headers direct write cannot take (a value to strip) sends
        # its batch through nats-py's publish(); past its 2 MB buffer that waits,
        # and what is published meanwhile must queue behind it, not be written
        # straight to the socket ahead of it.
        awkward = {"Kind": " first "}
        got: queue.Queue[int] = queue.Queue()
        with connection_to(nats_server) as receiver, connection_to(nats_server) as sender:
            receiver.call(receiver.subscribe(
                "order.>", "", lambda msg: got.put(int(msg.subject.rsplit(".", 1)[1]))
            ), timeout=WAIT)
            # The SUB is only queued: without a round trip the server may not have it
            # when the sender's first messages arrive on the other connection, and
            # drops them (no interest).
            receiver.call(receiver.client.flush(), timeout=WAIT)
            assert not writable(sender.client, [("order.0", b"{}", awkward)])
            sent = 0
            sender.publish_nowait(f"order.{sent}", b"{}", awkward)
            for sent in range(1, 16):
                sender.publish_nowait(f"order.{sent}", b"x" * 200_000)
            for sent in range(16, 400):
                sender.publish_nowait(f"order.{sent}", b"{}")
                time.sleep(0.0002)

            order = [got.get(timeout=WAIT) for _ in range(sent + 1)]
            assert order == list(range(sent + 1))

    def test_the_installed_nats_py_lets_messages_be_handed_over_where_they_are_read(
        self, nats_server: EmbeddedNatsServer
    ) -> None:
        # Connection's client overrides nats-py's private Client._process_msg;
        # if an upgrade changes its signature, messages take the slower path: say so.
        ours = inspect.signature(_DirectClient._process_msg).parameters
        theirs = inspect.signature(nats.aio.client.Client._process_msg).parameters
        assert list(ours) == list(theirs)
        got: queue.Queue[tuple[str, str]] = queue.Queue()
        with connection_to(nats_server) as connection:
            live = connection.call(connection.subscribe(
                "direct.>", "", lambda msg: got.put((msg.subject, threading.current_thread().name))
            ), timeout=WAIT)
            assert fast_paths.delivery is True
            assert isinstance(connection.client, _DirectClient)
            assert live._id in connection.client.direct_handlers
            connection.publish_nowait("direct.one", b"{}")
            assert got.get(timeout=WAIT) == ("direct.one", "noetl-nats-loop")
            connection.call(connection.unsubscribe(live), timeout=WAIT)
            assert live._id not in connection.client.direct_handlers

    def test_a_blocking_call_on_the_loops_own_thread_fails_at_once_not_at_its_timeout(
        self, nats_server: EmbeddedNatsServer
    ) -> None:
        # An actor hosted on the loop that waited on NATS would wait for itself.
        outcome: queue.Queue[BaseException | None] = queue.Queue()
        with connection_to(nats_server) as connection:

            def on_the_loop() -> None:
                try:
                    connection.call(connection.client.flush(), timeout=30)
                except BaseException as error:
                    outcome.put(error)
                else:
                    outcome.put(None)

            connection.loop.call_soon_threadsafe(on_the_loop)
            error = outcome.get(timeout=WAIT)
            assert isinstance(error, BridgeError)
            assert "NATS loop's own thread" in str(error)
            connection.call(connection.client.flush(), timeout=WAIT)  # elsewhere it works

    def test_the_installed_nats_py_lets_publishes_be_written_straight_to_the_socket(
        self, nats_server: EmbeddedNatsServer
    ) -> None:
        # Connection._write_outbox uses three private attributes of nats-py's Client;
        # if an upgrade renames them, publishes fall back to the slower path: say so.
        with connection_to(nats_server) as connection:
            assert writable(connection.client, [("a.b", b"{}", None)])
            assert fast_paths.write is True
            assert isinstance(connection.client._pending, list)
            assert isinstance(connection.client._pending_data_size, int)
            assert writable(connection.client, [("a.b", b"{}", {"H": "v"})]), "as HPUB"
            assert not writable(connection.client, [("a.b", b"{}", {"H": "two\nlines"})])
            assert not writable(connection.client, [("a b", b"{}", None)])

    def test_on_loop_takes_what_it_handles_and_the_actor_gets_the_rest(
        self, nats_server: EmbeddedNatsServer
    ) -> None:
        handled: list[tuple[int, str]] = []

        def evens(delivery: Delivery) -> bool:
            if delivery.data["i"] == 3:
                raise RuntimeError("a bug in on_loop")  # logged; the actor gets it
            if delivery.data["i"] % 2:
                return False
            handled.append((delivery.data["i"], threading.current_thread().name))
            return True

        with node(nats_server) as n:
            ref, deliveries = n.inbox("odds")
            n.bridge.subscribe("numbers", ref, on_loop=evens)
            for i in range(6):
                n.bridge.publish("numbers", {"i": i})

            assert [d.data["i"] for d in take(deliveries, 3)] == [1, 3, 5]
            assert handled == [(0, "noetl-nats-loop"), (2, "noetl-nats-loop"),
                               (4, "noetl-nats-loop")]
            assert_nothing_more(deliveries)

    def test_an_actor_answers_a_request_with_respond(self, nats_server: EmbeddedNatsServer) -> None:
        with node(nats_server) as n:
            ref, requests = n.inbox("echo", answer=True)
            n.bridge.subscribe("svc.echo", ref)

            reply = n.bridge.request("svc.echo", {"text": "hello"}, timeout=5).get(timeout=WAIT)

            assert reply.data == {"schema_version": 1, "echo": "hello"}
            [request] = take(requests, 1)
            assert request.data["text"] == "hello" and request.reply

    def test_a_request_nobody_listens_to_fails_with_a_bridge_error_without_waiting_it_out(
        self, nats_server: EmbeddedNatsServer
    ) -> None:
        with node(nats_server) as n:
            began = time.monotonic()
            future = n.bridge.request("svc.nobody", {"text": "anyone?"}, timeout=60)

            with pytest.raises(BridgeError, match="no responders"):
                future.get(timeout=WAIT)

            assert time.monotonic() - began < 30, "waited for the timeout instead of failing"

    def test_a_star_matches_one_token_and_a_greater_than_matches_the_rest(
        self, nats_server: EmbeddedNatsServer
    ) -> None:
        with node(nats_server) as n:
            star, one_token = n.inbox("star")
            rest, any_tokens = n.inbox("rest")
            n.bridge.subscribe("metrics.*.cpu", star)
            n.bridge.subscribe("metrics.>", rest)

            for subject in ("metrics.host1.cpu", "metrics.host1.mem",
                            "metrics.host1.disk.sda", "metrics.host2.cpu"):
                n.bridge.publish(subject, {"at": subject})

            assert [d.subject for d in take(any_tokens, 4)] == [
                "metrics.host1.cpu", "metrics.host1.mem",
                "metrics.host1.disk.sda", "metrics.host2.cpu",
            ]
            # One subscription gets its messages in order: host2.cpu came last.
            assert [d.subject for d in take(one_token, 2)] == [
                "metrics.host1.cpu", "metrics.host2.cpu"]
            assert_nothing_more(one_token, within=0)
            assert_nothing_more(any_tokens, within=0)

    def test_a_queue_group_gives_each_message_to_exactly_one_member(
        self, nats_server: EmbeddedNatsServer
    ) -> None:
        with node(nats_server) as n:
            first, to_first = n.inbox("worker-1")
            second, to_second = n.inbox("worker-2")
            n.bridge.subscribe("jobs.>", first, queue="workers")
            n.bridge.subscribe("jobs.>", second, queue="workers")
            count = 200

            for i in range(count):
                n.bridge.publish(f"jobs.{i}", {"i": i})

            received: dict[str, list[int]] = {"worker-1": [], "worker-2": []}

            def all_arrived() -> bool:
                for name, deliveries in (("worker-1", to_first), ("worker-2", to_second)):
                    while not deliveries.empty():
                        received[name].append(deliveries.get_nowait().data["i"])
                return sum(map(len, received.values())) >= count

            eventually(all_arrived, f"{count} messages across the queue group")
            both = received["worker-1"] + received["worker-2"]
            assert sorted(both) == list(range(count)), "a message was lost or delivered twice"
            assert received["worker-1"] and received["worker-2"], "one member got everything"
            eventually(lambda: n.bridge.statistics().delivered == count, "delivered counted")

    def test_ten_thousand_messages_from_another_thread_arrive_all_and_in_order(
        self, nats_server: EmbeddedNatsServer
    ) -> None:
        count = 10_000
        with node(nats_server) as n:
            ref, deliveries = n.inbox("sink")
            n.bridge.subscribe("load.>", ref)
            failures: list[BaseException] = []

            def publish_all() -> None:
                try:
                    for i in range(count):
                        n.bridge.publish("load.x", {"i": i})
                except BaseException as error:
                    failures.append(error)

            publisher = threading.Thread(target=publish_all, name="test-publisher")
            publisher.start()
            try:
                got = take(deliveries, count, timeout=30)
            finally:
                publisher.join(WAIT)

            assert failures == []
            assert [d.data["i"] for d in got] == list(range(count))
            eventually(lambda: n.bridge.statistics().delivered == count, "delivered counted")
            stats = n.bridge.statistics()
            assert (stats.published, stats.dropped, stats.malformed) == (count, 0, 0)
            assert_nothing_more(deliveries, within=0.1)


# -- malformed payloads ----------------------------------------------------------


MALFORMED = [
    (b"not json at all", "not JSON"),
    (b"\xff\xfe\x00", "not JSON"),
    (b"[1, 2, 3]", "not a JSON object"),
    (b'{"status": "ok"}', "no 'schema_version' field"),
    (b'{"schema_version": 99}', "schema_version 99 is not one this runtime reads"),
]


class TestMalformedPayloads:
    def test_malformed_payloads_never_reach_the_actor_are_counted_and_dead_lettered(
        self, nats_server: EmbeddedNatsServer
    ) -> None:
        with node(nats_server) as n:
            ref, deliveries = n.inbox("strict")
            n.bridge.subscribe("in.>", ref)

            async def send_bad_then_good(client: Any) -> list[Any]:
                dead_letters: list[Any] = []
                all_there = asyncio.Event()

                async def on_dead_letter(msg: Any) -> None:
                    dead_letters.append(msg)
                    if len(dead_letters) == len(MALFORMED):
                        all_there.set()

                await client.subscribe(DEAD_LETTER_SUBJECT, cb=on_dead_letter)
                await client.flush()
                for payload, _reason in MALFORMED:
                    await client.publish("in.raw", payload)
                await client.publish("in.raw", encode({"good": True}))
                await client.flush()
                await asyncio.wait_for(all_there.wait(), WAIT)
                return dead_letters

            dead_letters = with_client(nats_server, send_bad_then_good)

            # The good message came last on the same subscription: the bad ones
            # before it were dealt with, none of them was told to the actor.
            [good] = take(deliveries, 1)
            assert good.data == {"schema_version": 1, "good": True}
            assert_nothing_more(deliveries, within=0)
            assert ref.is_alive()
            assert n.recorder.of(EventKind.EXITED) == []
            assert n.bridge.statistics().malformed == len(MALFORMED)

            assert [m.data for m in dead_letters] == [payload for payload, _ in MALFORMED]
            for msg, (_payload, reason) in zip(dead_letters, MALFORMED, strict=True):
                assert msg.headers["Noetl-Subject"] == "in.raw"
                assert msg.headers["Noetl-Reason"].startswith(reason)

    def test_a_malformed_stream_message_is_dead_lettered_and_not_redelivered(
        self, nats_server: EmbeddedNatsServer
    ) -> None:
        with node(nats_server) as n:
            n.bridge.ensure_stream("RAW", ["raw.>"])
            ref, deliveries = n.inbox("consumer", ack=True)

            async def publish_bad_then_good(client: Any) -> Any:
                got: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
                await client.subscribe(DEAD_LETTER_SUBJECT, cb=functools.partial(_set_once, got))
                await client.flush()
                js = client.jetstream()
                await js.publish("raw.bad", b"{broken")
                await js.publish("raw.good", encode({"n": 1}))
                n.bridge.consume("RAW", "reader", ref, ack_wait=1.0)
                return await asyncio.wait_for(got, WAIT)

            dead = with_client(nats_server, publish_bad_then_good)

            assert dead.data == b"{broken"
            assert dead.headers["Noetl-Subject"] == "raw.bad"
            [good] = take(deliveries, 1)
            assert good.subject == "raw.good" and good.js is not None
            info = eventually(
                lambda: (i := consumer_info(nats_server, "RAW", "reader")).num_ack_pending == 0
                and i, "both stream messages settled")
            assert info.num_pending == 0
            assert_nothing_more(deliveries, within=1.5)  # past ack_wait: no redelivery


async def _set_once(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():
        future.set_result(value)


# -- actor exit ------------------------------------------------------------------


class TestActorExit:
    @pytest.mark.parametrize("how", ["stops", "crashes"])
    def test_an_actor_that_exits_takes_its_subscriptions_off_the_server(
        self, nats_server: EmbeddedNatsServer, how: str
    ) -> None:
        with node(nats_server, name="exit-test") as n:
            eventually(lambda: server_connections(nats_server, "exit-test"), "the bridge connected")
            before = server_subscriptions(nats_server, "exit-test")
            ref, deliveries = n.inbox("leaving")
            n.bridge.subscribe("exit.a", ref)
            n.bridge.subscribe("exit.*.b", ref)
            n.bridge.subscribe("exit.>", ref, queue="group")
            # The server has them once subscribe() returns (it flushed), but its
            # monitoring endpoint may show them a moment later: poll, do not read once.
            eventually(
                lambda: set(server_subscriptions(nats_server, "exit-test")) - set(before)
                == {"exit.a", "exit.*.b", "exit.>"},
                "the server has the three subscriptions",
            )
            assert n.bridge.statistics().subscriptions == 3

            if how == "stops":
                ref.stop()
            else:
                ref.tell("crash")
                n.recorder.wait_for(EventKind.EXITED, "/root/leaving")

            eventually(
                lambda: server_subscriptions(nats_server, "exit-test") == before,
                "the server dropped the exited actor's subscriptions",
            )
            assert n.bridge.statistics().subscriptions == 0
            witness, seen = n.inbox("witness")
            n.bridge.subscribe("exit.a", witness)
            n.bridge.publish("exit.a", {"late": True})
            take(seen, 1)
            assert deliveries.empty()
            assert n.bridge.statistics().dropped == 0, "the bridge still routed to the exited actor"

    def test_cancel_ends_one_subscription_and_keeps_the_others(
        self, nats_server: EmbeddedNatsServer
    ) -> None:
        with node(nats_server, name="cancel-test") as n:
            ref, deliveries = n.inbox("a")
            kept = n.bridge.subscribe("keep.it", ref)
            dropped = n.bridge.subscribe("drop.it", ref)

            dropped.cancel()

            eventually(lambda: server_subscriptions(nats_server, "cancel-test") == ["keep.it"],
                       "only the kept subscription on the server")
            n.bridge.publish("drop.it", {"n": 1})
            n.bridge.publish("keep.it", {"n": 2})
            assert [d.subject for d in take(deliveries, 1)] == [kept.subject]
            assert_nothing_more(deliveries, within=0.2)


    def test_a_subscription_cancelled_while_it_is_being_made_is_not_left_on_the_server(
        self, nats_server: EmbeddedNatsServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        making, go_on = threading.Event(), threading.Event()
        subscribe = Connection.subscribe

        async def slow_subscribe(self: Connection, *args: Any) -> Any:
            live = await subscribe(self, *args)
            making.set()
            while not go_on.is_set():
                await asyncio.sleep(0.01)
            return live

        monkeypatch.setattr(Connection, "subscribe", slow_subscribe)
        got: queue.Queue[Delivery] = queue.Queue()

        class Sink:
            def tell(self, delivery: Delivery) -> None:
                got.put(delivery)

        bridge = Bridge(ConnectOptions(servers=nats_server.url, name="cancel-early"))
        subscription = bridge.subscribe("early.cancelled", Sink())  # made once it connects

        def cancel_while_it_is_made() -> None:
            making.wait(WAIT)
            subscription.cancel()
            go_on.set()

        canceller = threading.Thread(target=cancel_while_it_is_made)
        canceller.start()
        tree = start_supervisor(FLAGS, [bridge.child_spec()], id="early")
        try:
            canceller.join(WAIT)
            bridge.publish("early.cancelled", {"n": 1})
            assert_nothing_more(got)
            eventually(lambda: server_connections(nats_server, "cancel-early")
                       and server_subscriptions(nats_server, "cancel-early") == [],
                       "the cancelled subscription off the server")
            assert bridge.statistics().subscriptions == 0
        finally:
            go_on.set()
            tree.stop(timeout=20)


# -- the bridge as a supervised child -----------------------------------------------


class TestSupervisedBridge:
    def test_a_bridge_whose_loop_thread_dies_is_restarted_and_its_subscriptions_work_again(
        self, nats_server: EmbeddedNatsServer
    ) -> None:
        with node(nats_server) as n:
            ref, deliveries = n.inbox("listener")
            n.bridge.subscribe("ping.>", ref)
            n.bridge.publish("ping.before", {"n": 0})
            take(deliveries, 1)

            kill_the_loop(n.bridge)

            [exited] = n.recorder.wait_for(EventKind.EXITED, BRIDGE)
            assert exited.reason is not None and exited.reason.kind is ExitKind.CRASH
            assert exited.reason.error_type == "ConnectionLost"
            assert "the NATS loop thread died" in exited.reason.message
            n.recorder.wait_for(EventKind.RESTARTED, BRIDGE)
            assert len(n.recorder.of(EventKind.CONNECTED, BRIDGE)) == 2
            assert n.bridge.statistics().connections == 2

            n.bridge.publish("ping.after", {"n": 1})

            [after] = take(deliveries, 1)
            assert after.subject == "ping.after"
            assert ref.is_alive()

    def test_the_connection_of_a_dead_loop_is_closed_on_the_server(
        self, nats_server: EmbeddedNatsServer
    ) -> None:
        with node(nats_server, name="dead-loop") as n:
            ref, _deliveries = n.inbox("listener")
            n.bridge.subscribe("work.>", ref, queue="workers")
            eventually(lambda: len(server_connections(nats_server, "dead-loop")) == 1,
                       "the bridge connected")

            kill_the_loop(n.bridge)
            n.recorder.wait_for(EventKind.RESTARTED, BRIDGE)

            # A connection left open keeps its queue subscription: the server
            # would go on routing work to it, where nobody reads.
            eventually(
                lambda: len(server_connections(nats_server, "dead-loop")) == 1,
                "the dead connection closed, one connection left",
                timeout=3,
            )

    def test_publishes_while_the_bridge_restarts_are_buffered_and_delivered(
        self, nats_server: EmbeddedNatsServer
    ) -> None:
        slow = SupervisorFlags(max_restarts=5, within=60, backoff=Backoff(initial=1.0, max=1.0))
        with node(nats_server, flags=slow) as n:
            ref, deliveries = n.inbox("listener")
            n.bridge.subscribe("buffered.>", ref)

            kill_the_loop(n.bridge)
            n.recorder.wait_for(EventKind.BACKING_OFF, BRIDGE)
            for i in range(5):
                n.bridge.publish(f"buffered.{i}", {"i": i})
            stats = n.bridge.statistics()
            assert (stats.connected, stats.buffered) == (False, 5)

            n.recorder.wait_for(EventKind.RESTARTED, BRIDGE)

            assert [d.data["i"] for d in take(deliveries, 5, timeout=3)] == [0, 1, 2, 3, 4]
            assert n.bridge.statistics().buffered == 0

    def test_publishes_before_the_bridge_starts_are_sent_once_it_connects(
        self, nats_server: EmbeddedNatsServer
    ) -> None:
        with node(nats_server, id="receiver") as receiver:
            ref, deliveries = receiver.inbox("listener")
            receiver.bridge.subscribe("early.>", ref)
            sender = Bridge(ConnectOptions(servers=nats_server.url, name="test-sender"))
            for i in range(5):
                sender.publish(f"early.{i}", {"i": i})
            stats = sender.statistics()
            assert (stats.connected, stats.buffered, stats.published) == (False, 5, 0)

            tree = start_supervisor(FLAGS, [sender.child_spec()], id="sender")
            try:
                assert [d.data["i"] for d in take(deliveries, 5)] == [0, 1, 2, 3, 4]
                stats = sender.statistics()
                assert (stats.connected, stats.buffered, stats.published) == (True, 0, 5)
            finally:
                tree.stop(timeout=20)

    def test_a_subscription_made_before_the_bridge_starts_gets_what_was_published_meanwhile(
        self, nats_server: EmbeddedNatsServer
    ) -> None:
        deliveries: queue.Queue[Delivery] = queue.Queue()
        bridge = Bridge(ConnectOptions(servers=nats_server.url, name="test-early"))
        tree = start_supervisor(FLAGS, [ChildSpec(
            id="listener", start=functools.partial(Inbox, deliveries),
            restart=Restart.TEMPORARY)])
        try:
            [listener] = tree.which_children()
            assert listener.ref is not None
            bridge.subscribe("early.>", listener.ref)
            for i in range(3):
                bridge.publish(f"early.{i}", {"i": i})

            tree.start_child(bridge.child_spec())

            assert [d.data["i"] for d in take(deliveries, 3, timeout=3)] == [0, 1, 2]
        finally:
            tree.stop(timeout=20)


# -- the server goes away ------------------------------------------------------------


class TestServerGoesAway:
    def test_the_bridge_reconnects_by_itself_when_the_server_is_killed_and_started_again(
        self, nats_server: EmbeddedNatsServer
    ) -> None:
        with node(nats_server) as n:
            ref, deliveries = n.inbox("listener")
            n.bridge.subscribe("beat.>", ref)
            n.bridge.publish("beat.0", {"n": 0})
            take(deliveries, 1)

            nats_server.kill()
            n.recorder.wait_for(EventKind.DISCONNECTED, BRIDGE)
            nats_server.stop()
            nats_server.start()

            n.recorder.wait_for(EventKind.RECONNECTED, BRIDGE, timeout=15)
            eventually(lambda: "beat.>" in server_subscriptions(nats_server, "test-root"),
                       "the new server has the bridge's subscription")

            async def sent_from_outside(client: Any) -> None:
                await client.publish("beat.1", encode({"n": 1}))

            with_client(nats_server, sent_from_outside)
            [after] = take(deliveries, 1)
            assert after.data["n"] == 1
            stats = n.bridge.statistics()
            assert stats.reconnects >= 1
            assert stats.connections == 1, "the client reconnects; the actor is not restarted"
            assert n.recorder.of(EventKind.EXITED, BRIDGE) == []

    def test_jetstream_publishes_with_ids_across_a_server_kill_are_neither_lost_nor_duplicated(
        self, nats_server: EmbeddedNatsServer
    ) -> None:
        count = 600
        with node(nats_server) as n:
            n.bridge.ensure_stream("T", ["t.>"])
            acks: list[PubAck] = []
            failures: list[BaseException] = []
            a_third_sent = threading.Event()
            killed = threading.Event()

            def publish_all() -> None:
                try:
                    for i in range(count):
                        if i == count // 2:
                            # Half of them go out while the server is down or restarting.
                            killed.wait(WAIT)
                        future = n.bridge.publish_acked(
                            f"t.{i}", {"i": i}, msg_id=str(i), timeout=20)
                        acks.append(future.get(timeout=25))
                        if i == count // 3:
                            a_third_sent.set()
                except BaseException as error:
                    failures.append(error)
                    a_third_sent.set()

            publisher = threading.Thread(target=publish_all, name="test-publisher")
            publisher.start()
            try:
                assert a_third_sent.wait(WAIT)
                nats_server.kill()
                killed.set()
                nats_server.stop()
                nats_server.start()
            finally:
                killed.set()
                publisher.join(40)
            assert not publisher.is_alive(), "publish_acked never returned"
            assert failures == []
            n.recorder.wait_for(EventKind.DISCONNECTED, BRIDGE, timeout=0)
            n.recorder.wait_for(EventKind.RECONNECTED, BRIDGE, timeout=0)
            assert len(acks) == count
            assert sorted(ack.seq for ack in acks) == list(range(1, count + 1))

            ref, deliveries = n.inbox("checker", ack=True)
            n.bridge.consume("T", "check", ref, max_in_flight=128)
            got = take(deliveries, count, timeout=20)

            assert sorted(d.data["i"] for d in got) == list(range(count))
            assert sorted(d.js.stream_seq for d in got if d.js) == list(range(1, count + 1))
            assert monitor(nats_server, "jsz")["messages"] == count
            assert_nothing_more(deliveries, within=0.2)


# -- credentials -----------------------------------------------------------------------


@pytest.fixture
def locked_server(tmp_path: Path) -> Iterator[EmbeddedNatsServer]:
    server = EmbeddedNatsServer(state_dir=tmp_path / "locked", user="u", password="p").start()
    try:
        yield server
    finally:
        server.stop()


class TestCredentials:
    @pytest.mark.parametrize("user, password", [("u", "s3cret"), ("nobody", "p"), (None, None)])
    def test_wrong_credentials_are_refused_with_a_clear_authorization_error(
        self, locked_server: EmbeddedNatsServer, user: str | None, password: str | None
    ) -> None:
        options = ConnectOptions(
            servers=locked_server.url, user=user, password=password, connect_timeout=30)
        began = time.monotonic()

        loop = LoopThread().start()
        with pytest.raises(AuthorizationError) as caught:
            Connection(options, loop=loop).open()
        loop.stop()

        assert time.monotonic() - began < 15, "waited for connect_timeout"
        assert f"{locked_server.url}: authorization violation" in str(caught.value)
        assert "s3cret" not in str(caught.value)

    def test_a_bridge_with_a_wrong_password_fails_to_start_and_says_why(
        self, locked_server: EmbeddedNatsServer
    ) -> None:
        bridge = Bridge(ConnectOptions(
            servers=locked_server.url, user="u", password="wrong", connect_timeout=30))

        with pytest.raises(SupervisionError) as caught:
            start_supervisor(SupervisorFlags(max_restarts=0, within=60), [bridge.child_spec()])

        root = caught.value.reason.root()
        assert root.kind is ExitKind.START_FAILURE and root.path == BRIDGE
        assert root.error_type == "AuthorizationError"
        assert f"{locked_server.url}: authorization violation" in root.message
        assert not bridge.statistics().connected

    def test_a_supervisor_retrying_a_wrong_password_gives_up_quickly(
        self, locked_server: EmbeddedNatsServer
    ) -> None:
        bridge = Bridge(ConnectOptions(
            servers=locked_server.url, user="u", password="wrong", connect_timeout=30))
        began = time.monotonic()

        try:
            tree = start_supervisor(SupervisorFlags(max_restarts=3, within=60),
                                    [bridge.child_spec()])
        except SupervisionError as error:  # gave up while starting
            reason: ExitReason | None = error.reason
        else:
            try:
                reason = tree.wait(WAIT)  # gave up just after
            finally:
                tree.stop(timeout=WAIT)
        assert reason is not None, "the supervisor is still retrying"

        assert reason.kind is ExitKind.GAVE_UP
        assert reason.root().error_type == "AuthorizationError"
        # Four attempts, none of which waited for connect_timeout.
        assert time.monotonic() - began < 15

    def test_the_right_password_works(self, locked_server: EmbeddedNatsServer) -> None:
        with node(locked_server, user="u", password="p") as n:
            ref, _requests = n.inbox("listener", answer=True)
            n.bridge.subscribe("locked.echo", ref)

            reply = n.bridge.request("locked.echo", {"text": "in"}, timeout=5).get(timeout=WAIT)

            assert reply.data["echo"] == "in"


# -- JetStream ---------------------------------------------------------------------------


def fill(bridge: Bridge, stream: str, subject: str, count: int) -> list[PubAck]:
    bridge.ensure_stream(stream, [f"{subject}.>"])
    return [
        bridge.publish_acked(f"{subject}.{i}", {"i": i}, msg_id=f"{subject}-{i}").get(timeout=WAIT)
        for i in range(count)
    ]


class TestJetStream:
    def test_ensure_stream_is_idempotent_and_a_message_id_is_stored_once(
        self, nats_server: EmbeddedNatsServer
    ) -> None:
        with node(nats_server) as n:
            n.bridge.ensure_stream("ONCE", ["once.>"])
            n.bridge.ensure_stream("ONCE", ["once.>"])

            first = n.bridge.publish_acked("once.a", {"n": 1}, msg_id="m-1").get(timeout=WAIT)
            again = n.bridge.publish_acked("once.a", {"n": 1}, msg_id="m-1").get(timeout=WAIT)
            other = n.bridge.publish_acked("once.a", {"n": 2}, msg_id="m-2").get(timeout=WAIT)

            assert (first.stream, first.seq, first.duplicate) == ("ONCE", 1, False)
            assert (again.seq, again.duplicate) == (1, True)
            assert (other.seq, other.duplicate) == (2, False)
            assert monitor(nats_server, "jsz")["messages"] == 2

    def test_a_consumer_holds_at_most_max_in_flight_unacked_messages(
        self, nats_server: EmbeddedNatsServer
    ) -> None:
        with node(nats_server) as n:
            fill(n.bridge, "HOLD", "hold", 10)
            ref, deliveries = n.inbox("slow")  # never acks by itself
            n.bridge.consume("HOLD", "slow", ref, max_in_flight=3)

            held = take(deliveries, 3)
            assert_nothing_more(deliveries)
            info = consumer_info(nats_server, "HOLD", "slow")
            assert (info.num_ack_pending, info.num_pending) == (3, 7)

            held[0].ack()
            [fourth] = take(deliveries, 1)
            assert_nothing_more(deliveries)

            got = [*held, fourth]
            for delivery in got[1:]:
                delivery.ack()
            while len(got) < 10:
                [delivery] = take(deliveries, 1)
                delivery.ack()
                got.append(delivery)

            assert [d.data["i"] for d in got] == list(range(10))
            assert {d.js.num_delivered for d in got if d.js} == {1}
            eventually(lambda: consumer_info(nats_server, "HOLD", "slow").num_ack_pending == 0,
                       "every message acked on the server")

    def test_a_second_settle_of_a_message_is_ignored_and_the_bound_still_holds(
        self, nats_server: EmbeddedNatsServer
    ) -> None:
        with node(nats_server) as n:
            fill(n.bridge, "TWICE", "twice", 3)
            ref, deliveries = n.inbox("reader")
            n.bridge.consume("TWICE", "reader", ref, max_in_flight=1, ack_wait=1.0)
            [first] = take(deliveries, 1)

            first.ack()
            first.ack()
            first.nak()
            first.term()

            # Settling it four times freed one place, not four.
            [second] = take(deliveries, 1)
            assert second.data["i"] == 1
            assert_nothing_more(deliveries)
            second.ack()
            [third] = take(deliveries, 1)
            assert third.data["i"] == 2
            third.ack()
            # The nak after the ack was ignored: past ack_wait, the first is not back.
            assert_nothing_more(deliveries, within=1.5)
            info = eventually(
                lambda: (i := consumer_info(nats_server, "TWICE", "reader")).num_ack_pending == 0
                and i, "the last ack reached the server")
            assert (info.num_ack_pending, info.num_pending, info.num_redelivered) == (0, 0, 0)

    def test_nak_redelivers_and_term_does_not(self, nats_server: EmbeddedNatsServer) -> None:
        with node(nats_server) as n:
            fill(n.bridge, "SETTLE", "settle", 2)
            ref, deliveries = n.inbox("picky")
            n.bridge.consume("SETTLE", "picky", ref, max_in_flight=3, ack_wait=1.0)
            retried, refused = take(deliveries, 2)
            assert retried.js is not None and retried.js.num_delivered == 1

            retried.nak()
            refused.term()

            [again] = take(deliveries, 1)
            assert again.js is not None
            assert (again.data["i"], again.js.stream_seq) == (0, retried.js.stream_seq)
            assert again.js.num_delivered == 2
            again.ack()
            info = eventually(
                lambda: (i := consumer_info(nats_server, "SETTLE", "picky")).num_ack_pending == 0
                and i, "both messages settled on the server")
            assert info.num_pending == 0
            # Past ack_wait, a message that was not terminated would be back by now.
            assert_nothing_more(deliveries, within=1.5)


def test_a_claim_is_won_once_across_connections(nats_server: EmbeddedNatsServer) -> None:
    """Two bridges stand for two processes: only one of them may run an attempt."""
    from noetl_actors.bridge import Bridge, ConnectOptions
    from noetl_actors.supervision import SupervisorFlags, start_supervisor

    bridges = [Bridge(ConnectOptions(servers=(nats_server.url,))) for _ in range(2)]
    roots = [start_supervisor(SupervisorFlags(), [b.child_spec()], id=f"n{i}")
             for i, b in enumerate(bridges)]
    try:
        bridges[0].ensure_bucket("claims", ttl=60)
        bridges[1].ensure_bucket("claims", ttl=60)
        assert bridges[0].claim("claims", "wf-1.t=s.1") is True
        assert bridges[1].claim("claims", "wf-1.t=s.1") is False
        assert bridges[0].claim("claims", "wf-1.t=s.1") is False
        assert bridges[1].claim("claims", "wf-1.t=s.2") is True
    finally:
        for root in roots:
            root.stop(timeout=10)


def test_a_claim_in_flight_when_the_bridge_restarts_is_still_its_claimers(
        nats_server: EmbeddedNatsServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """The server made the claim but its answer was lost with the connection: the
    claimer has it (its attempt runs, not lost), and no one else ever does."""
    from noetl_actors.bridge import Bridge, ConnectOptions
    from noetl_actors.supervision import SupervisorFlags, start_supervisor

    answered = nats.aio.client.Client._request_sub_callback
    lose_the_ack, ack_lost = threading.Event(), threading.Event()

    async def lossy(self: nats.aio.client.Client, msg: Any) -> None:
        if lose_the_ack.is_set() and b'"seq":' in msg.data:  # the create's PubAck
            lose_the_ack.clear()
            ack_lost.set()
            return
        await answered(self, msg)

    monkeypatch.setattr(nats.aio.client.Client, "_request_sub_callback", lossy)
    bridges = [Bridge(ConnectOptions(servers=(nats_server.url,))) for _ in range(2)]
    roots = [start_supervisor(SupervisorFlags(), [b.child_spec()], id=f"n{i}")
             for i, b in enumerate(bridges)]
    try:
        bridges[0].ensure_bucket("claims", ttl=60)
        outcome: queue.Queue[Any] = queue.Queue()

        def claim() -> None:
            try:
                outcome.put(bridges[0].claim("claims", "wf-1.t=s.1"))
            except Exception as error:
                outcome.put(error)

        lose_the_ack.set()
        threading.Thread(target=claim, daemon=True).start()
        assert ack_lost.wait(WAIT), "the claim never reached the server"
        roots[0].crash_child("bridge", "the test crashed the bridge")

        assert outcome.get(timeout=WAIT) is True
        assert bridges[1].claim("claims", "wf-1.t=s.1") is False
        assert bridges[0].claim("claims", "wf-1.t=s.1") is False
    finally:
        for root in roots:
            root.stop(timeout=10)


def test_entries_reads_every_live_record_of_a_large_bucket(
    nats_server: EmbeddedNatsServer,
) -> None:
    from noetl_actors.bridge import Bridge, ConnectOptions
    from noetl_actors.supervision import SupervisorFlags, start_supervisor

    bridge = Bridge(ConnectOptions(servers=(nats_server.url,)))
    root = start_supervisor(SupervisorFlags(), [bridge.child_spec()], id="kv")
    try:
        kv = bridge.ensure_bucket("records", ttl=None)
        for n in range(300):
            kv.put(f"wf-{n}", {"n": n})
        kv.delete("wf-7")

        async def stranger(nc: Any) -> None:
            await nc.publish("$KV.records.stranger", b"not json")
            await nc.flush()

        with_client(nats_server, stranger)

        entries = kv.entries()

        assert sorted(entries) == sorted(f"wf-{n}" for n in range(300) if n != 7)
        assert all(entry.data == {"n": int(key[3:])} for key, entry in entries.items())
    finally:
        root.stop(timeout=10)


def test_a_delete_at_a_revision_someone_wrote_since_is_refused(
    nats_server: EmbeddedNatsServer,
) -> None:
    """A lease released while its owner renewed it: the delete must say no, not raise."""
    from noetl_actors.bridge import Bridge, ConnectOptions
    from noetl_actors.supervision import SupervisorFlags, start_supervisor

    bridge = Bridge(ConnectOptions(servers=(nats_server.url,)))
    root = start_supervisor(SupervisorFlags(), [bridge.child_spec()], id="kv")
    try:
        kv = bridge.ensure_bucket("leases", ttl=None)
        first = kv.put("wf-1", {"epoch": 1})
        second = kv.update("wf-1", {"epoch": 1, "renewed": True}, first)
        assert second is not None

        assert kv.delete("wf-1", revision=first) is False
        entry = kv.get("wf-1")
        assert entry is not None and entry.data == {"epoch": 1, "renewed": True}
        assert kv.delete("wf-1", revision=second) is True
        assert kv.get("wf-1") is None
    finally:
        root.stop(timeout=10)


def test_claims_in_flight_at_once_are_won_once_each_and_settle_on_the_loop(
    nats_server: EmbeddedNatsServer,
) -> None:
    """`claim_soon` never waits: many claims go out at once, each settled where the
    bridge's loop reads its answer; a key claimed already is another's."""
    from noetl_actors.bridge import Bridge, ConnectOptions
    from noetl_actors.supervision import SupervisorFlags, start_supervisor

    bridge = Bridge(ConnectOptions(servers=(nats_server.url,)))
    root = start_supervisor(SupervisorFlags(), [bridge.child_spec()], id="kv")
    try:
        bridge.ensure_bucket("claims", ttl=60)
        assert bridge.claim("claims", "wf-1.t=s.0") is True
        threads: list[str] = []
        futures = [bridge.claim_soon("claims", f"wf-1.t=s.{n}") for n in range(200)]
        for future in futures:
            future.add_done_callback(lambda _: threads.append(threading.current_thread().name))
        results = [future.result(WAIT)[0] for future in futures]

        assert results == [False] + [True] * 199
        assert bridge.claim("claims", "wf-1.t=s.5") is False, "claimed twice"
        assert set(threads) <= {threading.current_thread().name, "noetl-nats-loop"}
    finally:
        root.stop(timeout=10)


def test_a_burst_of_claims_on_a_new_connection_looks_its_bucket_up_once(
    nats_server: EmbeddedNatsServer,
) -> None:
    """The first claims of a connection find the bucket's handle being looked up: they
    wait for that lookup (one stream-info request), not send one each."""
    import nats

    from noetl_actors.bridge import Bridge, ConnectOptions
    from noetl_actors.supervision import SupervisorFlags, start_supervisor

    lookups: list[str] = []

    async def count_lookups(ready: threading.Event, done: threading.Event) -> None:
        nc = await nats.connect(nats_server.url)

        async def note(msg: Any) -> None:
            lookups.append(msg.subject)

        await nc.subscribe("$JS.API.STREAM.INFO.KV_claims", cb=note)
        await nc.flush()
        ready.set()
        while not done.is_set():
            await asyncio.sleep(0.05)
        await nc.flush()
        await nc.close()

    ready, done = threading.Event(), threading.Event()
    watcher = threading.Thread(target=asyncio.run, args=(count_lookups(ready, done),))
    watcher.start()
    bridge = Bridge(ConnectOptions(servers=(nats_server.url,)))
    root = start_supervisor(SupervisorFlags(), [bridge.child_spec()], id="kv-burst")
    try:
        assert ready.wait(WAIT) and bridge.wait_connected(WAIT)
        bridge.ensure_bucket("claims", ttl=60)
        futures = [bridge.claim_soon("claims", f"wf-1.t=s.{n}") for n in range(200)]
        assert [future.result(WAIT)[0] for future in futures] == [True] * 200
    finally:
        done.set()
        watcher.join(WAIT)
        root.stop(timeout=10)
    assert len(lookups) == 1, f"{len(lookups)} lookups of the bucket"


def test_a_bucket_lookup_left_in_flight_by_a_closed_connection_fails_quietly(
    nats_server: EmbeddedNatsServer, caplog: pytest.LogCaptureFixture,
) -> None:
    """A lookup outlives the call that started it (the claims after it wait for it). One
    that NATS had not answered when its connection closed (the bridge restarts, its loop
    runs on) ends later with no one waiting for it: that is no error for asyncio to log
    ("Task exception was never retrieved") when the closed connection is dropped.

    JetStream that does not answer in time is a silent subscriber on the API subjects
    of a JetStream context of our own (a prefix nothing else answers on).
    """
    loop = LoopThread().start()
    try:
        connection = Connection(ConnectOptions(servers=nats_server.url), loop=loop).open()
        asked = threading.Event()

        async def silent(_msg: Any) -> None:
            asked.set()

        connection.call(connection.client.subscribe("$SILENT.API.>", cb=silent), timeout=WAIT)
        connection._js = connection.client.jetstream(prefix="$SILENT.API", timeout=0.5)
        caplog.set_level(logging.ERROR, logger="asyncio")
        lookup = connection.submit(connection.key_value("claims"))
        assert asked.wait(WAIT), "the lookup was not sent"
        connection.close()
        with pytest.raises(ConnectionLost):
            lookup.result(WAIT)
        in_flight = connection._buckets["claims"]
        wait_until(in_flight.done, timeout=WAIT, what="the lookup to end (its own timeout)")
        del connection, lookup, in_flight
        gc.collect()
    finally:
        loop.stop()
    never_retrieved = [r.getMessage() for r in caplog.records if "never retrieved" in
                       r.getMessage()]
    assert not never_retrieved, never_retrieved


def test_a_request_sent_without_waiting_says_whether_anyone_listens(
    nats_server: EmbeddedNatsServer,
) -> None:
    """`request_soon`: a reply, NoResponders at once when nothing is subscribed, or a
    timeout when subscribers say nothing."""
    from noetl_actors.bridge import Bridge, ConnectOptions
    from noetl_actors.errors import BridgeTimeout, NoResponders
    from noetl_actors.supervision import SupervisorFlags, start_supervisor

    bridge = Bridge(ConnectOptions(servers=(nats_server.url,)))
    root = start_supervisor(SupervisorFlags(), [bridge.child_spec()], id="asker")
    try:
        assert bridge.wait_connected(WAIT)
        started = time.monotonic()
        with pytest.raises(NoResponders):
            bridge.request_soon("nobody.here", {"q": 1}, timeout=30).result(WAIT)
        assert time.monotonic() - started < WAIT, "no responders is said at once"

        async def answer_and_ignore(nc: Any) -> None:
            async def answer(msg: Any) -> None:
                await msg.respond(b'{"schema_version": 1, "answer": "held"}')

            async def ignore(msg: Any) -> None:
                pass

            await nc.subscribe("someone.here", cb=answer)
            await nc.subscribe("silent.here", cb=ignore)
            await nc.flush()
            reply = await asyncio.wrap_future(
                bridge.request_soon("someone.here", {"q": 1}, timeout=WAIT))
            assert reply.data["answer"] == "held"
            with pytest.raises(BridgeTimeout):
                await asyncio.wrap_future(
                    bridge.request_soon("silent.here", {"q": 1}, timeout=0.3))

        with_client(nats_server, answer_and_ignore)
    finally:
        root.stop(timeout=10)
