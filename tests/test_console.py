"""`noetl console`, driven headless by Textual's pilot against a real node.

Each test starts a served `Node` in this process (with its own embedded
nats-server), runs a playbook whose step sleeps, and drives `ConsoleApp`
with `App.run_test()`: what the tree, the details pane and the event log
show is read back from the widgets.
"""

from __future__ import annotations

import asyncio
import io
import socket
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from rich.console import Console, RenderableType
from textual.pilot import Pilot
from textual.widgets import Static

from noetl_actors.bridge import ConnectOptions
from noetl_actors.console._app import ConfirmScreen, ConsoleApp, HelpScreen
from noetl_actors.console._render import details_of, flatten, label_of, workflow_of
from noetl_actors.playbook import parse_playbook
from noetl_actors.services import Node

SLOW = """\
apiVersion: noetl.io/v1
kind: Playbook
name: slow
tasks:
  - name: wait
    steps:
      - name: nap
        plugin: sleep
        with: {seconds: 30}
"""
SIZE = (160, 50)
WAIT = 8.0
"""How long a test waits for the console to show something (it should take < 1 s)."""


class Cluster:
    """A served node running one workflow of `SLOW`."""

    def __init__(self, node: Node, workflow_id: str) -> None:
        self.node = node
        self.workflow_id = workflow_id
        self.options = ConnectOptions(servers=(node.url,))

    @property
    def step(self) -> str:
        return f"/test/workflows/{self.workflow_id}/wait/nap"

    @property
    def task(self) -> str:
        return f"/test/workflows/{self.workflow_id}/wait"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    node = Node(name="test", serve=True, state_dir=tmp_path, heartbeat=0.2)
    try:
        node.start()
        run = node.run(parse_playbook(SLOW, "slow.yaml"), source=SLOW)
        yield Cluster(node, run.workflow_id)
    finally:
        node.stop()


def drive(app: ConsoleApp, scenario: Callable[[Pilot[None]], Awaitable[None]]) -> None:
    async def main() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await scenario(pilot)

    asyncio.run(main())


async def until(pilot: Pilot[None], check: Callable[[], object], what: str,
                timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"the console did not show {what} within {timeout:g}s")
        await pilot.pause(0.05)


def plain(renderable: RenderableType) -> str:
    console = Console(file=io.StringIO(), width=200, color_system=None)
    console.print(renderable)
    return console.file.getvalue()  # type: ignore[attr-defined, no-any-return]


def label(app: ConsoleApp, path: str) -> str:
    return str(app.nodes[path].label)


def details(app: ConsoleApp) -> str:
    return plain(app.query_one("#details", Static).content)  # type: ignore[arg-type]


def events(app: ConsoleApp) -> str:
    return "\n".join(strip.text for strip in app.event_log.lines)


def test_the_tree_shows_the_node_its_workers_and_the_running_step(cluster: Cluster) -> None:
    app = ConsoleApp(cluster.options)

    async def scenario(pilot: Pilot[None]) -> None:
        await until(pilot, lambda: cluster.step in app.nodes, "the step")
        # listed before it runs (not_started): its first poll may come before its start
        await until(pilot, lambda: "running" in label(app, cluster.step), "the step running")
        for path in ("/test", "/test/bridge", "/test/workers/sleep", "/test/workers/echo",
                     "/test/workflows", f"/test/workflows/{cluster.workflow_id}",
                     cluster.task, cluster.step):
            assert path in app.nodes, path
        assert "running" in label(app, cluster.step)
        assert "0/3 in 60s" in label(app, cluster.step)  # the task's default intensity
        assert "one_for_one" in label(app, cluster.task)
        assert "1 node" in str(app.query_one("#status", Static).content)

    drive(app, scenario)


def test_kill_the_selected_step_and_see_it_restart(cluster: Cluster) -> None:
    app = ConsoleApp(cluster.options)

    async def scenario(pilot: Pilot[None]) -> None:
        await until(pilot, lambda: "running" in label(app, cluster.step)
                    if cluster.step in app.nodes else False, "the step running")
        node = app.nodes[cluster.step]
        assert app.select(cluster.step)
        await until(pilot, lambda: app.selected_path == cluster.step, "the cursor on the step")
        await until(pilot, lambda: "restarts" in details(app) and "transient" in details(app),
                    "the step's details")

        await pilot.press("k")
        await until(pilot, lambda: "1/3 in 60s" in label(app, cluster.step),
                    "the restart count go up")
        await until(pilot, lambda: "exited" in events(app) and "restarted" in events(app),
                    "the crash and the restart in the event log")
        assert cluster.step in events(app)
        assert "killed by request" in events(app)

        # updated in place: the same tree node, still under the cursor
        assert app.nodes[cluster.step] is node
        assert app.selected_path == cluster.step
        await until(pilot, lambda: "Traceback" in details(app), "the exit's traceback")
        shown = details(app)
        assert "killed by request" in shown
        assert "InjectedCrash" in shown
        assert "1 total" in shown
        assert "escalation chain" in shown and "one_for_one, intensity 1/3 in 60s" in shown

    drive(app, scenario)


def test_the_filter_narrows_the_tree_and_esc_clears_it(cluster: Cluster) -> None:
    app = ConsoleApp(cluster.options)

    async def scenario(pilot: Pilot[None]) -> None:
        await until(pilot, lambda: cluster.step in app.nodes, "the step")
        everything = set(app.nodes)
        await pilot.press("slash", "n", "a", "p")
        await until(pilot, lambda: "/test/workers/echo" not in app.nodes, "a narrower tree")
        # the step and the supervisors above it, nothing else
        assert set(app.nodes) == {"/test", "/test/workflows",
                                  f"/test/workflows/{cluster.workflow_id}",
                                  cluster.task, cluster.step}
        await pilot.press("escape")
        await until(pilot, lambda: set(app.nodes) >= everything, "the whole tree again")

    drive(app, scenario)


