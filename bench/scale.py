"""Scale: validation of a big playbook, many waiting steps on one node, a burst of submits.

Run it as a plain script (not under pytest), from the repository root::

    python bench/scale.py [--tasks N] [--sleep S] [--workflows N] [--only PART ...]

Three parts, each against its target (issue 14, item 4):

- ``validate``: `parse_playbook` (what `noetl validate`, `noetl run` and a
  submit do) of a playbook of `--tasks` (10,000) parallel tasks of one
  `sleep` step, in this process (best of 3), and `noetl validate FILE` as a
  user runs it (wall time, interpreter start included). Target: under 1 s.
- ``sleep``: that playbook (`sleep` of `--sleep`, 5 s) submitted to a
  `noetl node start` process (its own embedded nats-server), and run with
  `noetl run --json`: the wall time from submit to the workflow's end, the
  step start spread and longest queueing from its record, and the peak
  resident memory of the node's (the run's) process from /proc (VmHWM).
  Target: under 1 GiB, and done within 2x the sleep plus the start-up.
- ``burst``: `--workflows` (1,000) workflows of one `echo` step submitted at
  once by as many clients, each on its own NATS connection with the
  default 5 s request timeout (as `noetl submit` is), to one node; then
  waited for. Target: every submit answered and every workflow succeeded.

The last line is machine-readable::

    scale_validate_s=<x> scale_validate_cli_s=<x> scale_sleep_tasks=<n> scale_sleep_s=<x>
    scale_sleep_rss_mib=<x> scale_run_s=<x> scale_run_rss_mib=<x> scale_burst_workflows=<n>
    scale_burst_submitted=<n> scale_burst_succeeded=<n> scale_burst_s=<x>

The exit status is 1 if a part missed its target. `main(argv)` is what
`bench/steps.py --scale` calls.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from noetl_actors.bridge import ConnectOptions
from noetl_actors.client import Client
from noetl_actors.errors import NoetlError

UP = re.compile(r"^node \S+ is up on (nats://\S+) ")
GIB = 1024 ** 3
VALIDATE_TARGET = 1.0
"""Seconds: validation of the 10,000-task playbook."""


def sleep_playbook(tasks: int, seconds: float) -> str:
    lines = ["apiVersion: noetl.io/v1", "kind: Playbook", f"name: sleep{tasks}", "tasks:"]
    for i in range(tasks):
        lines.append(f"  - name: t{i}")
        lines.append(f"    steps: [{{name: s, plugin: sleep, with: {{seconds: {seconds}}}}}]")
    return "\n".join(lines) + "\n"


ECHO_PLAYBOOK = """\
apiVersion: noetl.io/v1
kind: Playbook
name: one-echo
tasks:
  - name: t
    steps: [{name: e, plugin: echo, with: {msg: hi}}]
"""


def peak_rss(pid: int) -> int:
    """The process's peak resident memory in bytes, from /proc (VmHWM); 0 if gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


# -- validate -------------------------------------------------------------------------------


def measure_validate(path: Path, text: str) -> tuple[float, float]:
    """(best in-process parse of 3, `noetl validate` wall time) in seconds."""
    from noetl_actors.playbook import Catalog, parse_playbook

    catalog = Catalog.default()
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        parse_playbook(text, str(path), catalog=catalog)
        best = min(best, time.perf_counter() - start)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "noetl_actors.cli", "validate", str(path)],
                          capture_output=True, text=True, check=False)
    cli = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"noetl validate failed:\n{done.stderr}")
    return best, cli


# -- a node ---------------------------------------------------------------------------------


class NodeProcess:
    """`noetl node start` on its own embedded nats-server, in a temporary folder."""

    def __init__(self, folder: Path, name: str) -> None:
        self.log = folder / f"{name}.log"
        command = [sys.executable, "-m", "noetl_actors.cli", "node", "start", "--name", name,
                   "--state-dir", str(folder / f"{name}-state")]
        with self.log.open("w") as stderr:
            self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr,
                                         text=True)
        assert self.proc.stdout is not None
        match = UP.match(self.proc.stdout.readline())
        if match is None:
            self.stop()
            raise SystemExit(f"the node did not start:\n{self.log.read_text()}")
        self.url = match.group(1)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def summary(record: dict[str, Any]) -> dict[str, float]:
    if record.get("status") != "succeeded":
        print(f"  {record.get('workflow_id')}: {record.get('status')}: "
              f"{(record.get('error') or {}).get('reason', '')[:300]}")
    steps = [step for task in record["tasks"].values() for step in task["steps"].values()]
    starts = [s["started_at"] for s in steps if s.get("started_at")]
    queued = [s["queued"] for s in steps if isinstance(s.get("queued"), (int, float))]
    return {"took": (record["finished_at"] or time.time()) - record["started_at"],
            "spread": max(starts) - min(starts) if starts else float("nan"),
            "queued": max(queued) if queued else float("nan")}


async def submit_and_wait(url: str, text: str, timeout: float) -> tuple[dict[str, Any], float]:
    async with Client(ConnectOptions(servers=(url,)), timeout=120) as client:
        start = time.monotonic()
        reply = await client.submit(text, file="sleep.yaml")
        record = await client.wait(reply["workflow_id"], timeout=timeout, poll=0.5)
        return record, time.monotonic() - start


def measure_sleep_node(folder: Path, text: str, timeout: float) -> dict[str, float]:
    node = NodeProcess(folder, "scale")
    try:
        record, wall = asyncio.run(submit_and_wait(node.url, text, timeout))
        rss = peak_rss(node.proc.pid)
    finally:
        node.stop()
    return {"status_ok": float(record["status"] == "succeeded"), "wall": wall, "rss": rss,
            **summary(record)}


