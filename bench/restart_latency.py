"""Restart latency of the supervision kernel, against raw pykka start time.

Run it as a plain script (not under pytest)::

    python bench/restart_latency.py [--samples N] [--switch-interval S] [--gc MODE]

What is measured, in one run:

1. Raw baseline. The time from `pykka.ThreadingActor.start()` of a trivial
   actor until it has answered its first ask. Each actor is stopped after its
   sample (outside the timed part).

2. Restart latency. A root supervisor (strategy one_for_one, intensity set so
   high it never trips) holds N children of class `CrashingChild`, for N in 1,
   100 and 1,000. The issue's "N siblings" is read as N children in total under
   the root, the crashing one included (so N=1 is a lone child); crashes go
   round-robin over all N children, so every child is in turn the one that
   crashes and a sibling of the others. One sample:

   - the benchmark tells the child's stable `Address` "crash"; the child
     stores `time.perf_counter()` in a shared `CrashStamp`, then raises;
   - the benchmark at once asks the same `Address` "ping". The address buffers
     it while the child restarts and hands it to the new incarnation first;
   - the new incarnation answers the ping with its own `perf_counter()`.

   Latency = t(ping handled by the new incarnation) - t(crash). It covers
   the crash teardown, the exit notice to the supervisor, its decision, the
   new actor's construction, thread start and `on_start`, and the delivery of
   the buffered message. Each answer also carries the incarnation's URN, and
   the benchmark checks that it changed, so a sample can't be a ping answered
   by the old incarnation.

The figures are p50, p99 and mean in milliseconds. Python's defaults are
kept unless an option changes them: `--switch-interval` sets
`sys.setswitchinterval()` (default 5 ms) and `--gc` sets how the garbage
collector runs while samples are taken. Both exist to show where the tail
comes from (see bench/README.md). Under the table, one line per sibling count
says how many collections ran while samples were taken, and how many samples,
among all and among those at or above p99, a collection ran into.

The last line printed is machine-readable::

    restart_p50_ms=<x> restart_p99_ms=<x> raw_start_p50_ms=<x> siblings=1000
"""

from __future__ import annotations

import argparse
import functools
import gc
import os
import statistics
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pykka

from noetl_actors.supervision import (
    Address,
    ChildSpec,
    Strategy,
    SupervisedActor,
    SupervisorFlags,
    SupervisorRef,
    start_supervisor,
)

SIBLING_COUNTS = (1, 100, 1000)
DEFAULT_SAMPLES = 1000
DEFAULT_RAW_SAMPLES = 300
WARMUP_RESTARTS = 20
ASK_TIMEOUT = 5.0
"""Seconds to wait for one ping; a ping not answered by then counts as lost."""
GC_MODES = ("default", "freeze", "off")


# -- actors ------------------------------------------------------------------


class TrivialActor(pykka.ThreadingActor):
    """The raw baseline: a plain pykka actor that answers every message."""

    def on_receive(self, message: Any) -> Any:
        return message


class CrashStamp:
    """Where a crashing child writes the time it crashed.

    One crash is in flight at a time, so a single slot is enough.
    """

    def __init__(self) -> None:
        self.at = 0.0


class CrashingChild(SupervisedActor):
    """'crash': stamp the time, then raise. 'ping': answer (urn, perf_counter)."""

    def __init__(self, stamp: CrashStamp) -> None:
        super().__init__()
        self._stamp = stamp

    def on_receive(self, message: Any) -> Any:
        if message == "ping":
            return self.actor_urn, time.perf_counter()
        if message == "crash":
            self._stamp.at = time.perf_counter()
            raise RuntimeError("crash on purpose (benchmark)")
        return None


# -- statistics ----------------------------------------------------------------


@dataclass
class Summary:
    """p50, p99 and mean of one series of samples, in milliseconds."""

    p50: float
    p99: float
    mean: float
    max: float
    count: int

    @classmethod
    def of(cls, seconds: Sequence[float]) -> Summary:
        millis = [s * 1000.0 for s in seconds]
        cuts = statistics.quantiles(millis, n=100, method="inclusive")
        return cls(
            p50=cuts[49],
            p99=cuts[98],
            mean=statistics.fmean(millis),
            max=max(millis),
            count=len(millis),
        )


@dataclass(frozen=True)
class Window:
    """One timed interval, on the `time.perf_counter()` scale."""

    start: float
    end: float

    @property
    def seconds(self) -> float:
        return self.end - self.start

    def overlaps(self, other: Window) -> bool:
        return self.start < other.end and other.start < self.end


