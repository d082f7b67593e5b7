"""The supervisor node as a real subprocess: `noetl node start`, driven as a user would.

Each test starts its own node(s) (`tests/node_helpers.py`) in a temporary state
directory with a 0.3 s heartbeat, talks to it only over 127.0.0.1 with the
`noetl` commands (or raw NATS requests for what the CLI would never send), and
stops every process it started, even when it fails.
"""

from __future__ import annotations

import asyncio
import re
import signal
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from noetl_actors.bridge import ConnectOptions, encode
from noetl_actors.client import Client
from noetl_actors.playbook import Catalog
from tests.node_helpers import (
    _SERVER_UP,
    START_TIMEOUT,
    Cli,
    actor,
    processes_with,
    raw_requests,
    read_record,
    running_node,
    running_server,
    spawn,
)
from tests.run_helpers import EXAMPLES, cli_command, wait_until, write_playbook

pytestmark = pytest.mark.timeout(120)

PROBLEM = re.compile(r"^(?P<file>.+):(?P<line>\d+):(?P<col>\d+): \S")
"""One problem of an invalid playbook: ``file:line:col: message``."""


def walk(picture: dict[str, Any]) -> list[dict[str, Any]]:
    """Every actor of a `tree --json` tree, the root first."""
    found = [picture]
    for child in picture["children"]:
        found.extend(walk(child))
    return found


def children(picture: dict[str, Any] | None) -> list[str]:
    assert picture is not None
    return [child["id"] for child in picture["children"]]


# -- 1. start ------------------------------------------------------------------------


def test_a_started_node_says_where_it_is_and_shows_its_whole_tree_running(
        tmp_path: Path) -> None:
    with running_node(tmp_path, "alpha") as node:
        first = node.spawned.stdout().splitlines()[0]
        assert re.fullmatch(r"node alpha is up on nats://127\.0\.0\.1:\d+ \(embedded, other "
                            r"terminals: --nats (\S+) or NATS_URL=(\S+)\)", first), first
        assert f"--nats {node.url} or NATS_URL={node.url})" in first
        assert f"node alpha serving on {node.url}" in node.stderr()

        nodes = Cli(node.url).tree()
        assert list(nodes) == ["alpha"]
        entry = nodes["alpha"]
        assert entry["url"] == node.url and entry["pid"] == node.pid
        assert entry["error"] is None and entry["workflows"] == []
        root = entry["tree"]
        assert root["path"] == "/alpha" and root["kind"] == "supervisor"
        assert children(root) == ["bridge", "workers", "workflows", "services"]
        assert children(actor(root, "/alpha/workers")) == sorted(Catalog.default().plugins)
        assert set(children(actor(root, "/alpha/workers"))) >= {"echo", "fail", "shell", "sleep"}
        assert children(actor(root, "/alpha/services")) == ["presence", "control", "leases", "api"]
        assert children(actor(root, "/alpha/workflows")) == []
        every = walk(root)
        assert {a["path"]: a["state"] for a in every} == {a["path"]: "running" for a in every}
        assert {a["path"]: a["restarts"] for a in every} == {a["path"]: 0 for a in every}
        for path in ("/alpha/workers", "/alpha/workflows", "/alpha/services"):
            assert actor(root, path)["kind"] == "supervisor"  # type: ignore[index]
        assert actor(root, "/alpha/workers/echo")["kind"] == "worker"  # type: ignore[index]


# -- 2. submit and status ---------------------------------------------------------------


