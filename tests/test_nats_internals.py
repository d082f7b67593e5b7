"""A nats-py that renames one of the internals the bridge's fast paths use gives a
slower node, never a hung one: publishes, requests and subscriptions still work,
and the bridge says once which fast path it switched off."""

from __future__ import annotations

import asyncio
import json
import logging
import queue
import re
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import nats.aio.client
import nats.errors
import pytest

from noetl_actors.bridge import (
    Bridge,
    ConnectOptions,
    Delivery,
    EmbeddedNatsServer,
    _nats_internals,
)
from noetl_actors.bridge._nats_internals import _DirectClient, fast_paths
from noetl_actors.supervision import SupervisorFlags, start_supervisor
from tests.test_bridge_faults import AFTER_STALL, stalled

WAIT = 10.0

# A program that uses a bridge as a node does, and prints what it saw.
PROGRAM = textwrap.dedent("""
    import json, logging, queue, sys

    import nats
    from noetl_actors.bridge import Bridge, ConnectOptions
    from noetl_actors.bridge._nats_internals import fast_paths
    from noetl_actors.supervision import SupervisorFlags, start_supervisor

    warnings = []

    class Keep(logging.Handler):
        def emit(self, record):
            if record.levelno >= logging.WARNING:
                warnings.append(record.getMessage())

    logging.getLogger("noetl_actors.bridge").addHandler(Keep())
    bridge = Bridge(ConnectOptions(servers=sys.argv[1], name="renamed"))
    tree = start_supervisor(SupervisorFlags(), [bridge.child_spec()], id="root")
    try:
        assert bridge.wait_connected(10), "no connection"
        got = queue.Queue()

        class Echo:
            def tell(self, delivery):  # on the bridge's loop
                bridge.respond(delivery, {"echo": delivery.data["text"]})

        class Sink:
            def tell(self, delivery):
                got.put(delivery.data["i"])

        bridge.subscribe("svc.echo", Echo())
        bridge.subscribe("load.>", Sink())
        for i in range(300):
            bridge.publish("load.x", {"i": i}, headers={"H": "v"} if i % 50 == 0 else None)
        received = [got.get(timeout=10) for _ in range(300)]
        reply = bridge.request("svc.echo", {"text": "hello"}, timeout=5).get(timeout=10)
        print(json.dumps({
            "nats": nats.__file__,
            "received": received,
            "reply": reply.data["echo"],
            "warnings": warnings,
            "delivery": fast_paths.delivery,
            "write": fast_paths.write,
            "headers": fast_paths.headers,
        }))
    finally:
        tree.stop(timeout=20)
""")

# Each internal, where it lives in nats-py, and the fast path that needs it.
INTERNALS = [
    ("_process_msg", "delivery"),
    ("_build_message", "delivery"),
    ("_process_headers", "delivery"),
    ("_id", "delivery"),  # Subscription._id
    ("_pending", "write"),
    ("_pending_data_size", "write"),
    ("_transport", "write"),
    ("pub_cmd", "write"),
]


def nats_py_renaming(name: str | None, into: Path) -> Path:
    """A copy of the installed nats-py in which `name` is called `name_v3` everywhere,
    as a release that renamed it would be; the folder to put first on sys.path."""
    site = _copy_of_nats_py(into)
    if name is not None:
        word = re.compile(rf"\b{re.escape(name)}\b")
        for source in (site / "nats").rglob("*.py"):
            text = source.read_text()
            source.write_text(word.sub(f"{name}_v3", text))
    return site


def nats_py_editing(edits: dict[str, str], into: Path) -> Path:
    """A copy of the installed nats-py with each `old: new` of `edits` made in its
    sources (each must be found), as a release that changed them would be."""
    site = _copy_of_nats_py(into)
    sources = list((site / "nats").rglob("*.py"))
    for old, new in edits.items():
        found = [source for source in sources if old in source.read_text()]
        assert found, f"{old!r} is not in nats-py"
        for source in found:
            source.write_text(source.read_text().replace(old, new))
    return site


def _copy_of_nats_py(into: Path) -> Path:
    site = into / "site"
    shutil.copytree(Path(nats.__file__).parent, site / "nats",
                    ignore=shutil.ignore_patterns("__pycache__"))
    return site


