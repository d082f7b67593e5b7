"""Where a step's time goes: B's latency stage by stage, and CPU per thread.

Run it as a plain script (not under pytest)::

    python bench/stages.py [--runs N]

It starts a `Node` as bench/steps.py does and runs its workloads `--runs`
times each (after a warm-up), then prints two tables:

- **B, stage by stage**: `perf_counter()` is stamped as a step's command is
  built, as the bridge writes to the socket, as the worker has a command and
  hands its event over, as the router has the event and as the step has it;
  each stage is the median time from one stamp to the next over every step.
  The stamps come from wrappers put around those methods for this script
  only (they cost a few microseconds each, which the figures include).
- **CPU per thread**, A and B: user + system time per step of each
  long-lived thread of this process (`/proc/self/task`, 10 ms resolution);
  threads that ended meanwhile are the process's total less the others
  (the workflows run on the NATS loop's thread, so that is little).

Figures are for reading where the time goes, not for comparing with other
machines: bench/steps.py is the benchmark, with its raw baselines.
"""

from __future__ import annotations

import argparse
import collections
import itertools
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from nats.aio import transport
from steps import StepClock, cpu_seconds, playbook, run_workflow

from noetl_actors.runtime import _remote, _router
from noetl_actors.services import Node, _worker

STAGES = [
    ("begin", "the step begins -> its command is handed to the bridge"),
    ("send", "-> written to the socket"),
    ("write", "-> the worker has it, runs echo, hands its event over"),
    ("worker send", "-> the event is written to the socket"),
    ("write", "-> the workflow's router has it"),
    ("router", "-> the step has it (its workflow's turn on the loop)"),
    ("step event", "-> the next step begins (exit, the task's turn, start)"),
]
"""Each mark and the stage that ends at the next one, in a step's order."""

marks: list[tuple[str, float]] = []


def stamp(owner: Any, name: str, mark: str) -> None:
    """Wrap `owner.name` so that each call appends (`mark`, now) to `marks` first."""
    original: Callable[..., Any] = getattr(owner, name)

    def stamped(*args: Any, **kwargs: Any) -> Any:
        marks.append((mark, time.perf_counter()))
        return original(*args, **kwargs)

    setattr(owner, name, stamped)


def stamp_the_path() -> None:
    stamp(_remote.RemoteStepActor, "_begin", "begin")
    stamp(_remote.RemoteStepActor, "_send", "send")
    stamp(transport.TcpTransport, "writelines", "write")
    stamp(_worker.PluginWorker, "_send", "worker send")
    stamp(_router.EventRouter, "tell", "router")
    stamp(_remote.RemoteStepActor, "_on_event", "step event")


def stage_table(recorded: Sequence[tuple[str, float]]) -> None:
    order = [mark for mark, _ in STAGES]
    times: dict[int, list[float]] = collections.defaultdict(list)
    position = 0
    for (mark, at), (following, next_at) in itertools.pairwise(recorded):
        # Follow the step's path; a mark out of order (a write of something
        # else) restarts the matching at the stage it belongs to.
        if mark != order[position]:
            if mark not in order:
                continue
            position = order.index(mark)
        if following == order[(position + 1) % len(order)]:
            times[position].append((next_at - at) * 1e6)
            position = (position + 1) % len(order)
    total = 0.0
    print(f"B, stage by stage (p50 us, {min(map(len, times.values()), default=0)}+ steps):")
    for index, (_, what) in enumerate(STAGES):
        p50 = statistics.median(times[index]) if times[index] else float("nan")
        total += p50
        print(f"  {what:<62} {p50:8.1f}")
    print(f"  {'sum':<62} {total:8.1f}")


def thread_cpu() -> dict[int, tuple[str, float]]:
    """CPU seconds so far of each live thread of this process, by native id."""
    names = {thread.native_id: thread.name for thread in threading.enumerate()}
    found = {}
    for tid in os.listdir("/proc/self/task"):
        seconds = cpu_seconds(f"/proc/self/task/{tid}/stat")
        if seconds is not None:  # else it ended meanwhile
            found[int(tid)] = (names.get(int(tid), "?"), seconds)
    return found


def thread_table(name: str, node: Node, clock: StepClock, runs: int, sequence: bool) -> None:
    book = playbook(name, 1, 200) if sequence else playbook(name, 50, 10)
    steps = 200 if sequence else 500
    before, cpu = thread_cpu(), time.process_time()
    for _ in range(runs):
        run_workflow(node, clock, book, sequence=sequence)
    total = (time.process_time() - cpu) / (runs * steps) * 1e6
    per_thread: collections.Counter[str] = collections.Counter()
    for tid, (thread, seconds) in thread_cpu().items():
        per_thread[thread] += seconds - before.get(tid, (thread, 0.0))[1]
    print(f"{'B' if sequence else 'A'}, CPU per step by thread (us):")
    shown = 0.0
    for thread, seconds in per_thread.most_common():
        us = seconds / (runs * steps) * 1e6
        shown += us
        if us >= 1:
            print(f"  {thread:<40} {us:7.0f}")
    print(f"  {'threads that ended (the rest)':<40} {total - shown:7.0f}")
    print(f"  {'process':<40} {total:7.0f}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs of each workload (5)")
    args = parser.parse_args(argv)
    clock = StepClock()
    with tempfile.TemporaryDirectory(prefix="noetl-bench-stages-") as state_dir:
        node = Node(state_dir=Path(state_dir), observers=[clock])
        try:
            node.start()
            sequence = playbook("sequence", 1, 200)
            run_workflow(node, clock, playbook("fanout", 50, 10), sequence=False)
            run_workflow(node, clock, sequence, sequence=True)  # warm-ups
            thread_table("fanout", node, clock, args.runs, sequence=False)
            thread_table("sequence", node, clock, args.runs, sequence=True)
            stamp_the_path()
            for _ in range(args.runs):
                run_workflow(node, clock, sequence, sequence=True)
        finally:
            node.stop()
    stage_table(marks)
    return 0


if __name__ == "__main__":
    sys.exit(main())
