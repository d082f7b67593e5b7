"""The runners: outcomes, timeouts, cancel, crashes and cleanup, with real threads and processes."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
import threading
import time
import types
from pathlib import Path
from typing import Any

import attrs
import pytest

import noetl_actors.runners
from noetl_actors.runners import (
    CANCELLED,
    CRASH,
    TIMEOUT,
    Attempt,
    InprocRunner,
    Outcome,
    PluginInfo,
    ProcessAttempt,
    ProcessRunner,
    Runner,
    RunningAttempt,
    Status,
)
from noetl_actors.runners._invoke import load_entry
from tests.plugin_helpers import (
    WAIT,
    attempt,
    builtin,
    gone,
    make_plugin,
    reaped,
    run,
    wait_gone,
)

pytest_plugins = ["tests.runner_fixtures"]  # the runner fixtures

PROMPT = 10.0
"""A cancel of a cooperative plugin ends its attempt within this many seconds (it takes
ms): far less than the 30 s its plugin would sleep, and room for a loaded box."""


def test_the_runners_package_exports_exactly_its_all() -> None:
    # A submodule (the Job entrypoint, `python -m noetl_actors.runners.entry`) is an
    # attribute of the package once something imported it: not an export.
    public = {n for n, v in vars(noetl_actors.runners).items()
              if not n.startswith("_") and not isinstance(v, types.ModuleType)}
    assert public == set(noetl_actors.runners.__all__)


def test_the_runners_and_the_child_import_no_nats_yaml_cli_or_other_layer() -> None:
    """Runners sit below the playbook layer; the child reads no manifest, so needs no YAML."""
    script = textwrap.dedent("""
        import sys
        BLOCKED = {"nats", "yaml", "click", "rich", "textual", "noetl_actors.bridge",
                   "noetl_actors.playbook", "noetl_actors.runtime", "noetl_actors.supervision"}
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name in BLOCKED or name.split(".")[0] in BLOCKED:
                    raise ImportError(f"the runners imported {name}")
        sys.meta_path.insert(0, Block())
        import noetl_actors.runners
        import noetl_actors.runners._child
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.stdout.strip() == "ok", result.stderr


# -- the records ----------------------------------------------------------------------------


class TestRecords:
    def test_an_attempt_has_a_command_id_per_workflow_step_and_number(self) -> None:
        first = Attempt(workflow_id="w1", task="load", step="get", number=1, plugin="echo")
        assert first.command_id == "w1.load.get.1"
        assert attrs.evolve(first, number=2).command_id == "w1.load.get.1"  # given, kept
        again = Attempt(workflow_id="w1", task="load", step="get", number=2, plugin="echo")
        assert again.command_id == "w1.load.get.2"

    @pytest.mark.parametrize(("field", "value", "problem"), [
        ("number", 0, "number must be >= 1 (got 0)"),
        ("timeout", 0, "timeout must be > 0 or None (got 0)"),
        ("timeout", -1.5, "timeout must be > 0 or None (got -1.5)"),
    ])
    def test_an_attempt_refuses_impossible_numbers(self, field: str, value: float,
                                                   problem: str) -> None:
        fields: dict[str, Any] = {"workflow_id": "w", "task": "t", "step": "s", "number": 1,
                                  "plugin": "echo", field: value}
        with pytest.raises(ValueError, match=f"^{problem}$".replace("(", r"\(").replace(
                ")", r"\)")):
            Attempt(**fields)

    def test_attempts_and_outcomes_go_through_json_unchanged(self) -> None:
        one = attempt("echo", within=2.5, msg="hi")
        assert Attempt.from_json(one.to_json()) == one
        done = Outcome.failed("ShellError", "exit 3", started_at=1.0, detail="tail")
        assert Outcome.from_json(done.to_json()) == done
        assert Outcome.failed(CANCELLED, "stop", started_at=1.0).status is Status.CANCELLED

    def test_a_failed_outcome_needs_an_error_type(self) -> None:
        data = Outcome.succeeded(1, started_at=1.0).to_json() | {"status": "failed"}
        with pytest.raises(ValueError, match="a failed outcome needs an error_type"):
            Outcome.from_json(data)


