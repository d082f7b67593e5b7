"""What the `noetl` commands load: `--help` starts at once, a node loads no UI.

Each check runs the command in a fresh interpreter (a real subprocess) and
reads that interpreter's `sys.modules` as it exits, so an import made only
on the way out counts too.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.node_helpers import START_TIMEOUT, STOP_TIMEOUT, clean_env
from tests.run_helpers import REPO, kill_tree, wait_until

pytestmark = pytest.mark.timeout(120)

LOADED_AT_EXIT = """\
import atexit, json, sys

REPORT = sys.argv[1]

def report():
    tops = sorted({name.split(".")[0] for name in sys.modules})
    with open(REPORT, "w") as out:
        json.dump(tops, out)

atexit.register(report)
sys.argv = ["noetl", *sys.argv[2:]]
from noetl_actors.cli import main
main()
"""
"""Runs `noetl ARGS...`, then writes the top-level packages it loaded to the file."""


def loaded_by(tmp_path: Path, *args: str) -> tuple[subprocess.Popen[bytes], Path]:
    report = tmp_path / "modules.json"
    proc = subprocess.Popen([sys.executable, "-c", LOADED_AT_EXIT, str(report), *args],
                            cwd=REPO, env=clean_env(), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    return proc, report


def test_help_loads_no_nats_rich_textual_jinja2_or_pykka(tmp_path: Path) -> None:
    proc, report = loaded_by(tmp_path, "--help")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert b"submit" in out and b"node" in out
    loaded = set(json.loads(report.read_text()))
    assert loaded & {"nats", "rich", "textual", "jinja2", "pykka"} == set()


def test_validate_loads_no_nats_rich_or_textual(tmp_path: Path) -> None:
    proc, report = loaded_by(tmp_path, "validate", str(REPO / "examples" / "hello.yaml"))
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert b"valid" in out
    assert set(json.loads(report.read_text())) & {"nats", "rich", "textual"} == set()


def test_a_node_loads_neither_rich_nor_textual(tmp_path: Path) -> None:
    proc, report = loaded_by(tmp_path, "node", "start", "--name", "light",
                             "--state-dir", str(tmp_path / "state"))
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()  # "node light is up on ..."; "" if it died
        assert re.match(r"node light is up on nats://", line), (
            line, proc.stderr.read().decode() if proc.poll() is not None else "")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=STOP_TIMEOUT)
    except BaseException:
        kill_tree(proc.pid)
        raise
    finally:
        kill_tree(proc.pid)  # its session: the embedded nats-server, if left
    assert proc.returncode == 0, err
    wait_until(report.exists, START_TIMEOUT, "the module report")
    loaded = set(json.loads(report.read_text()))
    assert "nats" in loaded and "pykka" in loaded  # it did run a node
    assert loaded & {"rich", "textual"} == set(), sorted(loaded)
