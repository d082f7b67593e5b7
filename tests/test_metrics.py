"""A node's Prometheus metrics (`noetl node start --metrics-port`), scraped over HTTP.

A real `noetl node start` on a real nats-server: its log says where the
metrics are; the figures move as workflows run: a flaky shell step's
restarts and attempts, a task that escalates, a worker's queue that grows
and drains; the heir of a killed owner counts its takeover. `--log-format
json` lines about a workflow carry its fields. Also: several nodes in one
process keep their figures apart, and the `metrics:` keys of node.yaml are
checked where they are written.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import subprocess
import textwrap
from collections.abc import Mapping
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from noetl_actors.bridge import EmbeddedNatsServer
from noetl_actors.errors import PlaybookError
from noetl_actors.services import Node, load_node_config
from tests.node_helpers import NODE_CONFIG, Cli, running_node, running_server, spawn
from tests.run_helpers import REPO, cli_command, wait_until
from tests.takeover_helpers import NO_SHELL, appending_playbook, lines_of, shell_worker

pytestmark = pytest.mark.timeout(180)

OPERATIONS = REPO / "docs" / "operations.md"
_METRICS_URL = re.compile(r"metrics on http://127\.0\.0\.1:(\d+)/metrics")

Figures = Mapping[tuple[str, tuple[tuple[str, str], ...]], float]
"""Every sample of a scrape: (name, sorted labels) -> value."""

FLAKY_SHELL = """\
apiVersion: noetl.io/v1
kind: Playbook
name: flaky-shell
tasks:
  - name: fetch
    supervision: {strategy: one_for_one, max_restarts: 5, within: 1m,
                  backoff: {initial: 50ms, max: 100ms}}
    steps:
      - {name: call, plugin: shell, with: {command: "test {{ attempt }} -ge 3"}}
"""
"""Its shell step fails twice (attempts 1 and 2), then succeeds."""

ESCALATES = """\
apiVersion: noetl.io/v1
kind: Playbook
name: escalates
supervision: {strategy: one_for_one, max_restarts: 1, within: 1m}
tasks:
  - name: load
    supervision: {use: fail-fast}
    steps:
      - {name: insert, plugin: fail, with: {until_attempt: 2, message: connection reset}}
"""
"""Its task gives up at the first failure; the workflow restarts the task once."""

THREE_SLEEPS = """\
apiVersion: noetl.io/v1
kind: Playbook
name: three-sleeps
tasks:
""" + "".join(f"""\
  - name: t{i}
    steps:
      - {{name: nap, plugin: shell, with: {{command: "sleep 1.5"}}}}
""" for i in range(3))
"""Three shell steps at once, for a shell worker that runs one at a time."""


def scrape(port: int) -> Figures:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", "/metrics")
        response = connection.getresponse()
        assert response.status == 200
        text = response.read().decode()
    finally:
        connection.close()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def figure(figures: Figures, name: str, **labels: str) -> float:
    """A sample's value; 0 for one not there yet (a labelled series appears when it moves)."""
    return figures.get((name, tuple(sorted(labels.items()))), 0.0)


def write_playbook(folder: Path, name: str, text: str) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(text)
    return path


