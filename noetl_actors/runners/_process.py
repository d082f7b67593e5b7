"""`ProcessRunner`: one subprocess per attempt, JSON in on stdin, JSON out on stdout.

The child (`_child.py`) is ``python -m noetl_actors.runners._child`` in a
new session, so the attempt owns a process group: on timeout or cancel the
group gets SIGTERM, then SIGKILL after `term_grace` seconds; when the
child ends, whatever it left in its group is killed too, so no attempt
leaves orphans (short of a grandchild that starts its own session). Each
attempt has one watcher thread that writes the request, reads the answer,
enforces the deadline and reaps the child; it ends with the attempt.

How an attempt ends:

========================================  ===========================================
child                                      outcome
========================================  ===========================================
exits 0 with a valid answer on stdout      the answer (succeeded, or the plugin's error)
stopped by us (timeout / cancel)           ``timeout`` / ``cancelled``
killed by a signal, or exits non-zero      ``crash``: the signal or exit code, stderr tail
exits 0 with no or a malformed answer      ``crash``: what was wrong, stderr tail
========================================  ===========================================
"""

from __future__ import annotations

import codecs
import contextlib
import json
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from typing import IO

from noetl_actors.runners._attempt import CANCELLED, CRASH, TIMEOUT, Attempt, Outcome
from noetl_actors.runners._handle import AttemptHandle, check_start, stop_message
from noetl_actors.runners._ledger import Ledger
from noetl_actors.runners._manifest import PluginInfo
from noetl_actors.runners._output import OutputSink
from noetl_actors.runners._protocol import RunnerStatistics
from noetl_actors.runners._wire import LIFELINE_ENV, request

__all__ = ["ProcessAttempt", "ProcessRunner"]

STDERR_TAIL = 2000
"""Characters of a crashed child's stderr quoted in its outcome."""
_CHILD_MODULE = "noetl_actors.runners._child"


class ProcessRunner:
    """Runs each attempt in its own Python subprocess. No limit on how many at once
    (the dispatcher sets those).

    Args:
        term_grace: seconds between SIGTERM and SIGKILL when an attempt is stopped.
        python: the interpreter for children (default: this one).
        env: the children's environment (default: this process's).
        output: where each child's stderr goes as it comes (`OutputSink`): what
            its plugin prints (its stdout is sent there too) and its
            subprocesses write. The outcome quotes its tail either way.
    """

    name = "process"

    def __init__(self, *, term_grace: float = 5.0, python: str = sys.executable,
                 env: Mapping[str, str] | None = None,
                 output: OutputSink | None = None) -> None:
        if term_grace < 0:
            raise ValueError(f"term_grace must be >= 0 (got {term_grace!r})")
        self.term_grace = term_grace
        self._python = python
        self._env = dict(env) if env is not None else None
        self.output = output
        self._ledger: Ledger[ProcessAttempt] = Ledger(self.name)

    def start(self, plugin: PluginInfo, attempt: Attempt) -> ProcessAttempt:
        """Spawn the child and its watcher thread; return at once (see `Runner.start`).

        A child that cannot even be spawned is an attempt that ends at once as a ``crash``.
        """
        check_start(self.name, plugin, attempt)
        handle = ProcessAttempt(self, plugin, attempt)
        self._ledger.admit(handle)
        handle.add_done_callback(lambda _outcome: self._ledger.forget(handle))
        handle.launch([self._python, "-m", _CHILD_MODULE], self._env)
        return handle

    def statistics(self) -> RunnerStatistics:
        return self._ledger.statistics()

    def close(self, *, timeout: float = 10.0) -> None:
        """Cancel every attempt (SIGTERM, SIGKILL after `term_grace`) and join the watchers."""
        self._ledger.close(timeout, ProcessAttempt.join)

    def __enter__(self) -> ProcessRunner:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