def measure_sleep_run(path: Path, timeout: float) -> dict[str, float]:
    """`noetl run --json FILE`: its wall time, and its peak RSS polled from /proc."""
    start = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "noetl_actors.cli", "run", "--json",
                             str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    rss = 0
    out: list[str] = []
    reader = threading.Thread(target=lambda: out.append(proc.stdout.read()), daemon=True)
    reader.start()
    while proc.poll() is None:
        rss = max(rss, peak_rss(proc.pid))
        if time.monotonic() - start > timeout:
            proc.kill()
        time.sleep(0.2)
    reader.join(10)
    wall = time.monotonic() - start
    record = json.loads(out[0]) if out and out[0] else {"status": "?", "tasks": {},
                                                          "started_at": 0, "finished_at": 0}
    return {"status_ok": float(record["status"] == "succeeded"), "wall": wall, "rss": rss,
            **(summary(record) if record["tasks"] else {})}


# -- burst ----------------------------------------------------------------------------------


async def burst(url: str, workflows: int, timeout: float) -> tuple[int, int, float, list[str]]:
    """Every submit from a client of its own, at once; then wait for every workflow."""
    start = time.monotonic()
    errors: list[str] = []

    async def one() -> str | None:
        try:
            async with Client(ConnectOptions(servers=(url,))) as client:  # timeout 5 s
                reply = await client.submit(ECHO_PLAYBOOK, file="one-echo.yaml")
                return str(reply["workflow_id"])
        except (TimeoutError, NoetlError, OSError) as error:
            errors.append(f"{type(error).__name__}: {error}")
            return None

    ids = [i for i in await asyncio.gather(*(one() for _ in range(workflows))) if i]
    succeeded = 0
    async with Client(ConnectOptions(servers=(url,)), timeout=60) as client:
        for workflow_id in ids:
            record = await client.wait(workflow_id, timeout=timeout, poll=0.2)
            succeeded += record["status"] == "succeeded"
    return len(ids), succeeded, time.monotonic() - start, errors


def measure_burst(folder: Path, workflows: int, timeout: float) -> tuple[int, int, float]:
    node = NodeProcess(folder, "burst")
    try:
        submitted, succeeded, took, errors = asyncio.run(burst(node.url, workflows, timeout))
    finally:
        node.stop()
    for error in sorted(set(errors))[:5]:
        print(f"  {errors.count(error)} x {error}")
    return submitted, succeeded, took


# -- main -----------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run the parts asked for, print each against its target; 1 if one missed it."""
    parser = argparse.ArgumentParser(prog="bench/scale.py", description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--sleep", type=float, default=5.0, help="seconds each step sleeps")
    parser.add_argument("--workflows", type=int, default=1_000)
    parser.add_argument("--timeout", type=float, default=600.0,
                        help="seconds a part may wait for its workflows")
    parser.add_argument("--only", nargs="+", choices=("validate", "sleep", "run", "burst"),
                        help="run only these parts (default: all)")
    args = parser.parse_args(argv)
    parts = set(args.only or ("validate", "sleep", "run", "burst"))
    figures: dict[str, Any] = {}
    missed: list[str] = []
    print(f"bench/scale.py on {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        text = sleep_playbook(args.tasks, args.sleep)
        path = folder / f"sleep{args.tasks}.yaml"
        path.write_text(text)
        if "validate" in parts:
            best, cli = measure_validate(path, text)
            figures |= {"validate_s": f"{best:.2f}", "validate_cli_s": f"{cli:.2f}"}
            print(f"validate {args.tasks} tasks: {best:.2f}s in process, {cli:.2f}s "
                  f"`noetl validate` (target < {VALIDATE_TARGET:g}s; before: 7-12s)")
            if best >= VALIDATE_TARGET:
                missed.append("validate")
        bound = 2 * args.sleep
        for part, measure in (("sleep", lambda: measure_sleep_node(folder, text, args.timeout)),
                              ("run", lambda: measure_sleep_run(path, args.timeout))):
            if part not in parts:
                continue
            got = measure()
            what = "node start + submit" if part == "sleep" else "noetl run"
            figures |= {f"{part}_tasks" if part == "sleep" else "run_tasks": args.tasks,
                        f"{part}_s": f"{got['wall']:.1f}",
                        f"{part}_rss_mib": f"{got['rss'] / 2**20:.0f}"}
            print(f"{what}: {args.tasks} tasks of sleep {args.sleep:g}s: "
                  f"{'succeeded' if got['status_ok'] else 'NOT succeeded'} in {got['wall']:.1f}s "
                  f"(workflow {got.get('took', float('nan')):.1f}s, starts spread over "
                  f"{got.get('spread', float('nan')):.1f}s, longest queued "
                  f"{got.get('queued', float('nan')):.1f}s), peak RSS "
                  f"{got['rss'] / 2**20:.0f} MiB (targets: < 1024 MiB, workflow < "
                  f"{bound:g}s + start-up; before: 2,000 tasks took 317s)")
            if not got["status_ok"] or got["rss"] >= GIB or got.get("took", 1e9) > bound + 5:
                missed.append(part)
        if "burst" in parts:
            submitted, succeeded, took = measure_burst(folder, args.workflows, args.timeout)
            figures |= {"burst_workflows": args.workflows, "burst_submitted": submitted,
                        "burst_succeeded": succeeded, "burst_s": f"{took:.1f}"}
            print(f"burst: {args.workflows} clients submit at once: {submitted} answered, "
                  f"{succeeded} succeeded, all done in {took:.1f}s (target: all; before: "
                  f"500 clients timed out)")
            if succeeded != args.workflows:
                missed.append("burst")
    print(" ".join(f"scale_{key}={value}" for key, value in figures.items()))
    if missed:
        print(f"missed: {', '.join(missed)}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
