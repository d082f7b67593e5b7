"""Workers run commands only from owners, and the node's own actors stay up.

A forged command published straight on `command.shell.…` used to run as the
node's user; `op: terminate` on `noetl.actor.<node>.bridge` left the node
alive and deaf for good.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

from noetl_actors.runtime import Command
from noetl_actors.services import Node
from tests.node_helpers import Cli, login, raw_requests, running_node
from tests.run_helpers import wait_until, write_playbook


def publish(url: str, commands: list[Command]) -> None:
    import nats

    async def go() -> None:
        nc = await nats.connect(url, allow_reconnect=False, max_reconnect_attempts=0,
                                **login(url))
        try:
            for command in commands:
                await nc.publish(command.subject,
                                 json.dumps({"schema_version": 1, **command.to_data()}).encode())
            await nc.flush()
        finally:
            await nc.close()

    asyncio.run(go())


def request(url: str, subject: str, **body: Any) -> dict[str, Any]:
    payload = json.dumps({"schema_version": 1, **body}).encode()
    reply = raw_requests(url, [(subject, payload)], timeout=10)[0]
    assert reply is not None, f"no reply on {subject}"
    return reply


def test_a_served_node_runs_no_command_that_no_owner_sent(tmp_path: Path) -> None:
    pwned = tmp_path / "pwned"
    forged = [
        Command(workflow_id="wf-forged", task="t", step="s", attempt=1, plugin="shell",
                input={"command": f"id > {pwned}"}, epoch=0),
        Command(workflow_id="wf-forged", task="t", step="s", attempt=2, plugin="shell",
                input={"command": f"id > {pwned}"}, epoch=7),  # no such lease
        *[Command(workflow_id=f"wf-sleepy{n}", task="t", step="s", attempt=1, plugin="sleep",
                  input={"seconds": 1e9}, epoch=0) for n in range(200)],
    ]
    made = tmp_path / "made"
    path = write_playbook(tmp_path, "owned", f"""
        tasks:
          - name: t
            steps:
              - {{name: nap, plugin: sleep, with: {{seconds: 0.1}}}}
              - {{name: touch, plugin: shell, with: {{command: "echo ok > {made}"}}}}
        """)
    with running_node(tmp_path, "a") as node:
        publish(node.url, forged)
        cli = Cli(node.url)
        workflow_id = cli.submit(path)
        record = cli.wait_status(workflow_id, {"succeeded", "failed"}, timeout=60)
        assert record["status"] == "succeeded", record
        assert made.read_text() == "ok\n", "the owner's own shell step did not run"
        wait_until(lambda: "refused wf-forged.t=s.2" in node.stderr(), 20, "the fenced refusal")
        assert not pwned.exists(), "a forged command ran"
        log = node.stderr()
        refusals = re.findall(r"refused wf-\S+: it carries no owner epoch", log)
        assert 1 <= len(refusals) <= 6, f"{len(refusals)} refusal lines, not rate-limited"
        assert "workflow wf-forged has no lease" in log
        assert "Traceback" not in log
        print(f"forged {len(forged)} commands; {len(refusals)} refusal lines in the log")


def test_the_nodes_own_actors_cannot_be_terminated_and_a_killed_bridge_comes_back(
        tmp_path: Path) -> None:
    with running_node(tmp_path, "a") as node:
        for path in ("bridge", "workers", "workers.sleep", "services", "services.api",
                     "workflows"):
            reply = request(node.url, f"noetl.actor.a.{path}", op="terminate")
            assert reply["ok"] is False, (path, reply)
            assert reply["error"]["kind"] == "conflict", reply
            assert "cannot be terminated from outside" in reply["error"]["message"]
        reply = request(node.url, "noetl.actor.a.bridge", op="kill")
        assert reply["ok"] is True, reply

        def answers() -> bool:
            try:
                return bool(request(node.url, "noetl.api.nodes")["ok"])
            except Exception:
                return False

        wait_until(answers, 30, "the node to answer after its bridge was killed", 0.2)
        assert Cli(node.url).ok("tree").stdout


def test_a_node_that_lost_its_bridge_for_good_starts_it_again(tmp_path: Path) -> None:
    """Stopped behind its supervisor's back (no restart comes), the bridge is started
    again by the node, which then answers requests again."""
    node = Node(name="keep", state_dir=tmp_path / "state", serve=True, workers=["echo"])
    try:
        node.start()
        url = node.url
        node.root.terminate_child("bridge")

        def back() -> bool:
            try:
                nodes = request(url, "noetl.api.nodes")["nodes"]
            except Exception:
                return False
            return any(entry["name"] == "keep" for entry in nodes)

        wait_until(back, 30, "the node to start its bridge again", 0.2)
    finally:
        node.stop()
