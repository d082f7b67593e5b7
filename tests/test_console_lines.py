"""The console's output pane: the selected step's lines, from a real node, live.

A served `Node` in this process (its own embedded nats-server) runs a
playbook whose first step prints and whose second sleeps; `ConsoleApp` is
driven headless with `App.run_test()` and the pane read back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from textual.pilot import Pilot

from noetl_actors.bridge import ConnectOptions
from noetl_actors.console._app import ConsoleApp
from noetl_actors.console._lines import StepLines, step_of
from noetl_actors.playbook import parse_playbook
from noetl_actors.services import Node

pytestmark = pytest.mark.timeout(120)

PRINTS = """\
apiVersion: noetl.io/v1
kind: Playbook
name: prints
tasks:
  - name: t
    steps:
      - name: say
        plugin: python
        with: {function: "builtins:print", args: ["hello from say", "and more"]}
      - name: nap
        plugin: sleep
        with: {seconds: 30}
"""
SIZE = (160, 50)
WAIT = 15.0


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[Node, str]]:
    node = Node(name="test", serve=True, state_dir=tmp_path, heartbeat=0.2)
    try:
        node.start()
        run = node.run(parse_playbook(PRINTS, "prints.yaml"), source=PRINTS)
        yield node, run.workflow_id
    finally:
        node.stop()


async def until(pilot: Pilot[None], check: Callable[[], object], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"the console did not show {what} within {WAIT:g}s")
        await pilot.pause(0.05)


def pane(app: ConsoleApp) -> str:
    return "\n".join(strip.text for strip in app.query_one("#lines", StepLines).lines)


def drive(app: ConsoleApp, scenario: Callable[[Pilot[None]], Awaitable[None]]) -> None:
    async def main() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await scenario(pilot)

    asyncio.run(main())


def test_the_selected_steps_output_lines_show_in_their_pane(
        running: tuple[Node, str]) -> None:
    node, workflow_id = running
    app = ConsoleApp(ConnectOptions(servers=(node.url,)))
    say = f"/test/workflows/{workflow_id}/t/say"
    nap = f"/test/workflows/{workflow_id}/t/nap"

    async def scenario(pilot: Pilot[None]) -> None:
        await until(pilot, lambda: nap in app.nodes and "running" in str(app.nodes[nap].label),
                    "the second step running")
        assert "select a step" in pane(app) or pane(app) == ""
        assert app.select(say)
        await until(pilot, lambda: "hello from say and more" in pane(app), "say's line")
        assert "— attempt 1 —" in pane(app)
        assert app.query_one("#lines", StepLines).border_title == "output of t.say"
        assert app.select(nap)
        await until(pilot, lambda: "hello from say" not in pane(app), "nap's (no) lines")
        assert app.select(f"/test/workflows/{workflow_id}/t")
        await until(pilot, lambda: "select a step" in pane(app), "a task has no lines")

    drive(app, scenario)


def test_step_of_reads_a_steps_path_and_an_iterations() -> None:
    assert step_of("/a/workflows/wf-1/t/s") == ("wf-1", "t", "s")
    assert step_of("/a/workflows/wf-1/t/3/s") == ("wf-1", "t/3", "s")
    assert step_of("/a/workflows/wf-1/t") is None
    assert step_of("/a/workers/shell") is None
