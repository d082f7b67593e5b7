"""The fault suite's processes: start them, find their children in /proc, kill, clean up.

Every process `Processes` starts is in a session of its own, its stdout and
stderr in files of the work folder. Plugin subprocesses start sessions of
their own too, and a process killed with SIGKILL leaves its children to
init, so `remember()` notes every descendant (pid and start time, so a
reused pid is never taken for one) while they can still be found; `close()`
stops the started processes (SIGTERM, then SIGKILL) and kills every
remembered descendant still alive. Linux only (/proc).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

STOP_GRACE = 10.0
"""Seconds a started process gets to exit after SIGTERM before it is killed."""
REPO = Path(__file__).resolve().parent.parent


def noetl(*args: str | Path) -> list[str]:
    """The command line of `noetl ARGS` with this interpreter."""
    return [sys.executable, "-m", "noetl_actors.cli", *map(str, args)]


def start_time(pid: int) -> int | None:
    """The process's start time (clock ticks since boot), None if it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return None if fields[0] in ("Z", "X") else int(fields[19])


def command_line(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def name_of(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def descendants(pid: int) -> list[int]:
    """Every living descendant of `pid`, parents before children."""
    found: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        try:
            threads = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue  # it has just exited
        for thread in threads:
            with contextlib.suppress(OSError, ValueError):
                children = [int(c) for c in
                            Path(f"/proc/{parent}/task/{thread}/children").read_text().split()]
                found.extend(children)
                todo.extend(children)
    return found


def kill9(pid: int, started: int | None = None) -> bool:
    """SIGKILL `pid` if it is still the process that started at `started`; True if sent."""
    if start_time(pid) is None or (started is not None and start_time(pid) != started):
        return False
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    return True


@dataclass
class Proc:
    """One started process: `noetl server`, a node, a worker."""

    name: str
    popen: subprocess.Popen[bytes]
    args: list[str]
    out: Path
    err: Path
    stop_last: bool
    """Stopped after the others (the NATS server: the others need it to stop cleanly)."""

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def wait_line(self, pattern: re.Pattern[str], timeout: float) -> re.Match[str]:
        """The first stdout line matching `pattern`.

        Raises:
            RuntimeError: the process exited first, or printed none within `timeout`.
        """
        deadline = time.monotonic() + timeout
        while True:
            for line in self.out.read_text(errors="replace").splitlines():
                match = pattern.match(line)
                if match:
                    return match
            if not self.alive() or time.monotonic() > deadline:
                why = f"exited {self.popen.returncode}" if not self.alive() else \
                    f"printed no line like {pattern.pattern!r} in {timeout:g}s"
                tail = self.err.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{self.name} ({' '.join(self.args)}) "
                                   f"{why}; its stderr ends:\n{tail}")
            time.sleep(0.05)


@dataclass
class Processes:
    """The processes of one run; use as a context manager: leaving it stops them all."""

    folder: Path
    started: list[Proc] = field(default_factory=list)
    seen: dict[int, int] = field(default_factory=dict)
    """Descendants ever seen: pid -> start time."""

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()

    def start(self, name: str, args: list[str], *, stop_last: bool = False) -> Proc:
        """Start `args` in a new session, stdout and stderr in `<folder>/<name>.out|.err`
        (a name used again gets a numbered file: `worker-2.err`)."""
        base, n = name, 1
        while (self.folder / f"{name}.err").exists():
            n += 1
            name = f"{base}-{n}"
        out, err = self.folder / f"{name}.out", self.folder / f"{name}.err"
        with out.open("wb") as stdout, err.open("wb") as stderr:
            popen = subprocess.Popen(args, cwd=REPO, env=_clean_env(), stdin=subprocess.DEVNULL,
                                     stdout=stdout, stderr=stderr, start_new_session=True)
        proc = Proc(name, popen, args, out, err, stop_last)
        self.started.append(proc)
        return proc

    def remember(self) -> None:
        """Note every descendant of every started process that is alive."""
        for proc in self.started:
            if proc.alive():
                for pid in descendants(proc.pid):
                    started = start_time(pid)
                    if started is not None:
                        self.seen.setdefault(pid, started)

    def kill(self, proc: Proc) -> None:
        """kill -9 `proc` (only it: its children are left to die as they would), and reap it."""
        self.remember()
        with contextlib.suppress(ProcessLookupError):
            proc.popen.send_signal(signal.SIGKILL)
        proc.popen.wait(STOP_GRACE)

    def close(self) -> None:
        """Stop every started process still alive, the last started first but those to stop
        last, then every remembered descendant still alive. SIGINT and SIGTERM are ignored
        meanwhile (call it from the main thread): a second Ctrl-C does not cut it short."""
        handlers = {signum: signal.signal(signum, signal.SIG_IGN)
                    for signum in (signal.SIGINT, signal.SIGTERM)}
        try:
            self.remember()
            living = [proc for proc in reversed(self.started) if proc.alive()]
            self._stop([proc for proc in living if not proc.stop_last])
            self._stop([proc for proc in living if proc.stop_last])
            for pid, started in self.seen.items():
                kill9(pid, started)
        finally:
            for signum, handler in handlers.items():
                signal.signal(signum, handler)

    def _stop(self, living: list[Proc]) -> None:
        """SIGTERM each, then SIGKILL what is left after `STOP_GRACE`."""
        for proc in living:
            with contextlib.suppress(ProcessLookupError):
                proc.popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        for proc in living:
            try:
                proc.popen.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                proc.popen.kill()
                proc.popen.wait(STOP_GRACE)


def _clean_env() -> dict[str, str]:
    """This environment without NATS_* variables: every command gets `--nats` itself."""
    return {k: v for k, v in os.environ.items() if not k.startswith("NATS_")}