def test_submit_runs_a_playbook_and_status_and_list_show_its_record(tmp_path: Path) -> None:
    hello = EXAMPLES / "hello.yaml"
    with running_node(tmp_path, "alpha") as node:
        cli = Cli(node.url)
        waited = cli("submit", hello, "--wait", "--json")
        assert waited.returncode == 0, waited.stderr
        record = waited.document()
        workflow_id = record["workflow_id"]
        assert record["status"] == "succeeded" and record["error"] is None
        assert record["node"] == "alpha" and record["playbook"] == "hello"
        assert record["source"] == hello.read_text()
        assert record["submitted_at"] <= record["finished_at"]
        assert record["tasks"]["greet"]["steps"]["say"]["output"] == {
            "msg": "hello world from hello"}
        assert record["tasks"]["confirm"]["steps"]["done"]["output"] == {
            "msg": "greet said: {'msg': 'hello world from hello'}"}

        status = cli("status", workflow_id, "--json")
        assert status.returncode == 0, status.stderr
        assert status.document() == record

        # without --wait: the id on stdout at once, who runs it on stderr
        started = cli.ok("submit", hello)
        second = started.stdout.strip()
        assert re.fullmatch(r"wf-[0-9a-f]+", second) and second != workflow_id
        assert "started hello on node alpha" in started.stderr
        assert cli.wait_status(second, "succeeded")["node"] == "alpha"

        listed = cli.json("list")["workflows"]
        assert [w["workflow_id"] for w in listed] == [workflow_id, second]
        assert {(w["playbook"], w["node"], w["status"]) for w in listed} == {
            ("hello", "alpha", "succeeded")}
        assert cli.json("list", "--status", "failed") == {"workflows": []}
        # piped (not a terminal): one whole line per workflow, dates not split
        lines = cli.ok("list").stdout.splitlines()
        assert len(lines) == 2, lines
        for line, workflow in zip(lines, listed, strict=True):
            assert line.startswith(workflow["workflow_id"]), line
            assert re.search(r"succeeded +\d{4}-\d\d-\d\d \d\d:\d\d:\d\d  \d+\.\ds$",
                             line), line
        unknown = cli("status", "wf-000000000000", "--json")
        assert unknown.returncode == 1 and "no workflow wf-000000000000" in unknown.stderr


# -- 3. submit by name -----------------------------------------------------------------


def test_a_registered_playbook_runs_by_name_with_its_vars_set(tmp_path: Path) -> None:
    with running_node(tmp_path, "alpha") as node:
        cli = Cli(node.url)
        registered = cli.ok("register", EXAMPLES / "hello.yaml", "--name", "greeting")
        assert registered.stdout.strip() == "registered greeting (revision 1)"
        playbooks = cli.json("playbooks")["playbooks"]
        assert [(p["name"], p["playbook"]) for p in playbooks] == [("greeting", "hello")]

        waited = cli("submit", "--name", "greeting", "--set", "who=tests", "--wait", "--json")
        assert waited.returncode == 0, waited.stderr
        record = waited.document()
        assert record["status"] == "succeeded" and record["playbook"] == "hello"
        assert record["tasks"]["greet"]["steps"]["say"]["output"] == {
            "msg": "hello tests from hello"}

        missing = cli("submit", "--name", "nosuch", "--wait")
        assert missing.returncode == 1
        assert "no playbook registered as 'nosuch'; registered: greeting" in missing.stderr


# -- 4. cancel ---------------------------------------------------------------------------


def test_cancel_stops_the_workflow_and_leaves_no_process_behind(tmp_path: Path) -> None:
    marker = f"noetl-cancel-{uuid.uuid4().hex}"
    playbook = write_playbook(tmp_path, "long", f"""
        tasks:
          - name: work
            steps:
              - name: nap
                plugin: shell
                runner: process
                with:
                  command: "{sys.executable} -c 'import time; time.sleep(60)' {marker}"
        """)
    with running_node(tmp_path, "alpha") as node:
        cli = Cli(node.url)
        workflow_id = cli.submit(playbook)
        record = cli.wait_status(workflow_id, "running")
        wait_until(lambda: cli.status(workflow_id)["tasks"]["work"]["steps"]["nap"]["status"]
                   == "running", 20, "the step to run")
        wait_until(lambda: processes_with(marker), 20, "the command to start")
        assert record["node"] == "alpha"

        began = time.monotonic()
        cancelled = cli("cancel", workflow_id)
        assert cancelled.returncode == 0, cancelled.stderr
        assert cancelled.stdout.strip() == f"{workflow_id} cancelled"
        assert time.monotonic() - began < 15

        record = cli.status(workflow_id)
        assert record["status"] == "cancelled"
        assert record["tasks"]["work"]["status"] == "cancelled"
        assert record["tasks"]["work"]["steps"]["nap"]["status"] == "cancelled"
        wait_until(lambda: not processes_with(marker), 5, "the command's processes to be gone")
        assert processes_with(marker) == {}

        again = cli("cancel", workflow_id)
        assert again.returncode == 1
        assert f"workflow {workflow_id} is cancelled: nothing to cancel" in again.stderr
        assert cli.status(workflow_id)["status"] == "cancelled"