@dataclass
class GcWatch:
    """Records every collection that runs while samples are taken (any thread)."""

    collections: list[tuple[int, Window]] = field(default_factory=list)
    _started: float = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        now = time.perf_counter()
        if phase == "start":
            self._started = now
        else:
            self.collections.append((info["generation"], Window(self._started, now)))

    def counts(self) -> str:
        per_gen = [sum(1 for gen, _ in self.collections if gen == g) for g in range(3)]
        return "/".join(str(n) for n in per_gen)

    def longest_ms(self) -> float:
        return max((w.seconds for _, w in self.collections), default=0.0) * 1000.0

    def generations_hitting(self, window: Window) -> list[int]:
        """The generations of the collections that ran during `window`."""
        return [gen for gen, w in self.collections if w.overlaps(window)]


@contextmanager
def watching_gc() -> Iterator[GcWatch]:
    watch = GcWatch()
    gc.callbacks.append(watch)
    try:
        yield watch
    finally:
        gc.callbacks.remove(watch)


@contextmanager
def gc_mode(mode: str) -> Iterator[None]:
    """Run the block with the collector as `mode` says; restore it afterwards.

    default: untouched. freeze: `gc.collect()` then `gc.freeze()`, so objects
    made during setup (the siblings) are not traversed again by collections.
    off: `gc.disable()`.
    """
    was_enabled = gc.isenabled()
    if mode == "freeze":
        gc.collect()
        gc.freeze()
    elif mode == "off":
        gc.disable()
    try:
        yield
    finally:
        if mode == "freeze":
            gc.unfreeze()
        if was_enabled:
            gc.enable()


# -- raw pykka start -----------------------------------------------------------


def raw_start_once() -> float:
    """Start a trivial actor, wait for its first answer; stop it untimed."""
    began = time.perf_counter()
    ref = TrivialActor.start()
    ref.ask("ping", timeout=ASK_TIMEOUT)
    elapsed = time.perf_counter() - began
    ref.stop(timeout=ASK_TIMEOUT)
    return elapsed


def measure_raw_start(samples: int) -> list[float]:
    for _ in range(WARMUP_RESTARTS):
        raw_start_once()
    return [raw_start_once() for _ in range(samples)]


# -- restart latency -----------------------------------------------------------


@dataclass
class RestartRun:
    """The samples of one sibling count, and what ran while they were taken."""

    siblings: int
    windows: list[Window]
    """One per answered sample: from the crash to the ping handled."""
    lost: int
    """Pings not answered within ASK_TIMEOUT (a kernel bug if ever non-zero)."""
    gc: GcWatch

    @property
    def latencies(self) -> list[float]:
        return [w.seconds for w in self.windows]

    def gc_note(self, p99_ms: float) -> str:
        """How many samples a collection ran into, overall and in the tail."""
        hits = [self.gc.generations_hitting(w) for w in self.windows]
        tail = [
            gens for w, gens in zip(self.windows, hits, strict=True) if w.seconds * 1000.0 >= p99_ms
        ]
        tail_gens = sorted({g for gens in tail for g in gens})
        return (
            f"gc gen0/1/2 collections {self.gc.counts()}, longest {self.gc.longest_ms():.3f} ms;"
            f" {sum(1 for gens in hits if gens)} samples ran into one;"
            f" of the {len(tail)} samples >= p99, {sum(1 for gens in tail if gens)} did"
            f" (gens {tail_gens or '-'})"
        )


class RestartProbe:
    """Crashes children of one supervisor and times their replacements."""

    def __init__(self, supervisor: SupervisorRef, ids: Sequence[str], stamp: CrashStamp) -> None:
        self._stamp = stamp
        self._addresses = [supervisor.address(child_id) for child_id in ids]
        self._urns = [self._ping(address)[0] for address in self._addresses]

    @staticmethod
    def _ping(address: Address) -> tuple[str, float]:
        urn, handled_at = address.ask("ping", timeout=ASK_TIMEOUT)
        return urn, handled_at

    def crash_one(self, index: int) -> Window | None:
        """Crash child `index` (round-robin); crash-to-handled window, None if lost."""
        slot = index % len(self._addresses)
        address = self._addresses[slot]
        address.tell("crash")
        try:
            urn, handled_at = self._ping(address)
        except pykka.Timeout:
            return None
        if urn == self._urns[slot]:
            raise AssertionError(f"{address.path}: the ping reached the crashed incarnation")
        self._urns[slot] = urn
        return Window(self._stamp.at, handled_at)


def child_specs(count: int, stamp: CrashStamp) -> list[ChildSpec]:
    start = functools.partial(CrashingChild, stamp)
    return [ChildSpec(id=f"c{i}", start=start) for i in range(count)]