# -- what every runner does ------------------------------------------------------------------


BOOM = """
    from noetl_actors.runners import PluginError

    def run(input, ctx):
        if input.get("named"):
            raise PluginError("the disk is full", error_type="DiskFull")
        raise LookupError("no such row")
"""


def test_both_runners_satisfy_the_protocols(any_runner: Runner) -> None:
    assert isinstance(any_runner, Runner)
    handle = any_runner.start(builtin("echo"), attempt("echo"))
    assert isinstance(handle, RunningAttempt)
    assert handle.wait(WAIT) is not None


def test_a_plugin_error_type_and_any_exception_class_name_are_the_error_type(
        any_runner: Runner, tmp_path: Path) -> None:
    boom = make_plugin(tmp_path, "boom", BOOM)
    named = run(any_runner, boom, named=True)
    assert (named.status, named.error_type, named.message) == (
        Status.FAILED, "DiskFull", "the disk is full")
    assert named.detail == ""  # a failure on purpose carries no traceback
    other = run(any_runner, boom)
    assert (other.error_type, other.message) == ("LookupError", "no such row")
    assert "Traceback" in other.detail and "raise LookupError" in other.detail


def test_an_attempt_is_alive_until_its_outcome_and_calls_back_once(any_runner: Runner) -> None:
    seen: list[Outcome] = []
    called = threading.Event()
    handle = any_runner.start(builtin("sleep"), attempt("sleep", seconds=30))

    def done(outcome: Outcome) -> None:
        seen.append(outcome)
        called.set()

    handle.add_done_callback(done)
    assert handle.alive()
    assert handle.wait(0.05) is None
    handle.cancel()
    outcome = handle.wait(WAIT)
    assert called.wait(WAIT)
    assert not handle.alive()
    assert seen == [outcome]
    late: list[Outcome] = []
    handle.add_done_callback(late.append)  # already done: called at once, here
    assert late == [outcome]
    handle.cancel()  # no effect once it ended
    assert handle.wait(0) == outcome


def test_cancel_of_sleep_is_prompt(any_runner: Runner) -> None:
    handle = any_runner.start(builtin("sleep"), attempt("sleep", seconds=30))
    if isinstance(handle, ProcessAttempt):
        # Give the child time to reach the sleep, so that the cooperative path (SIGTERM
        # sets ctx.cancelled) is the one measured. Either path must be prompt.
        assert handle.wait(0.3) is None
    began = time.monotonic()
    handle.cancel()
    outcome = handle.wait(WAIT)
    took = time.monotonic() - began
    assert outcome is not None and outcome.status is Status.CANCELLED
    assert outcome.error_type == CANCELLED
    assert "was cancelled" in outcome.message
    assert "abandoned" not in outcome.message
    assert took < PROMPT, f"cancel took {took:.2f}s"
    assert any_runner.statistics().abandoned == 0


def test_a_timeout_stops_the_attempt(any_runner: Runner) -> None:
    began = time.monotonic()
    outcome = run(any_runner, "sleep", within=0.2, seconds=30)
    took = time.monotonic() - began
    assert outcome.error_type == TIMEOUT and outcome.status is Status.FAILED
    assert 0.2 <= took < 0.2 + PROMPT


def test_the_statistics_count_started_and_running(any_runner: Runner) -> None:
    handle = any_runner.start(builtin("sleep"), attempt("sleep", seconds=30))
    stats = any_runner.statistics()
    assert (stats.started, stats.running) == (1, 1)
    handle.cancel()
    handle.wait(WAIT)
    assert any_runner.statistics().running == 0


def test_start_refuses_a_plugin_of_another_name(any_runner: Runner) -> None:
    with pytest.raises(ValueError, match="is for plugin 'sleep', not 'echo'"):
        any_runner.start(builtin("echo"), attempt("sleep"))


