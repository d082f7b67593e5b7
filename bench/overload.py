"""Many small workflows submitted at once to one node: do they all succeed?

Run it as a plain script (not under pytest)::

    python bench/overload.py [--workflows N] [--steps N] [--config FILE] [--timeout S]

It starts `noetl node start` (its embedded nats-server, a temporary state
dir; `--config` merged over supervisors/node.yaml) as a subprocess, submits
`--workflows` (500) workflows of one task of `--steps` (2) `echo` steps all
at once through the command API (`noetl submit`'s client), then waits for
every record to end, polling each as `noetl submit --wait` does. It prints
how many succeeded, the distinct errors of the others with their counts,
how many attempts crashed (a step that took a busy worker's silence for a
lost one, say), the time from the first submit to the last end, and the
node's warnings. The last line is machine-readable (one line)::

    overload_workflows=<n> overload_succeeded=<n> overload_crashed_steps=<n>
    overload_steps_again=<n> overload_seconds=<x>

`crashed_steps` counts the attempts the node's log says crashed,
`steps_again` the steps whose record shows more than one attempt. The exit
status is 1 unless every workflow succeeded. A busy box is part of the
test: bench/README.md says how its figures were taken.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from noetl_actors.bridge import ConnectOptions
from noetl_actors.client import Client
from noetl_actors.errors import BridgeTimeout

UP = re.compile(r"^node \S+ is up on (nats://\S+) ")


def playbook(steps: int) -> str:
    body = "".join(f"      - name: e{s}\n        plugin: echo\n        with: {{msg: {s}}}\n"
                   for s in range(1, steps + 1))
    return (f"apiVersion: noetl.io/v1\nkind: Playbook\nname: small\n"
            f"tasks:\n  - name: t\n    steps:\n{body}")


async def submit_all(url: str, args: argparse.Namespace) -> tuple[int, int, float]:
    text = playbook(args.steps)
    async with Client(ConnectOptions(servers=(url,)), timeout=120) as client:
        start = time.monotonic()
        started = await asyncio.gather(*(client.submit(text, file="small.yaml")
                                         for _ in range(args.workflows)))
        submitted = time.monotonic() - start
        ids = [reply["workflow_id"] for reply in started]
        records: dict[str, dict] = {}

        async def wait(workflow_id: str) -> None:
            try:  # as `noetl submit --wait` does: its status every 0.2 s
                records[workflow_id] = await client.wait(workflow_id, timeout=args.timeout)
            except BridgeTimeout:
                pass

        await asyncio.gather(*(wait(workflow_id) for workflow_id in ids))
        pending = set(ids) - set(records)
        took = time.monotonic() - start
    statuses = collections.Counter(r["status"] for r in records.values())
    again = sum(1 for r in records.values() for task in r["tasks"].values()
                for step in task["steps"].values() if step["attempts"] > 1)
    errors = collections.Counter(
        (r.get("error") or {}).get("reason", "?") for r in records.values()
        if r["status"] != "succeeded")
    print(f"{args.workflows} workflows of {args.steps} echo steps: submitted in "
          f"{submitted:.1f}s, all ended in {took:.1f}s; {dict(statuses)}; "
          f"{len(pending)} still running; {again} steps needed more than one attempt")
    for reason, count in errors.most_common(5):
        print(f"  {count} x {reason}")
    return statuses.get("succeeded", 0), again, took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workflows", type=int, default=500)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=300.0,
                        help="seconds to wait for every workflow to end")
    parser.add_argument("--config", help="a node config file (merged over node.yaml)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        command = [sys.executable, "-m", "noetl_actors.cli", "node", "start", "--name",
                   "overload", "--state-dir", str(Path(folder) / "state")]
        if args.config:
            command += ["--config", args.config]
        log = Path(folder) / "node.log"
        with log.open("w") as stderr:
            node = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, text=True)
        try:
            assert node.stdout is not None
            match = UP.match(node.stdout.readline())
            if match is None:
                raise SystemExit(f"the node did not start:\n{log.read_text()}")
            succeeded, again, took = asyncio.run(submit_all(match.group(1), args))
        finally:
            node.terminate()
            node.wait(60)
        warnings = [line for line in log.read_text().splitlines() if "WARNING" in line]
        crashed = sum(1 for line in warnings if " crashed: " in line)
        print(f"node log: {len(warnings)} warnings, {crashed} of them crashed steps; "
              f"the first ones:")
        for line in warnings[:5]:
            print(f"  {line[:300]}")
    print(f"overload_workflows={args.workflows} overload_succeeded={succeeded} "
          f"overload_crashed_steps={crashed} overload_steps_again={again} "
          f"overload_seconds={took:.1f}")
    if succeeded != args.workflows:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