# -- 5. kill an actor ----------------------------------------------------------------


def test_a_killed_worker_is_restarted_and_bad_paths_are_refused(tmp_path: Path) -> None:
    with running_node(tmp_path, "alpha") as node:
        cli = Cli(node.url)
        killed = cli("kill", "/alpha/workers/echo")
        assert killed.returncode == 0, killed.stderr
        assert killed.stdout.strip() == "kill: /alpha/workers/echo"

        def restarted() -> dict[str, Any] | None:
            echo = actor(cli.tree()["alpha"]["tree"], "/alpha/workers/echo")
            return echo if echo and echo["restarts"] == 1 and echo["state"] == "running" \
                else None

        echo = wait_until(restarted, 10, "/alpha/workers/echo restarted", 0.1)
        assert echo["kind"] == "worker"
        root = cli.tree()["alpha"]["tree"]
        assert {a["path"] for a in walk(root) if a["restarts"]} == {"/alpha/workers/echo"}
        assert actor(root, "/alpha/workers/sleep")["state"] == "running"  # type: ignore[index]
        assert "killed by request (/alpha/workers/echo)" in node.stderr()
        # the restarted worker works
        waited = cli("submit", EXAMPLES / "hello.yaml", "--wait")
        assert waited.returncode == 0, waited.stderr

        missing = cli("kill", "/alpha/workers/nosuch")
        assert missing.returncode == 1
        assert "/alpha/workers/nosuch does not exist" in missing.stderr
        deeper = cli("kill", "/alpha/nosuch/thing")
        assert deeper.returncode == 1 and "does not exist" in deeper.stderr
        elsewhere = cli("kill", "/nosuch/workers/echo")
        assert elsewhere.returncode == 1
        assert "no node 'nosuch' answers" in elsewhere.stderr
        assert node.proc.poll() is None


def test_the_node_itself_cannot_be_killed_or_terminated_by_request(tmp_path: Path) -> None:
    """docs/node.md: "The node's root cannot be killed or terminated this way: stop the
    node." The control service answers so (a bad request: exit 2), naming the reason."""
    with running_node(tmp_path, "alpha") as node:
        cli = Cli(node.url)
        for op in ("kill", "terminate"):
            refused = cli(op, "/alpha")
            assert f"/alpha is the node itself: stop the node to {op} it" in refused.stderr, (
                refused)
            assert refused.returncode == 2 and refused.stdout == ""
        root = cli.tree()["alpha"]["tree"]
        assert root["state"] == "running" and root["restarts"] == 0
        assert all(a["state"] == "running" and a["restarts"] == 0 for a in walk(root))
        assert node.proc.poll() is None


# -- 6. SIGTERM ---------------------------------------------------------------------------


def test_sigterm_stops_the_node_in_reverse_order_and_cancels_its_workflows(
        tmp_path: Path) -> None:
    playbook = write_playbook(tmp_path, "nap", """
        tasks:
          - name: wait
            steps:
              - name: nap
                plugin: sleep
                with: {seconds: 30}
        """)
    with running_server(tmp_path) as url, running_node(tmp_path, "alpha", nats=url) as node:
        cli = Cli(url)
        workflow_id = cli.submit(playbook)
        wait_until(lambda: cli.status(workflow_id)["tasks"]["wait"]["steps"]["nap"]["status"]
                   == "running", 20, "the sleep step to run")

        began = time.monotonic()
        node.proc.send_signal(signal.SIGTERM)
        code = node.stop(timeout=20)
        took = time.monotonic() - began
        log = node.stderr()
        assert code == 0, log
        assert took < 15, f"took {took:.1f}s to stop\n{log}"

        def at(line: str) -> int:
            assert line in log, f"{line!r} is not in the log:\n{log}"
            return log.index(line)

        order = [at("SIGTERM: stopping"),
                 at("exited /alpha/services/api:"),
                 at("exited /alpha/services:"),
                 at(f"exited /alpha/workflows/{workflow_id}:"),
                 at("exited /alpha/workflows:"),
                 at("exited /alpha/workers/echo:"),
                 at("exited /alpha/workers:"),
                 at("exited /alpha/bridge:"),
                 at("node alpha stopped in")]
        assert order == sorted(order), log
        assert "Traceback" not in log

        record = read_record(url, workflow_id)
        assert record is not None
        assert record["status"] == "cancelled", record
        assert record["node"] == "alpha"
        assert record["tasks"]["wait"]["steps"]["nap"]["status"] == "cancelled"