class ProcessAttempt(AttemptHandle):
    """An attempt on the process runner (a `RunningAttempt`); `pid` is its child's."""

    def __init__(self, runner: ProcessRunner, plugin: PluginInfo, attempt: Attempt) -> None:
        super().__init__(attempt)
        self._runner = runner
        self._plugin = plugin
        self.pid: int | None = None
        """The child's process id, which is also its process group id."""
        self._proc: subprocess.Popen[bytes] | None = None
        self._lifeline: int | None = None
        self._thread: threading.Thread | None = None
        self._wake_r, self._wake_w = os.pipe()
        self._stop_reason: str | None = None
        self._stderr = _Stderr(runner.output, attempt)

    def cancel(self) -> None:
        with self._cond:  # held while writing: the watcher closes the pipe under it
            if self._outcome is not None or self._stop_reason is not None:
                return
            self._stop_reason = CANCELLED
            if self._wake_w >= 0:
                os.write(self._wake_w, b"x")  # one byte, never blocks

    def join(self, timeout: float | None = None) -> None:
        """Wait for the watcher thread (the child reaped, every pipe closed)."""
        if self._thread is not None:
            self._thread.join(timeout)

    def launch(self, command: list[str], env: Mapping[str, str] | None) -> None:
        # The lifeline: the child holds the read end, only this process the
        # write end. If this process dies (kill -9 included) the child reads
        # EOF and kills its own process group: no attempt outlives its worker.
        lifeline, self._lifeline = os.pipe()
        child_env = dict(os.environ if env is None else env)
        child_env[LIFELINE_ENV] = str(lifeline)
        try:
            self._proc = subprocess.Popen(
                command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                env=child_env, start_new_session=True, close_fds=True, pass_fds=(lifeline,),
            )
        except OSError as error:
            self._close_lifeline()
            self._close_wake()
            self._settle(Outcome.failed(CRASH, f"cannot start {command[0]}: {error}",
                                        started_at=self.started_at))
            return
        finally:
            os.close(lifeline)
        self.pid = self._proc.pid
        self._thread = threading.Thread(
            target=self._watch, args=(self._proc,), daemon=True,
            name=f"noetl-process-{self.pid}",
        )
        self._thread.start()

    def _close_lifeline(self) -> None:
        fd, self._lifeline = self._lifeline, None
        if fd is not None:
            os.close(fd)

    # -- the watcher thread ------------------------------------------------------------

    def _watch(self, proc: subprocess.Popen[bytes]) -> None:
        outcome = Outcome.failed(CRASH, "the process runner failed", started_at=self.started_at)
        try:
            answer = self._supervise(proc)
            proc.wait()
            outcome = self._verdict(proc.returncode, answer, self._stderr.tail())
        except BaseException as error:  # a bug of ours: still leave no process behind
            self._signal_group(proc, signal.SIGKILL)
            proc.wait()
            outcome = Outcome.failed(CRASH, f"the process runner failed watching pid "
                                            f"{self.pid}: {error!r}", started_at=self.started_at)
            raise
        finally:
            self._stderr.end()  # its lines before its end, on the same wire
            for pipe in (proc.stdin, proc.stdout, proc.stderr):
                if pipe is not None and not pipe.closed:
                    with contextlib.suppress(OSError):
                        pipe.close()
            self._close_lifeline()
            self._close_wake()
            self._settle(outcome)

    def _supervise(self, proc: subprocess.Popen[bytes]) -> bytes:
        """Feed stdin, collect stdout, stop the child on deadline or cancel, until it exits.

        Returns the child's stdout. On return the child has exited and every
        process left in its group has been sent SIGKILL. Where there are pidfds
        (Linux) the child is then still a zombie, so its process group id cannot
        have been reused; elsewhere it was reaped first, a small window in which
        a new process could take its id.
        """
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        pending = json.dumps(request(self._plugin, self.attempt)).encode()
        deadline = (None if self.attempt.timeout is None
                    else time.monotonic() + self.attempt.timeout)
        kill_at: float | None = None
        killed = False
        out = bytearray()
        exit_fd = _pidfd(proc.pid)
        os.set_blocking(proc.stdin.fileno(), False)
        with selectors.DefaultSelector() as selector:
            selector.register(proc.stdin, selectors.EVENT_WRITE, "in")
            selector.register(proc.stdout, selectors.EVENT_READ, "out")
            selector.register(proc.stderr, selectors.EVENT_READ, "err")
            selector.register(self._wake_r, selectors.EVENT_READ, "wake")
            if exit_fd is not None:
                selector.register(exit_fd, selectors.EVENT_READ, "exit")
            try:
                while True:
                    now = time.monotonic()
                    if self._stop_reason is None and deadline is not None and now >= deadline:
                        with self._cond:
                            self._stop_reason = self._stop_reason or TIMEOUT
                    if self._stop_reason is not None and kill_at is None:
                        self._signal_group(proc, signal.SIGTERM)
                        kill_at = now + self._runner.term_grace
                    if kill_at is not None and now >= kill_at and not killed:
                        self._signal_group(proc, signal.SIGKILL)
                        killed = True
                    wakes = [deadline] if deadline is not None and kill_at is None else []
                    if kill_at is not None and not killed:
                        wakes = [kill_at]
                    timeout = max(0.0, min(wakes) - now) if wakes else None
                    for key, _ in selector.select(timeout):
                        if key.data == "in":
                            written = _write_some(proc.stdin, pending)
                            pending = pending[written:]
                            if written < 0 or not pending:
                                selector.unregister(proc.stdin)
                                proc.stdin.close()
                        elif key.data == "out":
                            chunk = os.read(proc.stdout.fileno(), 65536)
                            out += chunk
                            if not chunk:
                                selector.unregister(proc.stdout)
                                if exit_fd is None:  # no pidfd: EOF is our sign of exit
                                    self._reap_first(proc)
                                    return self._after_exit(proc, out)
                        elif key.data == "err":
                            chunk = os.read(proc.stderr.fileno(), 65536)
                            self._stderr.add(chunk)
                            if not chunk:
                                selector.unregister(proc.stderr)
                        elif key.data == "wake":
                            os.read(self._wake_r, 64)
                        else:
                            return self._after_exit(proc, out)
            finally:
                if exit_fd is not None:
                    os.close(exit_fd)

    def _reap_first(self, proc: subprocess.Popen[bytes]) -> None:
        """Without a pidfd the child must be reaped before its group is killed (else the
        SIGKILL could hit it on its way out); it closed stdout, so it is exiting."""
        try:
            proc.wait(self._runner.term_grace)
        except subprocess.TimeoutExpired:
            self._signal_group(proc, signal.SIGKILL)
            proc.wait()

    def _after_exit(self, proc: subprocess.Popen[bytes], out: bytearray) -> bytes:
        """The child is gone: kill what it left in its group, then read the rest of stdout."""
        self._signal_group(proc, signal.SIGKILL)
        assert proc.stdout is not None
        if not proc.stdout.closed:
            os.set_blocking(proc.stdout.fileno(), True)
            out += proc.stdout.read()
            proc.stdout.close()
        if proc.stdin is not None and not proc.stdin.closed:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        if proc.stderr is not None and not proc.stderr.closed:
            self._stderr.drain(proc.stderr.fileno())
        return bytes(out)

    def _signal_group(self, proc: subprocess.Popen[bytes], signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signum)

    def _verdict(self, returncode: int, answer: bytes, stderr_tail: str) -> Outcome:
        started = self.started_at
        if self._stop_reason is not None:
            return Outcome.failed(self._stop_reason, stop_message(self.attempt,
                                                                  self._stop_reason),
                                  started_at=started, detail=stderr_tail)
        where = f"the {self.attempt.plugin} plugin's process (pid {self.pid})"
        if returncode != 0:
            return Outcome.failed(CRASH, f"{where} {_death(returncode)}{_quote(stderr_tail)}",
                                  started_at=started, detail=stderr_tail)
        try:
            data = json.loads(answer.decode("utf-8"))
            if not isinstance(data, dict) or data.get("schema_version") != 1:
                raise ValueError("not an answer of schema_version 1")
            return Outcome.from_json(data["outcome"])
        except (ValueError, KeyError, TypeError) as error:
            shown = answer[:200].decode("utf-8", "replace")
            return Outcome.failed(
                CRASH, f"{where} exited 0 without a valid answer on stdout ({error}; got "
                       f"{shown!r}){_quote(stderr_tail)}", started_at=started, detail=stderr_tail)

    def _close_wake(self) -> None:
        with self._cond:
            fds, self._wake_r, self._wake_w = (self._wake_r, self._wake_w), -1, -1
        for fd in fds:
            if fd >= 0:
                os.close(fd)


