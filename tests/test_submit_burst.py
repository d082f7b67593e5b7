"""Submits in bulk: a submit sent again starts nothing new; a burst of clients all get in.

A real `noetl node start` on its embedded nats-server; clients of the command
API (`noetl submit`, `Client`) on their own NATS connections.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from noetl_actors.bridge import ConnectOptions
from noetl_actors.client import Client
from noetl_actors.errors import BridgeTimeout
from noetl_actors.runtime import new_workflow_id
from tests.node_helpers import Cli, running_node
from tests.run_helpers import write_playbook

ECHO = """\
tasks:
  - name: t
    steps: [{name: e, plugin: echo, with: {msg: hi}}]
"""


def test_a_submit_of_a_taken_id_starts_nothing_and_says_who_has_it(tmp_path: Path) -> None:
    path = write_playbook(tmp_path, "once", ECHO)
    with running_node(tmp_path, "alpha") as node:
        cli = Cli(node.url)
        first = cli.ok("submit", path, "--id", "nightly-2026-12-06")
        assert first.stdout.strip() == "nightly-2026-12-06"
        assert "started once on node alpha" in first.stderr
        cli.wait_status("nightly-2026-12-06", "succeeded")

        again = cli.ok("submit", path, "--id", "nightly-2026-12-06")

        assert again.stdout.strip() == "nightly-2026-12-06"
        assert "was started already: once on node alpha" in again.stderr
        listed = cli.json("list")["workflows"]
        assert [w["workflow_id"] for w in listed] == ["nightly-2026-12-06"]
        bad = cli("submit", path, "--id", "no.dots")
        assert bad.returncode != 0
        assert "a workflow id is at most 64 letters, digits, '-' and '_'" in bad.stderr


def test_copies_of_one_submit_sent_at_once_start_one_workflow(tmp_path: Path) -> None:
    path = write_playbook(tmp_path, "copies", ECHO)

    async def send(url: str) -> list[dict[str, Any]]:
        async with Client(ConnectOptions(servers=(url,)), timeout=60) as client:
            return await asyncio.gather(*(
                client.api("submit", playbook=path.read_text(), workflow_id="wf-copied")
                for _ in range(20)))

    with running_node(tmp_path, "alpha") as node:
        replies = asyncio.run(send(node.url))
        cli = Cli(node.url)
        cli.wait_status("wf-copied", "succeeded")
        listed = cli.json("list")["workflows"]

    assert {r["workflow_id"] for r in replies} == {"wf-copied"}
    assert sum(1 for r in replies if not r.get("again")) == 1, replies
    assert [w["workflow_id"] for w in listed] == ["wf-copied"]


def test_200_clients_submitting_at_once_all_get_their_workflow(tmp_path: Path) -> None:
    path = write_playbook(tmp_path, "burst", ECHO)
    text = path.read_text()

    async def burst(url: str) -> tuple[list[str], list[str], list[str]]:
        async def one() -> str:
            # A short timeout: the later submits wait longer than it in the node's
            # queue, and are sent again (the same id) until answered. On a loaded box
            # the client's own tries may all time out: the same id again, then.
            workflow_id = new_workflow_id()
            deadline = time.monotonic() + 120
            async with Client(ConnectOptions(servers=(url,)), timeout=1.0) as client:
                while True:
                    try:
                        answer = await client.submit(text, workflow_id=workflow_id)
                        return str(answer["workflow_id"])
                    except BridgeTimeout:
                        if time.monotonic() > deadline:
                            raise

        ids = await asyncio.gather(*(one() for _ in range(200)))
        async with Client(ConnectOptions(servers=(url,)), timeout=30) as client:
            ended = [(await client.wait(i, timeout=60))["status"] for i in ids]
            listed = [w["workflow_id"] for w in await client.workflows()]
        return ids, ended, listed

    with running_node(tmp_path, "alpha") as node:
        ids, ended, listed = asyncio.run(burst(node.url))

    assert len(set(ids)) == 200
    assert set(ended) == {"succeeded"}
    assert sorted(listed) == sorted(ids)