def test_steps_that_have_not_run_are_not_started_in_the_tree_as_in_status(
        tmp_path: Path) -> None:
    playbook = write_playbook(tmp_path, "later", """
        tasks:
          - name: wait
            steps:
              - {name: nap, plugin: sleep, with: {seconds: 30}}
              - {name: after, plugin: echo, with: {msg: done}}
        """)
    with running_node(tmp_path, "alpha") as node:
        cli = Cli(node.url)
        workflow_id = cli.submit(playbook)
        wait_until(lambda: cli.status(workflow_id)["tasks"]["wait"]["steps"]["nap"]["status"]
                   == "running", 20, "the sleep step to run")
        assert cli.status(workflow_id)["tasks"]["wait"]["steps"]["after"]["status"] \
            == "not_started"
        task = actor(cli.tree()["alpha"]["tree"], f"/alpha/workflows/{workflow_id}/wait")
        assert task is not None
        assert {step["id"]: step["state"] for step in task["children"]} == {
            "nap": "running", "after": "not_started"}
        shown = cli.ok("tree").stdout
        assert re.search(r"after +not_started", shown), shown
        assert "starting" not in shown.replace("not_started", ""), shown


def test_the_log_counts_the_shutdown_from_the_signal(tmp_path: Path) -> None:
    """A SIGTERM while the node still starts waits for the start; the log says how long."""
    folder = tmp_path / "node"
    spawned = spawn(cli_command("node", "start", "--name", "alpha", "--state-dir",
                                folder / "state"), folder, "node")
    try:
        wait_until(lambda: spawned.proc.poll() is not None
                   or "started /alpha/bridge" in spawned.stderr(), START_TIMEOUT,
                   "the node to start its bridge")
        spawned.proc.send_signal(signal.SIGTERM)
        assert spawned.terminate() == 0, spawned.stderr()
    finally:
        spawned.cleanup()
    log = spawned.stderr()
    asked = re.search(r"^(\S+ \S+) INFO +\S+: SIGTERM: stopping$", log, re.M)
    stopped = re.search(r"^(\S+ \S+) INFO +\S+: node alpha stopped in (\d+\.\d)s$", log, re.M)
    assert asked and stopped, log

    def at(stamp: str) -> float:
        return time.mktime(time.strptime(stamp[:19], "%Y-%m-%d %H:%M:%S")) + \
            int(stamp[20:]) / 1000

    between = at(stopped.group(1)) - at(asked.group(1))
    assert float(stopped.group(2)) >= round(between, 1) - 0.1, log


def test_a_node_whose_nats_stopped_first_exits_cleanly(tmp_path: Path) -> None:
    playbook = write_playbook(tmp_path, "nap", """
        tasks:
          - name: wait
            steps:
              - {name: nap, plugin: sleep, with: {seconds: 30}}
        """)
    server = spawn(cli_command("server", "--state-dir", tmp_path / "server"),
                   tmp_path / "server", "server")
    try:
        url = server.wait_for_line(_SERVER_UP, START_TIMEOUT).group(1)
        with running_node(tmp_path, "alpha", nats=url) as node:
            cli = Cli(url)
            workflow_id = cli.submit(playbook)
            wait_until(lambda: cli.status(workflow_id)["tasks"]["wait"]["steps"]["nap"]
                       ["status"] == "running", 20, "the sleep step to run")
            assert server.terminate() == 0, server.stderr()
            wait_until(lambda: "disconnected /alpha/bridge" in node.stderr(), 20,
                       "the node to see NATS gone")
            assert node.stop(timeout=60) == 0, node.stderr()
            log = node.stderr()
    finally:
        server.cleanup()
    assert "node alpha stopped in" in log, log
    assert "Event loop is closed" not in log, log
    assert "Task was destroyed but it is pending" not in log, log
    assert "Traceback" not in log, log


# -- 7. bad requests ------------------------------------------------------------------------


def _api(url: str, verb: str, **fields: Any) -> tuple[str, bytes]:
    return f"noetl.api.{verb}", encode(fields)