def run_with(site: Path, server: EmbeddedNatsServer) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM, server.url],
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["nats"].startswith(str(site)), "the copy of nats-py was not used"
    return result


def test_the_unchanged_copy_keeps_both_fast_paths_and_says_nothing(
    nats_server: EmbeddedNatsServer, tmp_path: Path
) -> None:
    result = run_with(nats_py_renaming(None, tmp_path), nats_server)

    assert result["received"] == list(range(300))
    assert result["reply"] == "hello"
    assert (result["delivery"], result["write"]) == (True, True)
    assert result["headers"] is True
    assert result["warnings"] == []


def test_a_nats_py_without_hpub_cmd_publishes_messages_with_headers_itself_and_says_nothing(
    nats_server: EmbeddedNatsServer, tmp_path: Path
) -> None:
    result = run_with(nats_py_renaming("hpub_cmd", tmp_path), nats_server)

    assert result["received"] == list(range(300)), "publishes lost or out of order"
    assert (result["delivery"], result["write"], result["headers"]) == (True, True, False)
    assert result["warnings"] == []


@pytest.mark.parametrize("name, path", INTERNALS)
def test_a_renamed_internal_switches_its_fast_path_off_once_and_everything_still_works(
    nats_server: EmbeddedNatsServer, tmp_path: Path, name: str, path: str
) -> None:
    result = run_with(nats_py_renaming(name, tmp_path), nats_server)

    assert result["received"] == list(range(300)), "publishes lost or out of order"
    assert result["reply"] == "hello"
    other = "write" if path == "delivery" else "delivery"
    assert (result[path], result[other]) == (False, True)
    [warning] = result["warnings"]
    assert name in warning and "public API" in warning


@pytest.mark.parametrize("name", ["_process_pong", "_pongs"])
def test_a_renamed_internal_of_the_pong_guard_leaves_nats_py_as_it_is_and_says_so_once(
    nats_server: EmbeddedNatsServer, tmp_path: Path, name: str
) -> None:
    result = run_with(nats_py_renaming(name, tmp_path), nats_server)

    assert result["received"] == list(range(300))
    assert result["reply"] == "hello"
    assert (result["delivery"], result["write"]) == (True, True)
    [warning] = result["warnings"]
    assert name in warning and "nats.py#624" in warning



def test_a_pong_handler_of_another_shape_is_called_as_nats_py_calls_it(
    nats_server: EmbeddedNatsServer, tmp_path: Path
) -> None:
    """A release whose `_process_pong` takes an argument: the guard steps aside, and
    the reader (which would die of a TypeError in an override of the old shape) reads on."""
    site = nats_py_editing({
        "async def _process_pong(self) -> None:": "async def _process_pong(self, why) -> None:",
        "await self.nc._process_pong()": 'await self.nc._process_pong("pong")',
    }, tmp_path)
    result = run_with(site, nats_server)

    assert result["received"] == list(range(300))
    assert result["reply"] == "hello"
    [warning] = result["warnings"]
    assert "_process_pong" in warning and "nats.py#624" in warning


# -- a flush that gives up before its PONG -----------------------------------------


@pytest.mark.parametrize("gives_up", ["at its own timeout", "cancelled by its caller"])
def test_a_flush_that_gave_up_before_its_pong_leaves_the_client_reading(
    nats_server: EmbeddedNatsServer, gives_up: str
) -> None:
    """nats-py 2.16 cancels the PONG's future; when the PONG comes, its reader must
    not end (the client would hear nothing more, connected as it seems)."""
    async def flush_while_stalled(client: nats.aio.client.Client) -> None:
        with stalled(nats_server):
            if gives_up == "at its own timeout":
                with pytest.raises(nats.errors.FlushTimeoutError):
                    await client.flush(timeout=0.3)  # type: ignore[arg-type]
            else:
                with pytest.raises(asyncio.TimeoutError):
                    await asyncio.wait_for(client.flush(timeout=60), 0.3)

    async def heard_after_a_stall() -> bytes:
        client = _nats_internals.new_client()
        await client.connect(nats_server.url)
        try:
            await flush_while_stalled(client)
            subscription = await client.subscribe("after")
            await client.publish("after", b"heard")
            return (await subscription.next_msg(timeout=AFTER_STALL)).data
        finally:
            await client.close()

    assert asyncio.run(heard_after_a_stall()) == b"heard"


