"""A and B on the three paths a user can take, in one run, against raw NATS.

Run it as a plain script (not under pytest), or as `bench/steps.py --paths`::

    python bench/paths.py [--rounds N] [--tasks N] [--steps N] [--sequence N]

The paths, each timed on the same two playbooks of `echo` steps (A: `--tasks`
(50) parallel tasks of `--steps` (10) steps; B: one task of `--sequence`
(200) steps):

- **inproc**: a `Node` in this process (embedded nats-server, in-process
  claims, `echo` on the NATS loop), as bench/steps.py measures it; the time
  from `node.run()` to `wait()` returning.
- **run**: `noetl run FILE --json` as a subprocess, as a user runs it (a
  fresh process and its own nats-server every time); the time its report
  gives, `finished_at - started_at`.
- **node**: `noetl server` (a standalone nats-server) and `noetl node start
  --nats` to it, both subprocesses, fed through the command API (`noetl
  submit`'s `Client`): the lease, a claim in `noetl-claims` per attempt, the
  records in `noetl-workflows`, the events in NOETL_EVENTS. The time its
  record gives, `finished_at - started_at`. Next to it, the CPU time per step
  of the node process and of the nats-server (from /proc, 10 ms resolution).

Raw NATS on the `noetl server`, before and after the workloads: nats-py
request/reply against a raw responder, 100 in flight pipelined (rt/s) and
one at a time (p50 ms); and a raw JetStream KV `create` of a new key then
`get` of another, one at a time (p50 ms): the least a worker's claim and
lease check cost, per attempt. One warm-up of every path, then `--rounds` (3)
rounds, each running every path in turn; the figures are medians.

It prints one line per path, then the ratios between the paths and to raw.
The last line is machine-readable::

    inproc_a=<steps/s> inproc_b=<ms/step> run_a=<..> run_b=<..> node_a=<..> node_b=<..>
    raw_rt_per_s=<x> raw_p50_ms=<x> node_to_run_a=<x> node_to_run_b=<x>

`node_to_run_a` is run's steps/s over node's (above 1: the node is slower),
`node_to_run_b` node's ms/step over run's; the target is 1.25 at most.
The exit status is 1 if a workflow did not succeed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import nats
from _login import login
from _roundtrips import PAD, REQUEST, REQUEST_TIMEOUT, LostReply, pipelined
from nats.aio.msg import Msg
from node_path import playbook as served_playbook
from steps import Failed, StepClock, cpu_seconds, run_workflow
from steps import playbook as inproc_playbook

from noetl_actors.bridge import ConnectOptions, encode
from noetl_actors.client import Client
from noetl_actors.services import Node

NODE_UP = re.compile(r"^node \S+ is up on (nats://\S+) ")
SERVER_UP = re.compile(r"^nats-server on (nats://\S+) ")
START_TIMEOUT = 60.0
WORKFLOW_TIMEOUT = 300.0
REPLY = encode({"ok": True, "pad": PAD})
CLI = [sys.executable, "-m", "noetl_actors.cli"]


@dataclass
class Figures:
    """Per path: A's steps/s and B's ms/step, one per round."""

    a: list[float] = field(default_factory=list)
    b: list[float] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)
    """Node path only: the node process's CPU per step (A and B), microseconds."""
    server_us: list[float] = field(default_factory=list)
    """Node path only: the nats-server's CPU per step, microseconds."""


# -- processes ---------------------------------------------------------------------


def descendants(pid: int) -> list[int]:
    """`pid`'s children, grandchildren... (from /proc)."""
    found = []
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as children:
            for child in map(int, children.read().split()):
                found += [child, *descendants(child)]
    except OSError:
        pass
    return found


def nats_server_pid(pid: int) -> int | None:
    """The nats-server run by process `pid` (itself or a descendant)."""
    for candidate in [pid, *descendants(pid)]:
        try:
            with open(f"/proc/{candidate}/comm") as comm:
                if comm.read().strip() == "nats-server":
                    return candidate
        except OSError:
            continue
    return None


@contextmanager
def spawned(command: list[str], up: re.Pattern[str], log: Path) -> Iterator[tuple[int, str]]:
    """A subprocess whose first line matches `up`; its pid and the line's URL."""
    with open(log, "w") as errors:
        proc = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=errors, text=True, start_new_session=True
        )
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                raise Failed(f"{' '.join(command[3:])} exited: see {log}")
            if match := up.match(line):
                yield proc.pid, match.group(1)
                return
        raise Failed(f"{' '.join(command[3:])} did not start in {START_TIMEOUT:g}s")
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- the paths -----------------------------------------------------------------------


def run_path(file: Path) -> float:
    """`noetl run FILE --json`: the seconds its report gives, start to end."""
    done = subprocess.run(
        [*CLI, "run", str(file), "--json"], capture_output=True, text=True,
        timeout=WORKFLOW_TIMEOUT,
    )
    report = json.loads(done.stdout) if done.stdout.strip() else {}
    if done.returncode != 0 or report.get("status") != "succeeded":
        raise Failed(f"noetl run {file.name}: {report.get('error') or done.stderr[-500:]}")
    return float(report["finished_at"]) - float(report["started_at"])


