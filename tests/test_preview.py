"""`noetl preview` and `noetl lint`: what the supervisors would do, step by step."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from noetl_actors.playbook import lint, parse_playbook
from noetl_actors.runtime import FAILS_ALWAYS, parse_failure, run_preview


def _playbook(task_supervision: str, *, workflow: str = "{max_restarts: 0}",
              extra: str = "") -> str:
    return textwrap.dedent(f"""\
        apiVersion: noetl.io/v1
        kind: Playbook
        name: pv
        supervision: {workflow}
        tasks:
          - name: t
            supervision: {task_supervision}
            steps:
              - {{name: a, plugin: echo}}
              - {{name: b, plugin: echo, with: {{msg: "{{{{ steps.a.output.x }}}}"}}}}
              - {{name: c, plugin: echo}}
        """) + textwrap.indent(textwrap.dedent(extra), "  ")


def _executions(text: str, **failures: int) -> dict[str, int]:
    fails = {tuple(k.split("__")): v for k, v in failures.items()}
    result = run_preview(parse_playbook(text), fails)  # type: ignore[arg-type]
    return {f"{t}.{s}": n for (t, s), n in result.executions.items()}


@pytest.mark.parametrize(
    ("strategy", "expected"),
    [
        ("one_for_one", {"t.a": 1, "t.b": 3, "t.c": 1}),
        ("rest_for_one", {"t.a": 1, "t.b": 3, "t.c": 1}),
        ("one_for_all", {"t.a": 3, "t.b": 3, "t.c": 1}),
    ],
)
def test_each_task_strategy_reruns_the_steps_it_should(strategy: str, expected: dict[str, int]
                                                       ) -> None:
    text = _playbook(f"{{strategy: {strategy}, max_restarts: 3, within: 1m}}")
    result = run_preview(parse_playbook(text), {("t", "b"): 2})
    assert result.succeeded
    assert {f"{t}.{s}": n for (t, s), n in result.executions.items()} == expected
    report = result.report()
    assert f"restarted by task t ({strategy}, at most 3 restarts in 60s)" in report
    assert "outcome: succeeded" in report


def test_a_task_past_its_limit_gives_up_and_the_workflow_fails_with_the_chain() -> None:
    result = run_preview(parse_playbook(_playbook("{max_restarts: 1, within: 1m}")),
                         {("t", "b"): FAILS_ALWAYS})
    assert not result.succeeded
    assert result.executions[("t", "b")] == 2
    assert result.executions[("t", "c")] == 0
    assert result.outcome is not None
    assert [link.path for link in result.outcome.chain()] == ["/pv", "/pv/t", "/pv/t/b"]
    report = result.report()
    assert "t                            gives up: more than 1 restart within 60s" in report
    assert "outcome: failed: /pv gave up" in report


def test_the_workflow_restarts_a_task_that_gave_up_within_its_own_limit() -> None:
    text = _playbook("{max_restarts: 0, within: 1m}", workflow="{max_restarts: 1, within: 1m}")
    result = run_preview(parse_playbook(text), {("t", "b"): 1})
    assert result.succeeded
    assert result.executions == {("t", "a"): 2, ("t", "b"): 2, ("t", "c"): 1}
    assert "restarted by workflow (one_for_one, at most 1 restart in 60s); restart #1" in \
        result.report()


def test_worst_case_from_lint_is_what_preview_reaches_when_a_step_always_fails() -> None:
    text = _playbook("{strategy: one_for_all, max_restarts: 2, within: 1m}",
                     workflow="{max_restarts: 2, within: 1m}")
    playbook = parse_playbook(text)
    worst, _ = lint(playbook)
    result = run_preview(playbook, {("t", "b"): FAILS_ALWAYS})
    assert {(w.task, w.step): w.executions for w in worst}[("t", "b")] == 9
    assert result.executions[("t", "b")] == 9


def test_backoff_delays_show_in_simulated_time() -> None:
    text = _playbook("{max_restarts: 3, within: 1m, backoff: {initial: 1s, max: 10s}}")
    report = run_preview(parse_playbook(text), {("t", "b"): 2}).report()
    assert "task t waits 1s before restarting it (backoff)" in report
    assert "task t waits 2s before restarting it (backoff)" in report
    assert "t+3.000s  t.c" in report


def test_a_task_never_starts_when_a_task_it_needs_failed() -> None:
    text = _playbook("{max_restarts: 0, within: 1m}", extra="""\
          - name: after
            needs: [t]
            steps: [{name: post, plugin: echo}]
        """)
    result = run_preview(parse_playbook(text), {("t", "a"): FAILS_ALWAYS})
    assert result.executions[("after", "post")] == 0
    assert result.outcome is not None and "did not finish" not in result.outcome.message


def test_a_temporary_step_that_fails_lets_the_task_go_on() -> None:
    text = _playbook("{max_restarts: 3, within: 1m}").replace(
        "{name: b, plugin: echo,", "{name: b, plugin: echo, restart: temporary,")
    result = run_preview(parse_playbook(text), {("t", "b"): FAILS_ALWAYS})
    assert result.succeeded
    assert result.executions == {("t", "a"): 1, ("t", "b"): 1, ("t", "c"): 1}


@pytest.mark.parametrize(("action", "restarts_of_task"), [("stop", 0), ("escalate", 1)])
def test_on_error_stop_ends_the_task_and_escalate_lets_the_workflow_decide(
    action: str, restarts_of_task: int
) -> None:
    text = _playbook("{max_restarts: 3, within: 1m}", workflow="{max_restarts: 1, within: 1m}")
    text = text.replace("{name: b, plugin: echo,",
                        f"{{name: b, plugin: echo, on_error: {{SimulatedFailure: {action}}},")
    result = run_preview(parse_playbook(text), {("t", "b"): FAILS_ALWAYS})
    assert not result.succeeded
    assert result.executions[("t", "b")] == 1 + restarts_of_task, "no restart inside the task"
    assert result.executions[("t", "c")] == 0


def test_parse_failure_reads_task_step_and_count() -> None:
    assert parse_failure("extract.parse=2") == ("extract", "parse", 2)
    assert parse_failure("extract.parse=always") == ("extract", "parse", FAILS_ALWAYS)
    for bad in ("extract=2", "extract.parse", "extract.parse=two", ".p=1"):
        with pytest.raises(ValueError, match=r"TASK\.STEP=N|whole number"):
            parse_failure(bad)


def test_a_failure_on_an_unknown_step_is_refused() -> None:
    with pytest.raises(ValueError, match="has no step 'zz'"):
        run_preview(parse_playbook(_playbook("{max_restarts: 1}")), {("t", "zz"): 1})


def test_lint_warns_on_permanent_steps_non_idempotent_reruns_and_missing_timeouts() -> None:
    text = textwrap.dedent("""\
        apiVersion: noetl.io/v1
        kind: Playbook
        name: risky
        tasks:
          - name: t
            supervision: {strategy: one_for_all}
            steps:
              - {name: fetch, plugin: http, with: {url: "https://example.org"}}
              - {name: loop, plugin: echo, restart: permanent}
        """)
    _, warnings = lint(parse_playbook(text, "risky.yaml"))
    messages = [str(w) for w in warnings]
    assert any(m.startswith("risky.yaml:8:9: warning: task t is one_for_all") and "http"
               in m for m in messages)
    assert any(m.startswith("risky.yaml:8:9: warning: step t.fetch uses http, a network plugin,"
                            " with no timeout") for m in messages)
    assert any(m.startswith("risky.yaml:9:9: warning: step t.loop is permanent") for m in messages)


def _noetl(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "noetl_actors.cli", *args],
                          capture_output=True, text=True, timeout=120, cwd=cwd)


def test_the_cli_previews_validates_lints_and_prints_the_schema(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(_playbook("{strategy: one_for_all, max_restarts: 3, within: 1m}"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: noetl.io/v1\nkind: Playbook\nname: x\ntasks: {}\n")

    preview = _noetl("preview", str(good), "--fail", "t.b=2")
    assert preview.returncode == 0, preview.stderr
    assert "executions:" in preview.stdout and "t.a  3" in preview.stdout

    failing = _noetl("preview", str(good), "--fail", "t.b=always")
    assert failing.returncode == 1
    assert "outcome: failed" in failing.stdout

    misuse = _noetl("preview", str(good), "--fail", "t.zz=1")
    assert misuse.returncode == 2 and "has no step 'zz'" in misuse.stderr

    validate = _noetl("validate", str(good), str(bad))
    assert validate.returncode == 2
    assert f"{good}: valid (1 tasks, 3 steps)" in validate.stdout
    assert f"{bad}:4:8: tasks must be a list" in validate.stderr

    lint_run = _noetl("lint", str(good))
    assert lint_run.returncode == 0 and "t.b" in lint_run.stdout

    schema = json.loads(_noetl("schema").stdout)
    assert schema["properties"]["kind"] == {"const": "Playbook"}
    assert "echo" in schema["$defs"]["step"]["properties"]["plugin"]["enum"]


def test_set_overrides_vars_for_validation(tmp_path: Path) -> None:
    path = tmp_path / "vars.yaml"
    path.write_text(textwrap.dedent("""\
        apiVersion: noetl.io/v1
        kind: Playbook
        name: v
        tasks:
          - name: t
            steps: [{name: s, plugin: echo, with: {msg: "{{ vars.region }}"}}]
        """))
    assert _noetl("validate", str(path)).returncode == 2
    assert _noetl("validate", str(path), "--set", "region=eu").returncode == 0
    assert _noetl("validate", str(path), "--set", "oops").returncode == 2