def _pidfd(pid: int) -> int | None:
    """A file descriptor that becomes readable when `pid` exits (Linux >= 5.3), or None."""
    try:
        return os.pidfd_open(pid) if hasattr(os, "pidfd_open") else None
    except OSError:  # an older kernel, or a sandbox that forbids it
        return None


def _write_some(pipe: IO[bytes], data: bytes) -> int:
    """Write what the pipe takes now; -1 if the child closed it (died, or never read)."""
    try:
        return os.write(pipe.fileno(), data[:65536])
    except BlockingIOError:
        return 0
    except (BrokenPipeError, ConnectionResetError):
        return -1


def _death(returncode: int) -> str:
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"was killed by {name} ({-returncode})"
    note = ""
    if returncode > 128:
        with contextlib.suppress(ValueError):
            note = f", as a shell reports death by {signal.Signals(returncode - 128).name}"
    return f"exited with code {returncode}{note}"


class _Stderr:
    """A child's stderr as it comes: its tail kept for the outcome, all of it to the sink."""

    def __init__(self, output: OutputSink | None, attempt: Attempt) -> None:
        self._output = output
        self._attempt = attempt
        self._tail = bytearray()
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")

    def add(self, chunk: bytes) -> None:
        self._tail += chunk
        if len(self._tail) > STDERR_TAIL * 8:
            del self._tail[:-STDERR_TAIL * 4]
        if self._output is not None:
            text = self._decoder.decode(chunk, final=not chunk)
            if text:
                self._output.write(self._attempt, text)

    def drain(self, fd: int) -> None:
        """What the dead child left in the pipe; never waits (a grandchild in a session
        of its own may hold the pipe open)."""
        os.set_blocking(fd, False)
        with contextlib.suppress(BlockingIOError, OSError):
            while chunk := os.read(fd, 65536):
                self.add(chunk)

    def end(self) -> None:
        if self._output is not None:
            self.add(b"")
            self._output.end(self._attempt)

    def tail(self) -> str:
        return bytes(self._tail[-STDERR_TAIL * 4:]).decode("utf-8", "replace")[
            -STDERR_TAIL:].strip()


def _quote(stderr_tail: str) -> str:
    return f"; stderr ends: {stderr_tail}" if stderr_tail else "; stderr was empty"