def test_bad_requests_get_an_error_kind_and_change_nothing(tmp_path: Path) -> None:
    bad_yaml = "apiVersion: noetl.io/v1\nkind: Playbook\nname: broken\ntasks: [\n"
    bad_playbook = (EXAMPLES / "hello.yaml").read_text().replace("plugin: echo",
                                                                 "plugin: ech0", 1)
    with running_node(tmp_path, "alpha") as node:
        url = node.url
        requests = [
            _api(url, "submit", playbook=bad_yaml, file="broken.yaml"),
            _api(url, "submit", playbook=bad_playbook, file="hello.yaml"),
            _api(url, "register", name="hello", playbook=bad_playbook, file="hello.yaml"),
            _api(url, "submit"),
            _api(url, "submit", playbook=42),
            _api(url, "submit", playbook=(EXAMPLES / "hello.yaml").read_text(), vars=[1]),
            _api(url, "register", name="no good", playbook=bad_yaml),
            _api(url, "frobnicate"),
            _api(url, "status", workflow_id="wf-000000000000"),
            _api(url, "status"),
            _api(url, "cancel", workflow_id="wf-000000000000"),
            _api(url, "run", name="nosuch"),
        ]
        replies = raw_requests(url, requests)
        assert None not in replies, replies
        errors = [reply["error"] for reply in replies]  # type: ignore[index]
        assert all(reply["ok"] is False for reply in replies), replies  # type: ignore[index]
        kinds = [error["kind"] for error in errors]
        assert kinds == ["invalid_playbook"] * 3 + ["bad_request"] * 5 + ["not_found",
                                                                          "bad_request",
                                                                          "not_found",
                                                                          "not_found"]
        for error, file in zip(errors[:3], ["broken.yaml", "hello.yaml", "hello.yaml"],
                               strict=True):
            assert error["problems"], error
            for problem in error["problems"]:
                match = PROBLEM.match(problem)
                assert match and match["file"] == file, problem
        assert "ech0" in " ".join(errors[1]["problems"])
        assert errors[3]["message"] == "the request needs 'playbook'"
        assert errors[4]["message"] == "'playbook' must be a string (got int)"
        assert errors[5]["message"] == "'vars' must be a mapping (got list)"
        assert "frobnicate" in errors[7]["message"]
        assert errors[8]["message"] == "no workflow wf-000000000000"
        assert errors[9]["message"] == "the request needs 'workflow_id'"

        async def state() -> tuple[list[Any], list[Any], list[Any]]:
            async with Client(ConnectOptions(servers=(url,))) as client:
                return (await client.workflows(), await client.playbooks(),
                        await client.nodes())

        workflows, playbooks, nodes = asyncio.run(state())
        assert workflows == [] and playbooks == []
        assert [n["name"] for n in nodes] == ["alpha"]

        # the CLI: an invalid playbook exits 2 with its problems, and nothing starts
        bad = tmp_path / "bad.yaml"
        bad.write_text(bad_playbook)
        cli = Cli(url)
        submitted = cli("submit", bad)
        assert submitted.returncode == 2 and submitted.stdout == ""
        lines = submitted.stderr.splitlines()
        assert "the playbook is not valid" in lines[0]
        assert lines[1:] and all(
            (m := PROBLEM.match(line)) and m["file"] == str(bad) for line in lines[1:]), lines
        assert cli.json("list") == {"workflows": []}

        # and the node still serves
        waited = cli("submit", EXAMPLES / "hello.yaml", "--wait")
        assert waited.returncode == 0, waited.stderr
        assert [w["status"] for w in cli.json("list")["workflows"]] == ["succeeded"]
        assert "Traceback" not in node.stderr()


def test_a_request_that_is_not_a_json_object_is_answered_bad_request(tmp_path: Path) -> None:
    """The API's contract: every request gets ``{"ok": false, "error": ...}`` or an ok
    reply; one that is not JSON, not a JSON object, or lacks the schema version is a bad
    request, not silence (the requester would wait for its timeout)."""
    with running_node(tmp_path, "alpha") as node:
        replies = raw_requests(node.url, [
            ("noetl.api.status", b"this is not json"),
            ("noetl.api.list", b"[1, 2]"),
            ("noetl.api.status", b'{"workflow_id": "wf-000000000000"}'),
        ], timeout=2.0)
        assert None not in replies, (
            f"no answer to a request that is not a JSON object with a schema version "
            f"(one reply per request, None for silence): {replies}")
        for reply in replies:
            assert reply["ok"] is False and reply["error"]["kind"] == "bad_request", reply
        # and the node still serves
        assert raw_requests(node.url, [_api(node.url, "list")])[0] == {
            "ok": True, "schema_version": 1, "workflows": []}


