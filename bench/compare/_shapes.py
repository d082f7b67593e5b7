"""The clock rule the peers of bench/compare/run.py share (stdlib only).

Each engine gives two callables, one per shape, that run a whole workflow and
return its wall time in seconds, start (before the first step is handed over)
to end (the last step's result is back). `measure` runs a warm-up of each,
then `rounds` rounds of A then B, and prints the one line run.py parses::

    result a_steps_per_s=<median> b_ms_per_step=<median> a_rounds=<x,x,x> b_rounds=<x,x,x> ...
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable


def parser(description: str) -> argparse.ArgumentParser:
    """The shape options every peer takes, with run.py's defaults."""
    result = argparse.ArgumentParser(description=description)
    result.add_argument("--rounds", type=int, default=3)
    result.add_argument("--tasks", type=int, default=50)
    result.add_argument("--steps", type=int, default=10)
    result.add_argument("--sequence", type=int, default=200)
    return result


def measure(args: argparse.Namespace, fanout: Callable[[], float],
            sequence: Callable[[], float], **extra: str) -> None:
    """Warm up, time the rounds, print the `result` line (extra: more key=value)."""
    fanout()
    sequence()
    a, b = [], []
    for _ in range(args.rounds):
        a.append(args.tasks * args.steps / fanout())
        b.append(sequence() / args.sequence * 1e3)
    fields = {
        "a_steps_per_s": f"{statistics.median(a):.0f}",
        "b_ms_per_step": f"{statistics.median(b):.3f}",
        "a_rounds": ",".join(f"{x:.0f}" for x in a),
        "b_rounds": ",".join(f"{x:.3f}" for x in b),
        **extra,
    }
    print("result " + " ".join(f"{key}={value}" for key, value in fields.items()), flush=True)