# -- a fast path that fails while it runs ------------------------------------------


@pytest.fixture
def fresh_fast_paths(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Whatever a test switches off is on again after it (for the other tests)."""
    monkeypatch.setattr(fast_paths, "delivery", fast_paths.delivery)
    monkeypatch.setattr(fast_paths, "write", fast_paths.write)
    yield


@pytest.fixture
def bridge(nats_server: EmbeddedNatsServer) -> Iterator[Bridge]:
    bridge = Bridge(ConnectOptions(servers=nats_server.url, name="midrun"))
    tree = start_supervisor(SupervisorFlags(), [bridge.child_spec()], id="root")
    try:
        assert bridge.wait_connected(WAIT)
        yield bridge
    finally:
        tree.stop(timeout=20)


class Sink:
    def __init__(self) -> None:
        self.got: queue.Queue[Delivery] = queue.Queue()

    def tell(self, delivery: Delivery) -> None:
        self.got.put(delivery)

    def take(self, count: int) -> list[int]:
        return [self.got.get(timeout=WAIT).data["i"] for _ in range(count)]


def test_a_direct_write_that_fails_mid_run_falls_back_and_loses_nothing(
    bridge: Bridge, fresh_fast_paths: None, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    sink = Sink()
    bridge.subscribe("mid.>", sink)
    bridge.publish("mid.x", {"i": 0})
    assert sink.take(1) == [0]
    assert fast_paths.write is True

    def renamed(*_args: Any) -> bytes:
        raise AttributeError("'Client' object has no attribute '_pending'")

    monkeypatch.setattr(_nats_internals, "pub_cmd", renamed)
    with caplog.at_level(logging.WARNING, logger="noetl_actors.bridge"):
        for i in range(1, 200):
            bridge.publish("mid.x", {"i": i})
        assert sink.take(199) == list(range(1, 200))

    assert fast_paths.write is False
    [warning] = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert "writing publishes straight to the socket" in warning
    assert "no attribute '_pending'" in warning


def test_a_direct_delivery_that_fails_mid_run_falls_back_and_loses_nothing(
    bridge: Bridge, fresh_fast_paths: None, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    sink = Sink()
    bridge.subscribe("mid.>", sink)
    bridge.publish("mid.x", {"i": 0})
    assert sink.take(1) == [0]
    assert fast_paths.delivery is True
    build = _DirectClient._build_message
    calls = []

    def changed_once(self: Any, *args: Any) -> Any:
        calls.append(args)
        if len(calls) == 1:
            raise TypeError("_build_message() takes 5 positional arguments but 6 were given")
        return build(self, *args)

    monkeypatch.setattr(_DirectClient, "_build_message", changed_once)
    with caplog.at_level(logging.WARNING, logger="noetl_actors.bridge"):
        for i in range(1, 50):
            bridge.publish("mid.x", {"i": i})
        assert sink.take(49) == list(range(1, 50))

    assert fast_paths.delivery is False
    [warning] = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert "delivering messages on the reader task" in warning


def test_a_message_with_headers_is_written_directly_and_arrives_with_them(
    bridge: Bridge, monkeypatch: pytest.MonkeyPatch,
) -> None:
    written: list[bytes] = []
    hpub = _nats_internals.hpub_cmd
    assert hpub is not None

    def counted(*args: Any) -> bytes:
        written.append(command := hpub(*args))
        return command

    monkeypatch.setattr(_nats_internals, "hpub_cmd", counted)
    sink = Sink()
    bridge.subscribe("hdr.>", sink)
    bridge.publish("hdr.x", {"i": 1}, msg_id="end:wf.t=s.1", headers={"Noetl-Why": "a test"})
    first = sink.got.get(timeout=WAIT)
    assert first.data["i"] == 1
    assert first.headers == {"Nats-Msg-Id": "end:wf.t=s.1", "Noetl-Why": "a test"}
    assert len(written) == 1, "written directly"
    bridge.publish("hdr.x", {"i": 2}, headers={"Bad": "two\nlines"})  # nats-py's to reshape
    assert sink.got.get(timeout=WAIT).headers == {"Bad": "two lines"}
    assert len(written) == 1, "a header nats-py reshapes is nats-py's to write"