async def node_path(client: Client, text: str) -> float:
    """Submitted through the API: the seconds its record gives, start to end."""
    started = await client.submit(text, file="bench.yaml")
    record = await client.wait(started["workflow_id"], timeout=WORKFLOW_TIMEOUT)
    if record["status"] != "succeeded":
        raise Failed(f"a workflow on the node did not succeed: {record.get('error')}")
    return float(record["finished_at"]) - float(record["started_at"])


async def raw_claim_ms(url: str, count: int = 300) -> float:
    """What a claim costs a worker at the least: raw nats-py `kv.create` of a new key,
    then `kv.get` of another (the lease), in a bucket like `noetl-claims`; p50 ms."""
    connection = await nats.connect(url, name="bench-paths-kv", **login(url))
    try:
        js = connection.jetstream()
        kv = await js.create_key_value(bucket="bench-paths-claims", history=1, ttl=3600)
        await kv.put("lease", b"{}")
        times = []
        for i in range(count):
            began = time.perf_counter()
            await kv.create(f"c{time.time_ns()}.{i}", b"token")
            await kv.get("lease")
            times.append(time.perf_counter() - began)
        await js.delete_key_value("bench-paths-claims")
        return statistics.median(times[count // 10:]) * 1e3
    finally:
        await connection.close()


async def raw(url: str, count: int = 10_000, sequential: int = 500) -> tuple[float, float]:
    """Raw nats-py against a raw responder: rt/s pipelined at 100, and the p50 ms at 1."""
    responder = await nats.connect(url, name="bench-paths-responder", **login(url))
    requester = await nats.connect(url, name="bench-paths-requester", **login(url))

    async def answer(msg: Msg) -> None:
        await responder.publish(msg.reply, REPLY)

    try:
        await responder.subscribe("bench.paths.raw", cb=answer)
        await responder.flush()
        await pipelined(requester, "bench.paths.raw", count // 10, 100)  # warm-up
        rate = count / await pipelined(requester, "bench.paths.raw", count, 100)
        times = []
        for _ in range(sequential):
            began = time.perf_counter()
            await requester.request("bench.paths.raw", REQUEST, timeout=REQUEST_TIMEOUT)
            times.append(time.perf_counter() - began)
        return rate, statistics.median(times) * 1e3
    finally:
        await requester.close()
        await responder.close()


# -- one run -------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace, folder: Path) -> None:
        self.args = args
        self.a_steps = args.tasks * args.steps
        self.inproc_a = inproc_playbook("fanout", args.tasks, args.steps)
        self.inproc_b = inproc_playbook("sequence", 1, args.sequence)
        self.text_a = served_playbook("fanout", args.tasks, args.steps)
        self.text_b = served_playbook("sequence", 1, args.sequence)
        self.file_a, self.file_b = folder / "fanout.yaml", folder / "sequence.yaml"
        self.file_a.write_text(self.text_a)
        self.file_b.write_text(self.text_b)
        self.paths = {"inproc": Figures(), "run": Figures(), "node": Figures()}
        self.raw: list[tuple[float, float]] = []
        self.claim_ms: list[float] = []

    def inproc_round(self, node: Node, clock: StepClock, keep: bool) -> None:
        a = run_workflow(node, clock, self.inproc_a, sequence=False).seconds
        b = run_workflow(node, clock, self.inproc_b, sequence=True).seconds
        if keep:
            self.paths["inproc"].a.append(self.a_steps / a)
            self.paths["inproc"].b.append(b / self.args.sequence * 1e3)

    def run_round(self, keep: bool) -> None:
        a, b = run_path(self.file_a), run_path(self.file_b)
        if keep:
            self.paths["run"].a.append(self.a_steps / a)
            self.paths["run"].b.append(b / self.args.sequence * 1e3)

    async def node_round(self, client: Client, pids: tuple[int, int | None], keep: bool) -> None:
        node_pid, server_pid = pids
        cpu = cpu_seconds(f"/proc/{node_pid}/stat") or 0.0
        server = (cpu_seconds(f"/proc/{server_pid}/stat") or 0.0) if server_pid else 0.0
        a = await node_path(client, self.text_a)
        b = await node_path(client, self.text_b)
        if keep:
            steps = self.a_steps + self.args.sequence
            figures = self.paths["node"]
            figures.a.append(self.a_steps / a)
            figures.b.append(b / self.args.sequence * 1e3)
            figures.cpu_us.append(
                ((cpu_seconds(f"/proc/{node_pid}/stat") or 0.0) - cpu) / steps * 1e6
            )
            if server_pid:
                after = cpu_seconds(f"/proc/{server_pid}/stat") or 0.0
                figures.server_us.append((after - server) / steps * 1e6)

    async def served(
        self, url: str, pids: tuple[int, int | None], node: Node, clock: StepClock
    ) -> None:
        self.raw.append(await raw(url))
        self.claim_ms.append(await raw_claim_ms(url))
        async with Client(ConnectOptions(servers=(url,)), timeout=30) as client:
            for round_ in range(self.args.rounds + 1):  # the first is the warm-up
                keep = round_ > 0
                await asyncio.to_thread(self.inproc_round, node, clock, keep)
                await asyncio.to_thread(self.run_round, keep)
                await self.node_round(client, pids, keep)
        self.raw.append(await raw(url))
        self.claim_ms.append(await raw_claim_ms(url))


def print_report(bench: Bench) -> str:
    args = bench.args
    med = {name: (statistics.median(f.a), statistics.median(f.b))
           for name, f in bench.paths.items()}
    raw_rate = statistics.fmean(r for r, _ in bench.raw)
    raw_p50 = statistics.fmean(p for _, p in bench.raw)
    print()
    print(f"{'path':<8} {'A steps/s (rounds)':>32} {'B ms/step (rounds)':>30}"
          f"   A/raw rt   B/raw p50")
    for name, figures in bench.paths.items():
        a, b = med[name]
        rounds_a = "/".join(f"{x:.0f}" for x in figures.a)
        rounds_b = "/".join(f"{x:.2f}" for x in figures.b)
        print(f"{name:<8} {a:>8,.0f} ({rounds_a:>21}) {b:>8.3f} ({rounds_b:>18})"
              f"   {a / raw_rate:8.4f}   x{b / raw_p50:7.2f}")
    (rate0, p0), (rate1, p1) = bench.raw
    print(f"raw nats-py on the noetl server: {rate0:,.0f} -> {rate1:,.0f} rt/s pipelined "
          f"at 100; p50 {p0:.3f} -> {p1:.3f} ms at 1 in flight (before -> after)")
    print(f"raw nats-py KV create + get (a claim and its lease read, at the least): "
          f"p50 {bench.claim_ms[0]:.3f} -> {bench.claim_ms[1]:.3f} ms (before -> after)")
    node = bench.paths["node"]
    if node.cpu_us:
        server = (f"{statistics.median(node.server_us):.0f}" if node.server_us else "-")
        print(f"node path CPU per step (A and B together): node process "
              f"{statistics.median(node.cpu_us):.0f} us, nats-server {server} us")
    ratio = {
        "node_to_run_a": med["run"][0] / med["node"][0],
        "node_to_run_b": med["node"][1] / med["run"][1],
        "inproc_to_run_a": med["run"][0] / med["inproc"][0],
        "inproc_to_run_b": med["inproc"][1] / med["run"][1],
        "node_to_inproc_a": med["inproc"][0] / med["node"][0],
        "node_to_inproc_b": med["node"][1] / med["inproc"][1],
    }
    print("slower by (A: steps/s of the faster over the slower's; B: ms/step over ms/step):")
    print(f"  node / run:    A x{ratio['node_to_run_a']:.2f}  B x{ratio['node_to_run_b']:.2f}"
          "   (target: 1.25 at most)")
    print(f"  inproc / run:  A x{ratio['inproc_to_run_a']:.2f}  B x{ratio['inproc_to_run_b']:.2f}")
    print(f"  node / inproc: A x{ratio['node_to_inproc_a']:.2f}  "
          f"B x{ratio['node_to_inproc_b']:.2f}")
    print(f"({args.rounds} rounds after a warm-up; A {args.tasks} x {args.steps}, "
          f"B 1 x {args.sequence}; {os.cpu_count()} cpus, load avg {os.getloadavg()[0]:.2f})")
    return (
        f"inproc_a={med['inproc'][0]:.0f} inproc_b={med['inproc'][1]:.3f} "
        f"run_a={med['run'][0]:.0f} run_b={med['run'][1]:.3f} "
        f"node_a={med['node'][0]:.0f} node_b={med['node'][1]:.3f} "
        f"raw_rt_per_s={raw_rate:.0f} raw_p50_ms={raw_p50:.3f} "
        f"node_to_run_a={ratio['node_to_run_a']:.2f} node_to_run_b={ratio['node_to_run_b']:.2f}"
    )


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="measured rounds (default 3)")
    parser.add_argument("--tasks", type=int, default=50, help="A's parallel tasks (default 50)")
    parser.add_argument("--steps", type=int, default=10, help="A's steps per task (default 10)")
    parser.add_argument("--sequence", type=int, default=200, help="B's steps (default 200)")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.tasks < 1 or args.steps < 1 or args.sequence < 3:
        parser.error("need --rounds, --tasks, --steps >= 1 and --sequence >= 3")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="noetl-bench-paths-") as name:
        folder = Path(name)
        bench = Bench(args, folder)
        clock = StepClock()
        node = Node(state_dir=folder / "inproc", observers=[clock])
        try:
            node.start()
            with spawned([*CLI, "server", "--state-dir", str(folder / "server")],
                         SERVER_UP, folder / "server.log") as (server, url), \
                 spawned([*CLI, "node", "start", "--name", "bench", "--nats", url],
                         NODE_UP, folder / "node.log") as (node_pid, _):
                asyncio.run(bench.served(url, (node_pid, nats_server_pid(server)), node, clock))
        except (Failed, LostReply) as error:
            print(f"FAILED: {error}")
            return 1
        finally:
            node.stop()
    line = print_report(bench)
    print(f"whole run {time.perf_counter() - began:.1f} s")
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
