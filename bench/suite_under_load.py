"""The whole test suite, run again and again while another process keeps a core busy.

Run it as a plain script from anywhere::

    python bench/suite_under_load.py [--runs N] [--busy N] [PYTEST ARGS...]

It starts `--busy` (1) processes that spin (`while True: pass`), then runs
`./quickstart test` (the README's test command, so the same install and
the same pytest) `--runs` (5) times in a row, and stops the spinners. Each
run prints its pytest summary line; the last line says how many passed::

    suite under load: 5 of 5 runs passed (1 busy core, 2 cpus)

A flaky test is a defect: a suite that does not pass every run here can
keep a good change from landing. The whole output of a run that failed is
kept in a file whose name is printed, with the assertion lines of its
failures. The exit status is 0 only if all passed. Extra arguments go to
pytest (`-x`, `-k`, a test file), after `-q`.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
SPIN = "while True: pass"


def last_summary(output: str) -> str:
    """pytest's final `N passed, M failed in Xs` line, or the output's last line."""
    lines = [line.strip("= ") for line in output.splitlines() if line.strip()]
    for line in reversed(lines):
        if " in " in line and ("passed" in line or "failed" in line or "error" in line):
            return line
    return lines[-1] if lines else "(no output)"


def run_suite(pytest_args: Sequence[str]) -> tuple[bool, str, float]:
    began = time.monotonic()
    result = subprocess.run(
        [str(PROJECT / "quickstart"), "test", "-q", "-p", "no:cacheprovider", *pytest_args],
        cwd=PROJECT, capture_output=True, text=True,
    )
    output = result.stdout + result.stderr
    summary = last_summary(output)
    if result.returncode != 0:
        with tempfile.NamedTemporaryFile(
                "w", prefix="suite-under-load-", suffix=".log", delete=False) as log:
            log.write(output)
        failures = [line for line in output.splitlines()
                    if line.startswith(("FAILED", "ERROR", "E   "))][:20]
        summary += "\n    " + "\n    ".join([*failures, f"whole output: {log.name}"])
    return result.returncode == 0, summary, time.monotonic() - began


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="suite runs (default %(default)s)")
    parser.add_argument("--busy", type=int, default=1,
                        help="spinning processes beside the suite (default %(default)s)")
    args, pytest_args = parser.parse_known_args(argv)
    if args.runs < 1 or args.busy < 0:
        parser.error("need --runs >= 1 and --busy >= 0")
    spinners = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(args.busy)]
    passed = 0
    try:
        for number in range(1, args.runs + 1):
            ok, summary, seconds = run_suite(pytest_args)
            passed += ok
            verdict = "passed" if ok else "FAILED"
            print(f"run {number}: {verdict} in {seconds:.0f} s: {summary}", flush=True)
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()
    print(f"suite under load: {passed} of {args.runs} runs passed "
          f"({args.busy} busy core{'s' if args.busy != 1 else ''}, {os.cpu_count()} cpus)")
    return 0 if passed == args.runs else 1


if __name__ == "__main__":
    sys.exit(main())