def start_tree(count: int, stamp: CrashStamp) -> SupervisorRef:
    flags = SupervisorFlags(strategy=Strategy.ONE_FOR_ONE, max_restarts=10**9, within=1.0)
    return start_supervisor(flags, child_specs(count, stamp), id="bench")


def take_samples(probe: RestartProbe, siblings: int, samples: int, gc_setting: str) -> RestartRun:
    for i in range(WARMUP_RESTARTS):
        probe.crash_one(i)
    with gc_mode(gc_setting), watching_gc() as watch:
        results = [probe.crash_one(i) for i in range(samples)]
    windows = [w for w in results if w is not None]
    return RestartRun(siblings, windows, len(results) - len(windows), watch)


def measure_restarts(siblings: int, samples: int, gc_setting: str) -> RestartRun:
    stamp = CrashStamp()
    supervisor = start_tree(siblings, stamp)
    try:
        probe = RestartProbe(supervisor, [f"c{i}" for i in range(siblings)], stamp)
        return take_samples(probe, siblings, samples, gc_setting)
    finally:
        stop_tree(supervisor)


def stop_tree(supervisor: SupervisorRef) -> None:
    if supervisor.stop(timeout=30.0) is None:
        raise RuntimeError(f"{supervisor.path} did not stop within 30 s")


# -- report --------------------------------------------------------------------


def print_table(raw: Summary, runs: Sequence[tuple[RestartRun, Summary]]) -> None:
    print(f"raw pykka start (start() -> first ask answered), {raw.count} samples:")
    print(f"  p50 {raw.p50:.3f} ms   p99 {raw.p99:.3f} ms   mean {raw.mean:.3f} ms")
    print()
    print("restart latency (crash -> replacement handled the buffered ping), one_for_one:")
    header = f"{'siblings':>8} {'samples':>7} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8}"
    print(f"{header} {'max ms':>8} {'p50/raw':>8} {'lost':>4}")
    for run, summary in runs:
        ratio = summary.p50 / raw.p50 if raw.p50 else float("nan")
        print(
            f"{run.siblings:>8} {summary.count:>7} {summary.p50:>8.3f} {summary.p99:>8.3f} "
            f"{summary.mean:>8.3f} {summary.max:>8.3f} {ratio:>7.2f}x {run.lost:>4}"
        )
    for run, summary in runs:
        print(f"  {run.siblings:>4} siblings: {run.gc_note(summary.p99)}")


def summary_line(raw: Summary, last: tuple[RestartRun, Summary]) -> str:
    run, summary = last
    return (
        f"restart_p50_ms={summary.p50:.3f} restart_p99_ms={summary.p99:.3f} "
        f"raw_start_p50_ms={raw.p50:.3f} siblings={run.siblings}"
    )


# -- main ----------------------------------------------------------------------


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Restart latency of the supervision kernel, against raw pykka start time."
    )
    parser.add_argument(
        "--samples",
        type=int,
        default=DEFAULT_SAMPLES,
        help="restarts timed per sibling count (default %(default)s)",
    )
    parser.add_argument(
        "--raw-samples",
        type=int,
        default=DEFAULT_RAW_SAMPLES,
        help="raw pykka starts timed (default %(default)s)",
    )
    parser.add_argument(
        "--switch-interval",
        type=float,
        default=None,
        metavar="SECONDS",
        help="sys.setswitchinterval() for the run (Python's default: 0.005)",
    )
    parser.add_argument(
        "--gc",
        choices=GC_MODES,
        default="default",
        help="collector while samples are taken (default: untouched)",
    )
    args = parser.parse_args(argv)
    if args.samples < 2 or args.raw_samples < 2:
        parser.error("--samples and --raw-samples need at least 2")
    return args


def run(args: argparse.Namespace) -> int:
    if args.switch_interval is not None:
        sys.setswitchinterval(args.switch_interval)
    print(
        f"python {sys.version.split()[0]}, pykka {metadata.version('pykka')}, "
        f"switch interval {sys.getswitchinterval() * 1000:g} ms, gc {args.gc}, "
        f"{os.cpu_count()} cpus, load avg {os.getloadavg()[0]:.2f}"
    )
    with gc_mode(args.gc):
        raw = Summary.of(measure_raw_start(args.raw_samples))
    runs: list[tuple[RestartRun, Summary]] = []
    for siblings in SIBLING_COUNTS:
        restart_run = measure_restarts(siblings, args.samples, args.gc)
        runs.append((restart_run, Summary.of(restart_run.latencies)))
    print_table(raw, runs)
    print(summary_line(raw, runs[-1]))
    return 1 if any(r.lost for r, _ in runs) else 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(parse_args(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