def test_help_opens_and_closes(cluster: Cluster) -> None:
    app = ConsoleApp(cluster.options)

    async def scenario(pilot: Pilot[None]) -> None:
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen), "the help")
        assert "cancel the workflow" in str(app.screen.query_one("#help", Static).content)
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, HelpScreen), "the console")

    drive(app, scenario)


def test_terminate_asks_first_and_cancel_ends_the_workflow(cluster: Cluster) -> None:
    app = ConsoleApp(cluster.options)

    async def scenario(pilot: Pilot[None]) -> None:
        await until(pilot, lambda: "running" in label(app, cluster.step)
                    if cluster.step in app.nodes else False, "the step running")
        assert app.select(cluster.step)
        await until(pilot, lambda: app.selected_path == cluster.step, "the cursor on the step")
        await pilot.press("t")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the question")
        await pilot.press("n")
        await pilot.pause(1.0)
        assert "running" in label(app, cluster.step)  # said no: still there

        await pilot.press("c")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the question")
        await pilot.press("y")
        workflow = f"/test/workflows/{cluster.workflow_id}"
        await until(pilot, lambda: workflow not in app.nodes, "the workflow gone", 15.0)
        # the tree drops it when its supervisor does; the node forgets it a moment later
        await until(pilot, lambda: cluster.workflow_id not in cluster.node.running(),
                    "the node to forget the workflow")

    drive(app, scenario)


def test_no_nats_shows_an_error_not_a_traceback() -> None:
    with socket.socket() as sock:  # a loopback port where nothing listens
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    options = ConnectOptions(servers=(f"nats://127.0.0.1:{port}",), connect_timeout=1.0)
    app = ConsoleApp(options)

    async def scenario(pilot: Pilot[None]) -> None:
        await until(pilot, lambda: app.connection_error is not None, "the error")
        status = str(app.query_one("#status", Static).content)
        assert "could not connect" in status
        assert f"127.0.0.1:{port}" in status
        assert "noetl node start" in status
        await pilot.press("k")  # no connection: a notification, no crash
        await pilot.pause(0.2)

    drive(app, scenario)


def test_no_address_at_all_says_so() -> None:
    app = ConsoleApp(ConnectOptions())  # no --nats: the embedded default has no API

    async def scenario(pilot: Pilot[None]) -> None:
        await until(pilot, lambda: app.connection_error is not None, "the error")
        assert "--nats URL" in str(app.query_one("#status", Static).content)

    drive(app, scenario)


def test_labels_show_backoff_unresponsive_nodes_and_mailboxes() -> None:
    step = {"id": "call", "path": "/n/workflows/wf-1/fetch/call", "kind": "worker",
            "state": "backing_off", "restart": "transient", "restarts_in_window": 2,
            "max_restarts": 3, "within": 60.0, "total_restarts": 5, "mailbox": 4,
            "backoff_remaining": 1.25, "last_exits": [
                {"kind": "crash", "path": "/n/workflows/wf-1/fetch/call", "error_type": "IOError",
                 "message": "503", "cause": None, "traceback": "Traceback: boom", "at": 1.0}]}
    results = [
        {"node": {"name": "n", "host": "h", "pid": 7},
         "tree": {"id": "n", "path": "/n", "kind": "supervisor", "strategy": "one_for_one",
                  "state": "running", "children": [step],
                  "intensity": {"restarts_in_window": 0, "max_restarts": 10, "within": 60.0}}},
        {"node": {"name": "gone"}, "tree": None, "error": "no answer within 5s"},
    ]
    entries = flatten(results)
    shown = str(label_of(entries[step["path"]]))
    assert "backing_off" in shown
    assert "2/3 in 60s (total 5)" in shown
    assert "restart in 1.2s" in shown
    assert "mailbox 4" in shown
    assert "unresponsive: no answer within 5s" in str(label_of(entries["/gone"]))
    text = plain(details_of(entries[step["path"]], entries))
    assert "Traceback: boom" in text and "IOError: 503" in text
    assert workflow_of(step["path"]) == "wf-1" and workflow_of("/n/workers/echo") is None


def test_a_skipped_step_shows_skipped_and_why_in_the_tree() -> None:
    from noetl_actors.console._tree import snapshot_tree

    step = {"id": "shout", "path": "/n/workflows/wf-1/check/shout", "kind": "worker",
            "state": "stopped", "restart": "transient", "restarts_in_window": 0,
            "max_restarts": 3, "within": 60.0, "total_restarts": 0, "mailbox": 0,
            "started_at": 1.0, "last_exits": [
                {"kind": "normal", "path": "/n/workflows/wf-1/check/shout",
                 "error_type": "skipped", "message": "skipped: when 'vars.big' was false",
                 "cause": None, "traceback": None, "at": 1.0}]}
    tree = {"id": "n", "path": "/n", "kind": "supervisor", "strategy": "one_for_one",
            "state": "running", "children": [step],
            "intensity": {"restarts_in_window": 0, "max_restarts": 10, "within": 60.0}}
    entries = flatten([{"node": {"name": "n", "host": "h", "pid": 7}, "tree": tree}])
    assert "skipped" in str(label_of(entries[step["path"]]))
    console = Console(file=io.StringIO(), width=200)
    console.print(snapshot_tree(step))
    shown = console.file.getvalue()  # type: ignore[attr-defined]
    assert "shout  skipped" in shown and "  skipped: when 'vars.big' was false" in shown
    assert "last exit" not in shown
