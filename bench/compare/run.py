"""Side by side: the same two workflows on Ray, Celery and this project, in one sitting.

Run it from the checkout under test (any Python 3.11+; it needs only the
standard library itself)::

    python bench/compare/run.py [--quick] [--engines LIST] [--venv DIR] [--python PY]

Shapes (no-op steps): A, 50 parallel tasks x 10 steps, in steps/s; B, one
task of 200 steps in sequence, in ms per step. Clock rule, the same for
every engine: a workflow's wall time from its start to its end, a warm-up of
each shape, then the median of `--rounds` (3) rounds of A then B.

The peers run in a virtual environment of their own (`--venv`, by default
bench/compare/.venv, ignored by git), made and filled with pip on first use:
Ray always, Celery and the redis client when `redis-server` is on the PATH
(Celery is skipped, and the table says so, when it is not). Temporal is not
run: its SDK's local dev server is a binary fetched at run time.

This project's paths run with `--python` (by default the checkout's
.venv/bin/python, else this interpreter): `noetl run FILE --json` as a
subprocess, timed from its report's `started_at` to `finished_at`, and
`bench/node_path.py` (a `noetl node start` process fed through the command
API, timed by the workflow records).

It prints one Markdown table (| engine | A steps/s | B ms/step |) with the
date, the core count, the load average and the versions, and exits 1 if an
engine that was run failed. `--quick` (10 x 5 steps, 20 in sequence, one
round) checks that every engine runs, in a minute or two; its figures mean
little.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
CHECKOUT = HERE.parent.parent
ENGINE_TIMEOUT_S = 900
ROUNDS = re.compile(r"\(rounds: ([^)]*)\)")
ENGINES = ("ray-tasks", "ray-actors", "celery", "temporal", "noetl-run", "node")


@dataclass
class Row:
    """One engine's line of the table: figures, or why there are none."""

    engine: str
    a_steps_per_s: str = ""
    b_ms_per_step: str = ""
    detail: dict[str, str] = field(default_factory=dict)
    skipped: str = ""
    failed: str = ""


@dataclass
class Shape:
    rounds: int
    tasks: int
    steps: int
    sequence: int

    def flags(self) -> list[str]:
        return ["--rounds", str(self.rounds), "--tasks", str(self.tasks),
                "--steps", str(self.steps), "--sequence", str(self.sequence)]


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def ensure_venv(venv: Path, modules: dict[str, str]) -> Path:
    """Make `venv` if it is missing and pip-install the modules it cannot import.

    `modules` maps an import name to the pip requirement that brings it.
    """
    python = venv / "bin" / "python"
    try:
        if not python.exists():
            say(f"making the peers' virtual environment in {venv}")
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        missing = [spec for module, spec in modules.items()
                   if subprocess.run([str(python), "-c", f"import {module}"],
                                     capture_output=True).returncode != 0]
        if missing:
            say(f"pip install {' '.join(missing)} into {venv} (once; a few minutes)")
            subprocess.run([str(python), "-m", "pip", "install", "-q", *missing], check=True)
    except (OSError, subprocess.CalledProcessError) as error:
        raise SystemExit(f"run.py: could not make the peers' environment in {venv}: {error}"
                         ) from None
    return python


def parse_fields(line: str) -> dict[str, str]:
    return dict(word.split("=", 1) for word in line.split() if "=" in word)


def last_lines(text: str, count: int = 5) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines()[-count:])