def test_close_cancels_what_runs_and_refuses_new_attempts() -> None:
    for runner in (InprocRunner(cancel_grace=0.3), ProcessRunner(term_grace=0.5)):
        handle = runner.start(builtin("sleep"), attempt("sleep", seconds=30))
        runner.close(timeout=5)
        outcome = handle.wait(0)
        assert outcome is not None and outcome.error_type == CANCELLED, runner.name
        with pytest.raises(RuntimeError, match="closed"):
            runner.start(builtin("echo"), attempt("echo"))


# -- in process ------------------------------------------------------------------------------


STUBBORN = """
    import threading

    RELEASE = threading.Event()

    def run(input, ctx):
        RELEASE.wait(10)   # ignores ctx.cancelled on purpose
        return "finally"
"""


class TestInproc:
    def test_a_plugin_that_ignores_cancel_is_abandoned_and_its_thread_replaced(
            self, tmp_path: Path) -> None:
        stubborn = make_plugin(tmp_path, "stubborn", STUBBORN)
        runner = InprocRunner(max_workers=1, cancel_grace=0.2)
        try:
            handle = runner.start(stubborn, attempt("stubborn"))
            assert handle.wait(0.05) is None
            began = time.monotonic()
            handle.cancel()
            outcome = handle.wait(WAIT)
            assert outcome is not None and outcome.error_type == CANCELLED
            assert time.monotonic() - began < PROMPT
            assert "did not return within 0.2s" in outcome.message
            assert "thread was abandoned" in outcome.message
            assert runner.statistics().abandoned == 1
            # The one pool thread is stuck, yet the pool still runs attempts.
            assert run(runner, "echo", x=1).output == {"x": 1}
        finally:
            load_entry(stubborn).RELEASE.set()  # let the abandoned thread end
            runner.close(timeout=5)

    def test_a_timeout_while_queued_means_the_plugin_never_runs(self, tmp_path: Path) -> None:
        stubborn = make_plugin(tmp_path, "stubborn", STUBBORN)
        counter = make_plugin(tmp_path, "counter", """
            CALLS = []

            def run(input, ctx):
                CALLS.append(1)
        """)
        runner = InprocRunner(max_workers=1, cancel_grace=0.2)
        try:
            busy = runner.start(stubborn, attempt("stubborn"))
            queued = runner.start(counter, attempt("counter", within=0.1))
            outcome = queued.wait(WAIT)
            assert outcome is not None and outcome.error_type == TIMEOUT
            load_entry(stubborn).RELEASE.set()
            assert busy.wait(WAIT) is not None
            assert run(runner, "echo").ok  # the queue moved on past the dropped attempt
            assert load_entry(counter).CALLS == []
        finally:
            load_entry(stubborn).RELEASE.set()
            runner.close(timeout=5)

    def test_an_instant_plugin_runs_on_the_callers_thread_and_returns_settled(
            self, tmp_path: Path) -> None:
        code = """
            import threading

            def run(input, ctx):
                return {"thread": threading.current_thread().name}
        """
        instant = make_plugin(tmp_path, "quick", code, extra="instant: true\n")
        plain = make_plugin(tmp_path, "plain", code)
        assert instant.instant and not plain.instant and builtin("echo").instant
        runner = InprocRunner(max_workers=1)
        try:
            handle = runner.start(instant, attempt("quick"))
            assert not handle.alive(), "an instant attempt returns settled"
            outcome = handle.wait(0)
            assert outcome is not None and outcome.ok
            assert outcome.output == {"thread": threading.current_thread().name}
            pooled = run(runner, plain)
            assert pooled.ok and pooled.output["thread"] != threading.current_thread().name
            assert runner.statistics().running == 0

            now = runner.run_now(instant, attempt("quick"))  # the same, without a handle
            assert now.ok and now.output == {"thread": threading.current_thread().name}
            assert runner.statistics().started == 3
            with pytest.raises(ValueError, match="'plain' is not instant"):
                runner.run_now(plain, attempt("plain"))
        finally:
            runner.close(timeout=5)
        with pytest.raises(RuntimeError, match="closed"):
            runner.run_now(instant, attempt("quick"))

    def test_attempts_run_in_parallel_up_to_max_workers(self) -> None:
        runner = InprocRunner(max_workers=4)
        try:
            handles = [runner.start(builtin("sleep"), attempt("sleep", seconds=1.0))
                       for _ in range(4)]
            outcomes = [h.wait(WAIT) for h in handles]
            assert all(o is not None and o.ok for o in outcomes)
            # Together, they end within moments of each other; one after the
            # other, a second apart (3 s from the first end to the last).
            ends = [o.finished_at for o in outcomes if o is not None]
            assert max(ends) - min(ends) < 1.0
        finally:
            runner.close(timeout=5)

    def test_a_burst_of_waiting_attempts_from_threads_all_run_on_the_loop(self) -> None:
        """2,000 `sleep` attempts started at once from four threads (burst after burst
        joins one wake-up of the runner's loop): every one runs and ends."""
        runner = InprocRunner(max_workers=1)
        handles: list[Any] = []
        lock = threading.Lock()

        def start() -> None:
            for _ in range(500):
                handle = runner.start(builtin("sleep"), attempt("sleep", seconds=0.2))
                with lock:
                    handles.append(handle)

        try:
            starters = [threading.Thread(target=start) for _ in range(4)]
            for starter in starters:
                starter.start()
            for starter in starters:
                starter.join(WAIT)
            outcomes = [handle.wait(WAIT) for handle in handles]
            assert len(outcomes) == 2000
            assert all(o is not None and o.ok and o.output == {"slept": 0.2} for o in outcomes)
        finally:
            runner.close(timeout=5)


