"""Steps on the path a cluster runs: a `noetl node start` process, fed through the API.

Run it as a plain script (not under pytest)::

    python bench/node_path.py [--rounds N] [--tasks N] [--steps N] [--sequence N]

It starts `noetl node start` (its embedded nats-server, a temporary state
dir) as a subprocess and submits, through the command API (`noetl submit`'s
client), A: one workflow of `--tasks` (50) parallel tasks of `--steps` (10)
`echo` steps, and B: one workflow of one task of `--sequence` (200) steps.
A workflow's time is what its record says: `finished_at - started_at`. So
every step takes the served node's whole path: its lease, the claim in the
`noetl-claims` bucket, the worker's lease check, the records.

In the same run, on the node's server, the raw baseline: nats-py
request/reply at one in flight (p50), measured before and after the
workloads. Figures are medians over `--rounds` (3) after a warm-up round.
Then the same playbooks with `noetl run FILE --json` (bench/paths.py's
`run_path`), for the ratio. The last line is machine-readable::

    node_fanout_steps_per_s=<x> node_seq_ms_per_step=<x> raw_rt_p50_ms=<x>
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nats
from _login import login
from nats.aio.msg import Msg

from noetl_actors.bridge import ConnectOptions
from noetl_actors.client import Client

UP = re.compile(r"^node \S+ is up on (nats://\S+) ")


def playbook(name: str, tasks: int, steps: int) -> str:
    lines = [f"apiVersion: noetl.io/v1\nkind: Playbook\nname: {name}\ntasks:"]
    for t in range(tasks):
        lines.append(f"  - name: t{t}\n    steps:")
        lines += [f"      - name: s{s}\n        plugin: echo\n        with: {{msg: {s}}}"
                  for s in range(steps)]
    return "\n".join(lines) + "\n"


async def raw_p50_ms(url: str, count: int = 500) -> float:
    connection = await nats.connect(url, **login(url))
    try:
        async def answer(message: Msg) -> None:
            await message.respond(message.data)

        await connection.subscribe("bench.raw", cb=answer)
        await connection.flush()
        times = []
        for _ in range(count):
            start = time.perf_counter()
            await connection.request("bench.raw", b"x", timeout=5)
            times.append(time.perf_counter() - start)
        return statistics.median(times) * 1e3
    finally:
        await connection.close()


async def run_once(client: Client, text: str) -> float:
    started = await client.submit(text, file="bench.yaml")
    record = await client.wait(started["workflow_id"], timeout=300)
    if record["status"] != "succeeded":
        raise SystemExit(f"a workflow did not succeed: {record.get('error')}")
    return float(record["finished_at"]) - float(record["started_at"])


def noetl_run(args: argparse.Namespace) -> tuple[list[float], list[float]]:
    """A and B with `noetl run FILE --json` (bench/paths.py), after a warm-up run."""
    from paths import run_path  # a sibling script: bench/ is on sys.path

    a, b = [], []
    with tempfile.TemporaryDirectory() as folder:
        fanout, sequence = Path(folder) / "fanout.yaml", Path(folder) / "sequence.yaml"
        fanout.write_text(playbook("fanout", args.tasks, args.steps))
        sequence.write_text(playbook("sequence", 1, args.sequence))
        run_path(fanout)
        for _ in range(args.rounds):
            a.append(args.tasks * args.steps / run_path(fanout))
            b.append(run_path(sequence) / args.sequence * 1e3)
    return a, b


async def measure(url: str, args: argparse.Namespace) -> None:
    fanout = playbook("fanout", args.tasks, args.steps)
    sequence = playbook("sequence", 1, args.sequence)
    raw_before = await raw_p50_ms(url)
    a, b = [], []
    async with Client(ConnectOptions(servers=(url,)), timeout=30) as client:
        await run_once(client, fanout)
        await run_once(client, sequence)  # warm-up
        for _ in range(args.rounds):
            a.append(args.tasks * args.steps / await run_once(client, fanout))
            b.append(await run_once(client, sequence) / args.sequence * 1e3)
    raw_after = await raw_p50_ms(url)
    run_a, run_b = noetl_run(args)
    raw = (raw_before + raw_after) / 2
    print(f"A  {args.tasks} tasks x {args.steps} steps : {statistics.median(a):8.0f} steps/s"
          f"   (rounds: {', '.join(f'{x:.0f}' for x in a)})")
    print(f"B  1 task x {args.sequence} steps     : {statistics.median(b):8.2f} ms/step"
          f"   (rounds: {', '.join(f'{x:.2f}' for x in b)})")
    print(f"noetl run (subprocess, its report's times): A {statistics.median(run_a):.0f} "
          f"steps/s, B {statistics.median(run_b):.2f} ms/step; node / run: A x"
          f"{statistics.median(run_a) / statistics.median(a):.2f}, B x"
          f"{statistics.median(b) / statistics.median(run_b):.2f}")
    print(f"raw request/reply p50: {raw_before:.3f} ms before, {raw_after:.3f} ms after;"
          f" B / raw = x{statistics.median(b) / raw:.1f}")
    print(f"node_fanout_steps_per_s={statistics.median(a):.0f} "
          f"node_seq_ms_per_step={statistics.median(b):.3f} raw_rt_p50_ms={raw:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=50)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--sequence", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        node = subprocess.Popen(
            [sys.executable, "-m", "noetl_actors.cli", "node", "start", "--name", "bench",
             "--state-dir", str(Path(folder) / "state")],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            assert node.stdout is not None
            match = UP.match(node.stdout.readline())
            if match is None:
                raise SystemExit("the node did not start")
            asyncio.run(measure(match.group(1), args))
        finally:
            node.terminate()
            node.wait(60)


if __name__ == "__main__":
    main()