def run_script(row: Row, command: list[str], cwd: Path,
               marker: str) -> tuple[dict[str, str], str]:
    """Run a bench script: the fields of its last line that starts with `marker`, its stdout.

    Fills `row.failed` (and gives no fields) if it fails or prints no such line.
    """
    say(f"-- {row.engine}: {' '.join(command)}")
    try:
        done = subprocess.run(command, cwd=cwd, capture_output=True, text=True,
                              timeout=ENGINE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        row.failed = f"no result in {ENGINE_TIMEOUT_S} s"
        return {}, ""
    lines = [line for line in done.stdout.splitlines() if line.startswith(marker)]
    if done.returncode != 0 or not lines:
        row.failed = (f"exit {done.returncode}: "
                      f"{last_lines(done.stderr) or last_lines(done.stdout) or 'no output'}")
        return {}, done.stdout
    return parse_fields(lines[-1]), done.stdout


def peer(engine: str, python: Path, script: str, shape: Shape, *extra: str) -> Row:
    row = Row(engine)
    fields, _ = run_script(row, [str(python), script, *extra, *shape.flags()], HERE, "result ")
    if fields:
        row.a_steps_per_s = fields.pop("a_steps_per_s")
        row.b_ms_per_step = fields.pop("b_ms_per_step")
        row.detail = fields
    return row


def playbook(name: str, tasks: int, steps: int) -> str:
    lines = [f"apiVersion: noetl.io/v1\nkind: Playbook\nname: {name}\ntasks:"]
    for t in range(tasks):
        lines.append(f"  - name: t{t}\n    steps:")
        lines += [f"      - name: s{s}\n        plugin: echo\n        with: {{msg: {s}}}"
                  for s in range(steps)]
    return "\n".join(lines) + "\n"


def noetl_run(python: Path, shape: Shape) -> Row:
    """`noetl run FILE --json` per workflow; the time is what its report says."""
    row = Row("`noetl run FILE --json`")
    say(f"-- {row.engine}: {python} -m noetl_actors.cli run FILE --json")
    with tempfile.TemporaryDirectory() as folder:
        fanout = Path(folder, "fanout.yaml")
        fanout.write_text(playbook("fanout", shape.tasks, shape.steps))
        sequence = Path(folder, "sequence.yaml")
        sequence.write_text(playbook("sequence", 1, shape.sequence))

        def once(file: Path) -> float:
            done = subprocess.run([str(python), "-m", "noetl_actors.cli", "run", str(file),
                                   "--json", "--state-dir", str(Path(folder, "state"))],
                                  capture_output=True, text=True, timeout=ENGINE_TIMEOUT_S)
            try:
                report = json.loads(done.stdout)
            except json.JSONDecodeError:
                report = {}
            if done.returncode != 0 or report.get("status") != "succeeded":
                raise RuntimeError(f"exit {done.returncode}, status "
                                   f"{report.get('status')}: {last_lines(done.stderr)}")
            return float(report["finished_at"]) - float(report["started_at"])

        try:
            once(fanout)
            once(sequence)
            a, b = [], []
            for _ in range(shape.rounds):
                a.append(shape.tasks * shape.steps / once(fanout))
                b.append(once(sequence) / shape.sequence * 1e3)
        except (RuntimeError, subprocess.TimeoutExpired) as error:
            row.failed = str(error)
            return row
    row.a_steps_per_s = f"{statistics.median(a):.0f}"
    row.b_ms_per_step = f"{statistics.median(b):.3f}"
    row.detail = {"a_rounds": ",".join(f"{x:.0f}" for x in a),
                  "b_rounds": ",".join(f"{x:.3f}" for x in b)}
    return row


def node_path(python: Path, shape: Shape) -> Row:
    """bench/node_path.py of the checkout: its last line's two keys, its rounds."""
    row = Row("`noetl node start` + command API (bench/node_path.py)")
    fields, stdout = run_script(row, [str(python), "bench/node_path.py", *shape.flags()],
                                CHECKOUT, "node_fanout_steps_per_s=")
    if fields:
        row.a_steps_per_s = fields["node_fanout_steps_per_s"]
        row.b_ms_per_step = fields["node_seq_ms_per_step"]
        for line in stdout.splitlines():
            rounds = ROUNDS.search(line)
            if rounds and line[:2] in ("A ", "B "):
                row.detail[f"{line[0].lower()}_rounds"] = rounds.group(1).replace(" ", "")
        row.detail |= {key: value for key, value in fields.items()
                       if key not in ("node_fanout_steps_per_s", "node_seq_ms_per_step")}
    return row


def output_of(command: list[str], cwd: Path = CHECKOUT) -> str:
    try:
        done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return done.stdout.strip() or "?"


def noetl_version(python: Path) -> str:
    commit = output_of(["git", "rev-parse", "--short", "HEAD"])
    dirty = "+changes" if output_of(["git", "status", "--porcelain", "--untracked-files=no"],
                                    ) not in ("?", "") else ""
    version = output_of([str(python), "-c", "import importlib.metadata as m, platform; "
                         "print(m.version('noetl-actors'), 'python-' + platform.python_version(),"
                         " 'nats-py-' + m.version('nats-py'))"])
    return f"noetl-actors {version} ({commit}{dirty})"


def loads(triple: tuple[float, float, float]) -> str:
    return "/".join(f"{x:.2f}" for x in triple)


def figure(text: str) -> str:
    """12345 -> 12,345 (the figures README tables use); anything else as it is."""
    try:
        return f"{int(text):,}"
    except ValueError:
        return text


def table(rows: list[Row]) -> str:
    lines = ["| engine | A steps/s | B ms/step |", "| --- | --- | --- |"]
    for row in rows:
        if row.skipped:
            lines.append(f"| {row.engine} | skipped | skipped |")
        elif row.failed:
            lines.append(f"| {row.engine} | failed | failed |")
        else:
            b = f"{float(row.b_ms_per_step):.2f}"
            lines.append(f"| {row.engine} | {figure(row.a_steps_per_s)} | {b} |")
    return "\n".join(lines)


def main() -> int:
    options = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    options.add_argument("--quick", action="store_true",
                         help="smoke run: 10 tasks x 5 steps, 20 in sequence, one round")
    options.add_argument("--rounds", type=int, default=None, help="timed rounds (3; quick 1)")
    options.add_argument("--venv", type=Path, default=HERE / ".venv",
                         help="the peers' virtual environment (made if missing)")
    default_python = CHECKOUT / ".venv" / "bin" / "python"
    options.add_argument("--python", type=Path,
                         default=default_python if default_python.exists() else
                         Path(sys.executable),
                         help="the interpreter that has this project installed")
    options.add_argument("--engines", default="",
                         help=f"comma-separated subset of {','.join(ENGINES)} (all)")
    args = options.parse_args()
    chosen = set(args.engines.split(",")) if args.engines else set(ENGINES)
    unknown = chosen - set(ENGINES)
    if unknown:
        options.error(f"--engines: unknown {', '.join(sorted(unknown))} "
                      f"(known: {', '.join(ENGINES)})")
    shape = Shape(rounds=1, tasks=10, steps=5, sequence=20) if args.quick else \
        Shape(rounds=3, tasks=50, steps=10, sequence=200)
    if args.rounds is not None:
        shape.rounds = args.rounds

    redis_server = shutil.which("redis-server")
    modules = {}
    if chosen & {"ray-tasks", "ray-actors"}:
        modules["ray"] = "ray>=2,<3"
    if "celery" in chosen and redis_server is not None:
        modules |= {"celery": "celery>=5,<6", "redis": "redis>=4"}
    venv_python = ensure_venv(args.venv.resolve(), modules) if modules else Path()
    started = datetime.datetime.now(datetime.UTC)
    load_before = os.getloadavg()
    begun = time.monotonic()

    rows = []
    if "ray-tasks" in chosen:
        rows.append(peer("Ray tasks (`ray.init` local, 2 CPUs)", venv_python, "ray_bench.py",
                         shape, "--mode", "tasks"))
    if "ray-actors" in chosen:
        rows.append(peer("Ray actors (one actor per task)", venv_python, "ray_bench.py", shape,
                         "--mode", "actors"))
    if "celery" in chosen and redis_server is not None:
        rows.append(peer("Celery 5 + Redis, prefork x2", venv_python, "celery_bench.py", shape))
    elif "celery" in chosen:
        rows.append(Row("Celery 5 + Redis, prefork x2",
                        skipped="redis-server is not on the PATH"))
    if "temporal" in chosen:
        rows.append(Row("Temporal", skipped="not run: its SDK's dev server is a binary "
                                            "downloaded at run time"))
    if "noetl-run" in chosen:
        rows.append(noetl_run(args.python, shape))
    if "node" in chosen:
        rows.append(node_path(args.python, shape))
    load_after = os.getloadavg()

    versions = [noetl_version(args.python)]
    versions += sorted({row.detail["version"] for row in rows if "version" in row.detail})
    print(f"\n{started:%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores (os.cpu_count), "
          f"load average {loads(load_before)} before, {loads(load_after)} after; "
          f"{time.monotonic() - begun:.0f} s in all")
    print(f"A: {shape.tasks} parallel tasks x {shape.steps} no-op steps; B: 1 task x "
          f"{shape.sequence} steps in sequence; median of {shape.rounds} round(s) after a "
          f"warm-up{' (--quick)' if args.quick else ''}")
    print(f"versions: {'; '.join(versions)}")
    print()
    print(table(rows))
    print()
    for row in rows:
        if row.skipped:
            print(f"{row.engine}: skipped ({row.skipped})")
        elif row.failed:
            print(f"{row.engine}: FAILED ({row.failed})")
        else:
            extra = " ".join(f"{key}={value}" for key, value in row.detail.items()
                             if key != "version")
            print(f"{row.engine}: {extra}")
    return 1 if any(row.failed for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