# -- in a subprocess -------------------------------------------------------------------------


TERM_PROOF = """
    import signal, sys

    def run(input, ctx):
        ctx.cancelled.wait()           # SIGTERM arrives and is noticed...
        sys.stderr.write("still here\\n")
        sys.stderr.flush()
        signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGTERM])
        while True:                    # ...and ignored
            pass
"""

SUICIDE = """
    import os, signal

    def run(input, ctx):
        os.kill(os.getpid(), getattr(signal, input["signal"]))
"""

CHATTY = """
    import subprocess

    def run(input, ctx):
        print("print() goes to stderr, not into the answer")
        subprocess.run(["echo", "so does a subprocess"], check=True)
        return "clean"
"""


class TestProcess:
    def test_hang_times_out_then_its_child_is_killed_and_reaped(
            self, process: ProcessRunner) -> None:
        handle = process.start(builtin("fail"), attempt("fail", within=0.3, mode="hang"))
        outcome = handle.wait(WAIT)
        assert outcome is not None and outcome.error_type == TIMEOUT
        assert handle.pid is not None
        assert gone(handle.pid) and reaped(handle.pid)

    def test_a_child_that_ignores_sigterm_gets_sigkill_after_the_grace(
            self, tmp_path: Path) -> None:
        proof = make_plugin(tmp_path, "proof", TERM_PROOF, modes="[process]")
        runner = ProcessRunner(term_grace=0.3)
        try:
            began = time.monotonic()  # the timeout counts from start(): measure from there
            # A timeout long enough for the child to start on a loaded box: it must be
            # waiting for its cancel when SIGTERM comes, to show that it ignored it.
            handle = runner.start(proof, attempt("proof", within=2.0))
            outcome = handle.wait(WAIT)
            took = time.monotonic() - began
            assert outcome is not None and outcome.error_type == TIMEOUT
            assert "still here" in outcome.detail  # it saw SIGTERM and carried on
            assert took >= 2.0 + 0.3, "SIGKILL came before the grace was over"
            assert handle.pid is not None and gone(handle.pid) and reaped(handle.pid)
        finally:
            runner.close(timeout=5)

    def test_cancel_kills_the_whole_process_group(self, process: ProcessRunner,
                                                  tmp_path: Path) -> None:
        handle = process.start(builtin("shell"), attempt(
            "shell", command="sleep 30 & echo $! > pid.tmp; mv pid.tmp pid; wait",
            cwd=str(tmp_path)))
        pid_file = tmp_path / "pid"
        deadline = time.monotonic() + WAIT
        while not pid_file.exists():  # the grandchild is running once its pid is written
            assert time.monotonic() < deadline and handle.alive()
            time.sleep(0.01)
        handle.cancel()
        outcome = handle.wait(WAIT)
        assert outcome is not None and outcome.error_type == CANCELLED
        assert wait_gone(int(pid_file.read_text()))

    @pytest.mark.parametrize(("signal_name", "said"), [
        ("SIGKILL", "was killed by SIGKILL (9)"),
        ("SIGSEGV", "was killed by SIGSEGV (11)"),
    ])
    def test_death_by_a_signal_is_a_crash_naming_it(self, process: ProcessRunner,
                                                    tmp_path: Path, signal_name: str,
                                                    said: str) -> None:
        suicide = make_plugin(tmp_path, "suicide", SUICIDE, modes="[process]")
        outcome = run(process, suicide, signal=signal_name)
        assert outcome.error_type == CRASH
        assert said in outcome.message
        assert "the suicide plugin's process (pid " in outcome.message

    def test_what_a_plugin_prints_does_not_corrupt_the_answer(self, process: ProcessRunner,
                                                              tmp_path: Path) -> None:
        chatty = make_plugin(tmp_path, "chatty", CHATTY, modes="[process]")
        outcome = run(process, chatty)
        assert outcome.output == "clean"

    @pytest.mark.parametrize(("script", "said"), [
        ("echo not json", "exited 0 without a valid answer on stdout"),
        ("echo '{\"schema_version\": 1}'", "exited 0 without a valid answer on stdout"),
        ("true", "exited 0 without a valid answer on stdout"),
        ("echo half; echo broken >&2; exit 3", "exited with code 3; stderr ends: broken"),
    ])
    def test_a_malformed_or_missing_answer_is_a_crash(self, tmp_path: Path, script: str,
                                                      said: str) -> None:
        fake = tmp_path / "fake-python"
        fake.write_text(f"#!/bin/sh\ncat >/dev/null\n{script}\n")
        fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
        runner = ProcessRunner(python=str(fake))
        try:
            outcome = run(runner, "echo")
        finally:
            runner.close(timeout=5)
        assert outcome.error_type == CRASH
        assert said in outcome.message

    def test_a_child_that_cannot_start_is_a_crash(self) -> None:
        runner = ProcessRunner(python="/no/such/python")
        try:
            outcome = run(runner, "echo")
        finally:
            runner.close(timeout=5)
        assert outcome.error_type == CRASH
        assert outcome.message.startswith("cannot start /no/such/python")

    def test_a_big_input_and_output_cross_the_pipes(self, process: ProcessRunner) -> None:
        blob = "x" * 1_000_000
        assert run(process, "echo", blob=blob).output == {"blob": blob}

    def test_no_child_or_pipe_is_left_after_many_attempts(self, process: ProcessRunner) -> None:
        fds_before = len(os.listdir("/proc/self/fd"))
        handles: list[ProcessAttempt] = [
            process.start(builtin("echo"), attempt("echo", i=i)) for i in range(4)]
        handles.append(process.start(builtin("sleep"), attempt("sleep", seconds=30)))
        handles[-1].cancel()
        for handle in handles:
            assert handle.wait(WAIT) is not None
            handle.join(WAIT)
            assert handle.pid is not None and reaped(handle.pid)
        assert len(os.listdir("/proc/self/fd")) == fds_before


def test_plugin_info_needs_no_folder_for_the_validator() -> None:
    """Tests and tools build PluginInfo by hand; the runner default is the first mode."""
    info = PluginInfo(name="x", modes=("process", "inproc"))
    assert info.runner == "process"
    assert info.entry is None