# -- 8. two nodes ----------------------------------------------------------------------------


ECHOES = 6
WORKFLOWS = 16


def test_two_nodes_share_the_work_and_one_takes_over_when_the_other_dies(tmp_path: Path) -> None:
    steps = "".join(f"""
              - name: e{i}
                plugin: echo
                with: {{msg: "{i}"}}""" for i in range(ECHOES))
    echoes = write_playbook(tmp_path, "echoes", "tasks:\n  - name: many\n    steps:" + steps)
    nap = write_playbook(tmp_path, "nap", """
        tasks:
          - name: wait
            steps:
              - name: nap
                plugin: sleep
                with: {seconds: 8}  # still running when its owner is seen running, loaded
        """)
    with running_server(tmp_path) as url, \
            running_node(tmp_path, "a", nats=url) as a, \
            running_node(tmp_path, "b", nats=url) as b:
        cli = Cli(url)

        def both() -> dict[str, dict[str, Any]] | None:
            tree = cli.tree()
            return tree if set(tree) == {"a", "b"} else None

        nodes = wait_until(both, 10, "both nodes in the tree", 0.1)
        assert {nodes["a"]["pid"], nodes["b"]["pid"]} == {a.pid, b.pid}
        assert all(n["tree"]["state"] == "running" for n in nodes.values())

        async def submit_all() -> list[dict[str, Any]]:
            async with Client(ConnectOptions(servers=(url,))) as client:
                started = [await client.submit(echoes.read_text(), file=str(echoes))
                           for _ in range(WORKFLOWS)]
                return [await client.wait(s["workflow_id"], timeout=30) for s in started]

        records = asyncio.run(submit_all())
        assert [r["status"] for r in records] == ["succeeded"] * WORKFLOWS
        assert all(len(r["tasks"]["many"]["steps"]) == ECHOES for r in records)
        assert {r["node"] for r in records} == {"a", "b"}, "one node owned every workflow"

        workers: set[str] = set()
        for record in records:
            events = cli.events(record["workflow_id"])
            workers |= {e["worker"] for e in events if e.get("worker")}
            if {w.split("/")[1] for w in workers} == {"a", "b"}:
                break
        assert {"/".join(w.split("/")[1:]) for w in workers} == {
            "a/workers/echo", "b/workers/echo"}, workers

        async def start_on_a() -> str:
            async with Client(ConnectOptions(servers=(url,))) as client:
                for _ in range(40):
                    started = await client.submit(nap.read_text(), file=str(nap))
                    if started["node"] == "a":
                        return str(started["workflow_id"])
                    await client.cancel(started["workflow_id"])
            raise AssertionError("no submit of 40 went to node a")

        long_id = asyncio.run(start_on_a())
        assert cli.wait_status(long_id, "running")["node"] == "a"

        a.spawned.kill()  # SIGKILL: no goodbye
        assert a.proc.returncode == -signal.SIGKILL

        waited = cli("submit", EXAMPLES / "hello.yaml", "--wait", "--json")
        assert waited.returncode == 0, waited.stderr
        assert waited.document()["node"] == "b"

        record = cli.wait_status(long_id, "succeeded", timeout=60)
        assert record["node"] == "b" and record["epoch"] == 2, record
        assert [(m["from"], m["to"], m["epoch"]) for m in record["moves"]] == [("a", "b", 2)]
        wait_until(lambda: set(cli.tree()) == {"b"}, 15, "node a to leave the tree", 0.1)
        assert "node a stopped answering" in b.stderr()
        assert f"took over workflow {long_id} from node a (epoch 2)" in b.stderr()
        moved = [e for e in cli.events(long_id) if e.get("kind") == "moved"]
        assert len(moved) == 1 and (moved[0]["from"], moved[0]["to"]) == ("a", "b"), moved
        assert moved[0]["epoch"] == 2 and "took it over" in moved[0]["detail"]
        listed = {w["workflow_id"]: w["status"] for w in cli.json("list")["workflows"]}
        assert listed[long_id] == "succeeded"