def test_a_nodes_figures_move_as_its_workflows_run(
        tmp_path: Path, nats_server: EmbeddedNatsServer) -> None:
    config = NODE_CONFIG + "workers: {plugins: {shell: {concurrency: 1}}}\n"
    with running_node(tmp_path, "m1", nats=nats_server.url, config=config,
                      args=["--metrics-port", "0"]) as node:
        found = wait_until(lambda: _METRICS_URL.search(node.stderr()), 30,
                           "the log to say where the metrics are")
        port = int(found.group(1))
        cli = Cli(node.url)
        before = scrape(port)
        assert figure(before, "noetl_nats_connected") == 1
        assert figure(before, "noetl_workflows_running") == 0
        assert figure(before, "noetl_worker_in_flight", plugin="shell") == 0

        flaky = cli.submit(write_playbook(tmp_path, "flaky", FLAKY_SHELL))
        cli.wait_status(flaky, "succeeded", timeout=60)
        after = wait_until(lambda: (f := scrape(port)) and figure(
            f, "noetl_workflows_ended_total", status="succeeded") >= 1 and f, 30,
            "the flaky workflow's end to be counted")
        assert figure(after, "noetl_workflows_started_total") == 1
        assert figure(after, "noetl_restarts_total", level="step", strategy="one_for_one") == 2
        shell = {"plugin": "shell"}
        assert figure(after, "noetl_step_attempt_duration_seconds_count",
                      outcome="failed", **shell) == 2
        assert figure(after, "noetl_step_attempt_duration_seconds_count",
                      outcome="succeeded", **shell) == 1
        assert figure(after, "noetl_step_attempt_duration_seconds_bucket",
                      outcome="succeeded", le="+Inf", **shell) == 1
        assert figure(after, "noetl_escalations_total", level="task") == 0

        escalates = cli.submit(write_playbook(tmp_path, "escalates", ESCALATES))
        cli.wait_status(escalates, "succeeded", timeout=60)
        after = wait_until(lambda: (f := scrape(port)) and figure(
            f, "noetl_workflows_ended_total", status="succeeded") >= 2 and f, 30,
            "the escalating workflow's end to be counted")
        assert figure(after, "noetl_escalations_total", level="task") == 1
        assert figure(after, "noetl_restarts_total", level="task", strategy="one_for_one") == 1
        assert figure(after, "noetl_step_attempt_duration_seconds_count",
                      plugin="fail", outcome="failed") == 1

        sleeps = cli.submit(write_playbook(tmp_path, "sleeps", THREE_SLEEPS))
        busy = wait_until(lambda: (f := scrape(port)) and figure(
            f, "noetl_worker_queue_depth", **shell) >= 1 and f, 30,
            "the shell worker's queue to grow", 0.1)
        assert figure(busy, "noetl_worker_in_flight", **shell) == 1
        assert figure(busy, "noetl_workflows_running") == 1
        cli.wait_status(sleeps, "succeeded", timeout=60)
        wait_until(lambda: (f := scrape(port)) and figure(
            f, "noetl_worker_queue_depth", **shell) == 0 and figure(
            f, "noetl_worker_in_flight", **shell) == 0 and figure(
            f, "noetl_workflows_running") == 0, 30, "the shell worker's queue to drain", 0.1)
        final = scrape(port)
        assert figure(final, "noetl_workflows_ended_total", status="succeeded") == 3
        assert figure(final, "noetl_workflows_ended_total", status="failed") == 0
    assert_documented({name for name, _ in final})


def assert_documented(exposed: set[str]) -> None:
    """docs/operations.md lists every noetl_ metric a node exposes, and no other."""
    documented = set(re.findall(r"^\| `(noetl_\w+)`", OPERATIONS.read_text(), re.MULTILINE))
    ours = {name for name in exposed if name.startswith("noetl_")
            and not name.endswith("_created")}

    def doc_of(name: str) -> str | None:  # a histogram's _bucket, _count, _sum
        return next((d for d in documented if name == d or name.startswith(d + "_")), None)

    assert {name for name in ours if doc_of(name) is None} == set()
    assert documented - {doc_of(name) for name in ours} == set()


def test_json_log_lines_about_a_workflow_carry_its_fields(
        tmp_path: Path, nats_server: EmbeddedNatsServer) -> None:
    """(Its metrics are on by its config, not a flag: the log says where, in JSON too.)"""
    config = NODE_CONFIG + "metrics: {enabled: true}\n"
    with running_node(tmp_path, "j1", nats=nats_server.url, config=config,
                      args=["--log-format", "json"]) as node:
        cli = Cli(node.url)
        playbook = write_playbook(tmp_path, "once", textwrap.dedent("""\
            apiVersion: noetl.io/v1
            kind: Playbook
            name: fails-once
            tasks:
              - name: fetch
                steps:
                  - {name: call, plugin: fail, with: {until_attempt: 2, message: "503"}}
            """))
        workflow_id = cli.submit(playbook)
        cli.wait_status(workflow_id, "succeeded", timeout=60)

        def about_it() -> list[dict[str, object]]:
            lines = [json.loads(line) for line in node.stderr().splitlines() if line.strip()]
            mine = [entry for entry in lines if entry.get("workflow_id") == workflow_id]
            ended = any(entry["message"].startswith(f"exited /j1/workflows/{workflow_id}:")
                        for entry in mine)
            return mine if ended else []

        mine = wait_until(about_it, 30, "the log to tell the workflow's end")
    failed = [entry for entry in mine if entry.get("step") == "call"]
    assert len(failed) == 1, mine
    assert failed[0]["level"] == "warning"
    assert {key: failed[0][key] for key in ("task", "step", "attempt", "epoch")} == {
        "task": "fetch", "step": "call", "attempt": 1, "epoch": 1}
    assert "503" in str(failed[0]["message"])
    started = [entry for entry in mine if str(entry["message"]).startswith("started ")]
    assert started and started[0]["epoch"] == 1 and "step" not in started[0]
    logged = [json.loads(line)["message"] for line in node.stderr().splitlines()]
    assert any(_METRICS_URL.fullmatch(message) for message in logged), logged


