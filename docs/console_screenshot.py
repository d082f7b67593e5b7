"""Take docs/console.svg from the real console, against a real node.

    python docs/console_screenshot.py [OUT.svg]

Starts a served node in this process (own embedded nats-server), runs a
workflow with a long step (`load.nap`) and a step that always fails with
backoff (`fetch.call`), drives `ConsoleApp` headless: kills `nap` once,
waits for its restart, selects it, and saves the screen as SVG.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

from noetl_actors.bridge import ConnectOptions
from noetl_actors.console._app import ConsoleApp
from noetl_actors.playbook import parse_playbook
from noetl_actors.services import Node

PLAYBOOK = """\
apiVersion: noetl.io/v1
kind: Playbook
name: nightly
tasks:
  - name: load
    steps:
      - name: nap
        plugin: sleep
        with: {seconds: 60}
  - name: fetch
    supervision:
      strategy: one_for_one
      max_restarts: 10
      within: 1m
      backoff: {initial: 3s, max: 10s}
    steps:
      - {name: call, plugin: fail, with: {message: "503 service unavailable"}}
"""


async def shoot(node: Node, workflow_id: str, out: Path) -> None:
    app = ConsoleApp(ConnectOptions(servers=(node.url,)))
    step = f"/{node.name}/workflows/{workflow_id}/load/nap"
    async with app.run_test(size=(170, 48)) as pilot:
        deadline = time.monotonic() + 10
        while step not in app.nodes and time.monotonic() < deadline:
            await pilot.pause(0.1)
        app.select(step)
        while app.selected_path != step and time.monotonic() < deadline:
            await pilot.pause(0.1)
        await pilot.press("k")
        deadline = time.monotonic() + 10
        while "1/3" not in str(app.nodes[step].label) and time.monotonic() < deadline:
            await pilot.pause(0.1)
        await pilot.pause(1.2)  # `call` is backing off by now: its countdown shows
        app.save_screenshot(out.name, str(out.parent))


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).with_name("console.svg"))
    with tempfile.TemporaryDirectory() as state:
        node = Node(name="node-a", serve=True, state_dir=Path(state), heartbeat=0.2)
        try:
            node.start()
            run = node.run(parse_playbook(PLAYBOOK, "nightly.yaml"), source=PLAYBOOK)
            asyncio.run(shoot(node, run.workflow_id, out.resolve()))
        finally:
            node.stop()
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
