"""The fault suite: 100 workflows on 3 nodes and one NATS while processes are killed.

Run it as a plain script (not under pytest), from the repository root::

    python bench/faults.py [--workflows N] [--lease S] [--heartbeat S] [--spacing S]
                           [--pause S] [--nats-down S] [--deadline S] [--keep]

It starts ``noetl server`` (a free loopback port, its store in a temporary
folder), 3 ``noetl node start --nats`` processes (``n1``..``n3``: a config of
``heartbeat:`` and ``lease:`` from the options, workers for every plugin)
and a ``noetl worker --plugin shell``, then submits `--workflows` playbooks
of four shapes in turn (bench/_faults_playbooks.py: fan-out, a long
sequence, flaky steps, a one_for_all task) through the command API. While
they run it kills, `--spacing` seconds apart:

1. a plugin subprocess: the ``sh`` of a running step under the worker
   (kill -9; its attempt fails, and its task restarts it);
2. the ``noetl worker`` (kill -9), and starts a new one;
3. the node that owns the most running workflows (kill -9; it is not
   started again: the two others must take its workflows over);
4. once those moved (or after 3 leases), the NATS server: kill -9 of the
   real ``nats-server`` and of its ``noetl server``, then ``noetl server``
   again on the same port and store after `--nats-down` seconds.

Then it waits for every workflow to end, at most until `--deadline` seconds
after the start, and judges (bench/_faults_verdict.py) from the records
(``noetl status --json``), the histories (what ``noetl events --json``
prints) and the lines every step appends when it begins. Progress goes to
stderr; the one result line (here folded) to stdout::

    workflows=100 succeeded=… lost=… done_steps_rerun=… attempts_run_twice=…
    takeover_p50_s=… takeover_max_s=…

``lost`` is every workflow that did not succeed (each playbook succeeds
under every fault of the suite within its restart limits). The exit status
is 1 when a workflow was lost or a done step ran again (stderr says which,
with its history), 2 when a kill could not be made (too few workflows still
ran) or the cluster did not start, 130 on Ctrl-C or SIGTERM. Every process
it started is stopped at the end, however it ends; the work folder (logs of
every process, the lines, the records and histories read) is removed unless
the run failed or ``--keep`` is given.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import shutil
import signal
import sys
import tempfile
from collections import Counter
from pathlib import Path
from types import FrameType

import nats.errors
from _faults_cluster import Cluster
from _faults_procs import Processes
from _faults_run import Run, log, make_faults, submit_all, wait_all
from _faults_verdict import (
    describe_step,
    read_lines,
    rerun_cause,
    reruns,
    run_twice,
    takeovers,
)
from _faults_watch import Watch, read_histories

from noetl_actors.errors import NoetlError

NODES = 3


async def judge(run: Run) -> int:
    """Read records and histories, print the diagnosis and the result line; the exit status."""
    folder = run.cluster.folder
    records = {wf: await run.watch.record(wf) for wf in run.shapes}
    try:
        histories = await read_histories(run.cluster.url, run.shapes)
    except (TimeoutError, OSError, nats.errors.Error) as error:
        raise RuntimeError(f"could not read the histories from {run.cluster.url}: "
                           f"{error!r}") from None
    (folder / "records.json").write_text(json.dumps(records, indent=1))
    (folder / "histories.json").write_text(json.dumps(histories, indent=1))
    lines = read_lines(run.cluster.lines)
    twice, again = run_twice(lines), reruns(lines, histories)
    lost = {wf: r for wf, r in records.items() if r is None or r.get("status") != "succeeded"}
    moved = takeovers(histories, run.owner, run.owner_killed_at, run.owned)

    log(f"attempts begun: {len(lines)} (a run without faults: {run.expected_attempts}); "
        f"kills skipped: {run.skipped or 'none'}")
    bound = run.args.lease * 4 / 3
    late = [s for s in moved.seconds if s > bound]
    ended = [wf for wf in moved.stayed
             if ((records[wf] or {}).get("finished_at") or math.inf) <= run.owner_killed_at]
    log(f"takeovers from {run.owner}: {len(moved.seconds)} of {len(run.owned)} moved, "
        f"{len(late)} later than lease + lease/3 = {bound:.2f}s after the kill (seconds: "
        f"{', '.join(f'{s:.1f}' for s in sorted(moved.seconds))}); ended before the kill: "
        f"{len(ended)}; NEVER MOVED: {sorted(set(moved.stayed) - set(ended)) or 'none'}")
    for wf, move in moved.other:
        log(f"UNEXPECTED MOVE {wf} ({run.shapes[wf]}): {move.get('detail')}")
    for wf, record in lost.items():
        reason = ((record or {}).get("error") or {}).get("reason", "still running at the end")
        state = "no record" if record is None else \
            f"{record.get('status')} on {record.get('node')}"
        log(f"LOST {wf} ({run.shapes[wf]}): {state}: {reason}")
    causes: Counter[str] = Counter()
    for rerun in again:
        history = histories.get(rerun.workflow, [])
        why, at = rerun_cause(history, rerun)
        near = run.fault_before(at) if at is not None else "no exit recorded"
        causes[near.split(" kill of the ")[-1]] += 1
        log(f"RERUN {rerun.workflow} ({run.shapes[rerun.workflow]}) {rerun.step}: attempt "
            f"{rerun.succeeded} had succeeded, then attempts {rerun.again} began; {why}; "
            f"{near}")
        for line in describe_step(history, rerun.step):
            log(f"    {line}")
    if causes:
        log(f"done steps rerun, by the last kill before the exit that led to it: {dict(causes)}")
    for wf, step, attempt in twice:
        log(f"RUN TWICE {wf} ({run.shapes.get(wf)}) {step} attempt {attempt}")
    print(f"workflows={len(run.shapes)} succeeded={len(run.shapes) - len(lost)} "
          f"lost={len(lost)} done_steps_rerun={len(again)} attempts_run_twice={len(twice)} "
          f"takeover_p50_s={moved.p50():.2f} takeover_max_s={moved.max():.2f}", flush=True)
    if lost or again:
        log(f"FAILED: {len(lost)} workflows lost, {len(again)} done steps ran again")
        return 1
    if run.skipped:
        log(f"INCOMPLETE: {len(run.skipped)} kills were not made: {run.skipped}")
        return 2
    return 0


async def main_async(args: argparse.Namespace, procs: Processes, folder: Path) -> int:
    config = folder / "node.yaml"
    config.write_text(f"heartbeat: {args.heartbeat:g}s\nlease: {args.lease:g}s\n")
    cluster = Cluster(procs, folder, config, folder / "lines.txt")
    log(f"fault suite in {folder}: {NODES} nodes (config: heartbeat {args.heartbeat:g}s, "
        f"lease {args.lease:g}s; workers for every plugin), one noetl worker --plugin shell")
    cluster.start_server()
    cluster.start_nodes(NODES)
    cluster.start_worker()
    log(f"cluster up on {cluster.url}")
    async with Watch(cluster.url) as watch:
        run = Run(args, cluster, watch)
        await submit_all(run)
        await make_faults(run)
        await wait_all(run)
        return await judge(run)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--workflows", type=int, default=100)
    parser.add_argument("--lease", type=float, default=5.0, help="the nodes' lease: (s)")
    parser.add_argument("--heartbeat", type=float, default=1.0, help="the nodes' heartbeat: (s)")
    parser.add_argument("--spacing", type=float, default=10.0, help="seconds between kills")
    parser.add_argument("--pause", type=float, default=0.5, help="each step's sleep (s)")
    parser.add_argument("--nats-down", type=float, default=3.0,
                        help="seconds from the NATS kill to its restart")
    parser.add_argument("--deadline", type=float, default=600.0,
                        help="seconds after which unfinished workflows are lost")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args()
    for name in ("workflows", "lease", "heartbeat"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name} must be more than 0 (got {getattr(args, name)})")
    for name in ("spacing", "pause", "nats_down", "deadline"):
        if getattr(args, name) < 0:
            parser.error(f"--{name.replace('_', '-')} must be 0 or more "
                         f"(got {getattr(args, name)})")
    return args


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main() -> None:
    args = parse_args()
    for signum in (signal.SIGINT, signal.SIGTERM):  # SIGINT too: ignored in a background job
        signal.signal(signum, _interrupt)
    folder = Path(tempfile.mkdtemp(prefix="noetl-faults-"))
    status = 2
    try:
        with Processes(folder) as procs:
            status = asyncio.run(main_async(args, procs, folder))
    except (RuntimeError, NoetlError) as error:  # the cluster did not start or answer
        log(f"faults: {error}")
    except KeyboardInterrupt:
        log("interrupted: every process started is stopped")
        status = 130
    finally:
        if status == 0 and not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
        else:
            log(f"logs, lines, records and histories kept in {folder}")
    sys.exit(status)


if __name__ == "__main__":
    main()