def test_a_metrics_port_in_use_is_one_line_and_no_node(
        tmp_path: Path, nats_server: EmbeddedNatsServer) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        spawned = spawn(cli_command("node", "start", "--name", "busy", "--nats", nats_server.url,
                                    "--state-dir", tmp_path / "state",
                                    "--metrics-port", str(port)), tmp_path, "busy")
        try:
            spawned.proc.wait(60)
        except subprocess.TimeoutExpired:
            spawned.kill()
            raise AssertionError(f"the node did not exit: {spawned.stderr()}") from None
        finally:
            spawned.cleanup()
    assert spawned.proc.returncode == 1
    assert f"Error: metrics endpoint on 127.0.0.1:{port}: Address already in use" \
        in spawned.stderr()
    assert "Traceback" not in spawned.stderr()


def test_nodes_in_one_process_keep_their_figures_apart() -> None:
    a, b = Node(name="a"), Node(name="b")
    a.metrics.took_over()
    a.metrics.add_worker("shell", lambda: (3, 4))
    assert a.metrics.registry.get_sample_value("noetl_takeovers_total") == 1
    assert b.metrics.registry.get_sample_value("noetl_takeovers_total") == 0
    assert a.metrics.registry.get_sample_value(
        "noetl_worker_queue_depth", {"plugin": "shell"}) == 3
    assert a.metrics.registry.get_sample_value(
        "noetl_worker_in_flight", {"plugin": "shell"}) == 4
    assert b.metrics.registry.get_sample_value(
        "noetl_worker_queue_depth", {"plugin": "shell"}) is None


@pytest.mark.parametrize(("text", "message"), [
    ("metrics: {port: 70000}", "metrics.port must be a port number from 1 to 65535, "
                               "or 0 for a free one (got 70000)"),
    ("metrics: {enabled: yes please}", "metrics.enabled must be a boolean"),
    ("metrics: {hots: 0.0.0.0}", "unknown key 'hots' in metrics"),
])
def test_bad_metrics_settings_are_refused_where_they_are_written(
        tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "node.yaml"
    path.write_text(f"heartbeat: 1s\n{text}\n")
    with pytest.raises(PlaybookError) as caught:
        load_node_config(path)
    problems = [str(problem) for problem in caught.value.problems]
    assert len(problems) == 1 and problems[0].startswith(f"{path}:2:"), problems
    assert message in problems[0]


def test_metrics_are_off_by_default_on_loopback_and_a_users_file_turns_them_on(
        tmp_path: Path) -> None:
    default = load_node_config().metrics
    assert (default.enabled, default.host, default.port) == (False, "127.0.0.1", 0)
    path = tmp_path / "node.yaml"
    path.write_text("metrics: {enabled: true, host: 0.0.0.0, port: 9464}\n")
    mine = load_node_config(path).metrics
    assert (mine.enabled, mine.host, mine.port) == (True, "0.0.0.0", 9464)


def test_the_heir_of_a_killed_owner_counts_the_takeover_and_logs_it_with_its_epoch(
        tmp_path: Path) -> None:
    lines = tmp_path / "lines.txt"
    playbook = appending_playbook(tmp_path, lines, tasks=2, steps=4, pause=0.2)
    flags = ["--metrics-port", "0", "--log-format", "json"]
    with running_server(tmp_path) as url, \
            running_node(tmp_path, "a", nats=url, config=NO_SHELL, args=flags) as a, \
            running_node(tmp_path, "b", nats=url, config=NO_SHELL, args=flags) as b, \
            shell_worker(tmp_path, url):
        cli = Cli(url)
        workflow_id = cli.submit(playbook)
        owner = cli.wait_status(workflow_id, "running")["node"]
        first, heir = (a, b) if owner == "a" else (b, a)
        port = int(wait_until(lambda: _METRICS_URL.search(heir.stderr()), 30,
                              "the heir's metrics address").group(1))
        assert figure(scrape(port), "noetl_takeovers_total") == 0
        wait_until(lambda: len(lines_of(lines)) >= 2, 30, "two steps done", 0.05)
        first.spawned.kill()
        record = cli.wait_status(workflow_id, {"succeeded", "failed"}, timeout=60)
        assert record["status"] == "succeeded" and record["epoch"] == 2, record.get("error")
        figures = wait_until(lambda: (f := scrape(port)) and figure(
            f, "noetl_workflows_ended_total", status="succeeded") == 1 and f, 30,
            "the heir to count the workflow's end")
        assert figure(figures, "noetl_takeovers_total") == 1
        assert figure(figures, "noetl_workflows_started_total") == 1
        entries = [json.loads(line) for line in heir.stderr().splitlines() if line.strip()]
    took = [entry for entry in entries if str(entry["message"]).startswith("took over")]
    assert [(entry["workflow_id"], entry["epoch"]) for entry in took] == [(workflow_id, 2)]
