"""The fault suite's run: submit the workflows, make the four kills in turn, wait for the end.

`Run` polls `noetl list` about once a second (noting the processes'
children each time, see `Processes.remember`) and prints a progress line
to stderr every 5 s and at each kill. A kill is made only while at least
`MIN_RUNNING` workflows run and the deadline is not past; otherwise it is
*skipped*, and the run says so.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from _faults_cluster import Cluster
from _faults_playbooks import SHAPES, playbook
from _faults_verdict import clock, read_lines
from _faults_watch import Watch

ENDED = {"succeeded", "failed", "cancelled", "orphaned"}
MIN_RUNNING = 10
"""A kill is worth making only while at least this many workflows run."""


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


@dataclass
class Run:
    """One run of the suite: its options, cluster, workflows and what was killed."""

    args: argparse.Namespace
    cluster: Cluster
    watch: Watch
    began: float = field(default_factory=time.monotonic)
    shapes: dict[str, str] = field(default_factory=dict)
    """Workflow id -> its shape."""
    expected_attempts: int = 0
    """Attempts the workflows begin in a run without faults."""
    listed: dict[str, dict[str, Any]] = field(default_factory=dict)
    """The latest `noetl list` of the suite's workflows."""
    kills: list[tuple[float, str]] = field(default_factory=list)
    """(wall time, fault) of each kill made."""
    skipped: list[str] = field(default_factory=list)
    owner: str | None = None
    """The node killed as the owner of the most running workflows."""
    owner_killed_at: float = 0.0
    owned: list[str] = field(default_factory=list)
    """The running workflows it owned when it was killed."""

    def now(self) -> float:
        return time.monotonic() - self.began

    def left(self) -> float:
        return float(self.args.deadline) - self.now()

    def running(self) -> list[str]:
        return [wf for wf in self.shapes if self.listed.get(wf, {}).get("status") not in ENDED]

    async def poll(self) -> None:
        """Read `noetl list` (kept if a node answered) and note the processes' children."""
        self.cluster.procs.remember()
        found = await self.watch.workflows()
        if found is not None:
            self.listed = {wf: found[wf] for wf in self.shapes if wf in found}

    def progress(self, what: str = "") -> None:
        counts = Counter(self.listed.get(wf, {}).get("status", "unlisted") for wf in self.shapes)
        begun = len(read_lines(self.cluster.lines))
        log(f"[{self.now():6.1f}s {clock(time.time())}] "
            f"{' '.join(f'{k}={v}' for k, v in sorted(counts.items()))} "
            f"attempts_begun={begun}{'  ' + what if what else ''}")

    async def wait(self, seconds: float) -> None:
        """Poll for `seconds` (not past the deadline), with a progress line every 5 s."""
        until = min(self.now() + seconds, self.args.deadline)
        last = self.now()
        while self.now() < until:
            await self.poll()
            if self.now() - last >= 5:
                self.progress()
                last = self.now()
            await asyncio.sleep(1.0)

    def ready(self, fault: str) -> bool:
        """Whether `fault` is worth making now: time left, and enough workflows running."""
        if self.left() > 0 and len(self.running()) >= MIN_RUNNING:
            return True
        self.skipped.append(f"{fault} (at {self.now():.0f}s: {len(self.running())} running, "
                            f"{self.left():.0f}s left)")
        self.progress(f"SKIPPED {self.skipped[-1]}")
        return False

    def killed(self, fault: str, at: float, what: str) -> None:
        """Note the kill of `fault` made at wall time `at`."""
        self.kills.append((at, fault))
        self.progress(f"KILLED {fault} at {clock(at)}: {what}")

    def fault_before(self, at: float) -> str:
        """The last kill before wall time `at`, and how long before."""
        before = [(when, fault) for when, fault in self.kills if when <= at]
        if not before:
            return "before any kill"
        when, fault = before[-1]
        return f"{at - when:.1f}s after the kill of the {fault}"


async def submit_all(run: Run) -> None:
    """Submit `--workflows` playbooks, the four shapes in turn, through the command API."""
    shapes = {shape: playbook(shape, run.cluster.lines, run.args.pause) for shape in SHAPES}
    for n in range(run.args.workflows):
        shape = shapes[SHAPES[n % len(SHAPES)]]
        run.shapes[await run.watch.submit(shape.text, f"{shape.shape}.yaml")] = shape.shape
        run.expected_attempts += shape.attempts
    made = Counter(run.shapes.values())
    run.progress(f"submitted {len(run.shapes)} workflows "
                 f"({', '.join(f'{s}: {n}' for s, n in made.items())}); a run without faults "
                 f"begins {run.expected_attempts} attempts")


async def make_faults(run: Run) -> None:
    """The four kills, `--spacing` seconds apart (the owner's: once its workflows moved)."""
    cluster, spacing = run.cluster, run.args.spacing
    await run.wait(spacing)
    if run.ready("plugin subprocess"):
        for _ in range(20):
            at, done = time.time(), cluster.kill_plugin()
            if done is not None:
                run.killed("plugin subprocess", at, done)
                break
            await run.wait(1.0)
        else:
            run.skipped.append("plugin subprocess (no step's sh ran for 20 s)")
    await run.wait(spacing)
    if run.ready("noetl worker"):
        at = time.time()
        run.killed("noetl worker", at, cluster.kill_worker())
    await run.wait(spacing)
    if run.ready("owner node"):
        await run.poll()
        owners = Counter(run.listed[wf]["node"] for wf in run.running() if wf in run.listed)
        run.owner = max(cluster.live_nodes(), key=lambda name: owners.get(name, 0))
        run.owned = [wf for wf in run.running() if run.listed[wf]["node"] == run.owner]
        run.owner_killed_at = time.time()
        cluster.kill_node(run.owner)
        run.killed("owner node", run.owner_killed_at,
                   f"node {run.owner}, owner of {len(run.owned)} running workflows "
                   f"(owners: {dict(owners)}); not started again")
        await wait_moved(run)
    await run.wait(spacing)
    if run.ready("NATS server"):
        at = time.time()
        run.killed("NATS server", at, cluster.kill_nats(run.args.nats_down))


async def wait_moved(run: Run) -> None:
    """Until no running workflow is listed on the killed owner (at most 3 leases + 30 s)."""
    until = min(run.now() + 3 * run.args.lease + 30, run.args.deadline)
    left = run.owned
    while run.now() < until:
        await run.wait(1.0)
        left = [wf for wf in run.running() if run.listed.get(wf, {}).get("node") == run.owner]
        if not left:
            run.progress(f"no running workflow left on {run.owner} "
                         f"{time.time() - run.owner_killed_at:.1f}s after its kill")
            return
    run.progress(f"still listed on {run.owner}: {', '.join(left)}")


async def wait_all(run: Run) -> None:
    """Until every workflow ended, or the deadline."""
    while run.running() and run.left() > 0:
        await run.wait(min(5.0, run.left()))
    await run.poll()
    run.progress("all ended" if not run.running() else
                 f"DEADLINE: {len(run.running())} workflows still running")
