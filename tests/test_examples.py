"""Every playbook in examples/ runs through `noetl run --json` with the outcome it promises."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.run_helpers import EXAMPLES, attempts, noetl, run_playbook, starts, steps_of

FAILING = {"timeout"}
"""Examples that show a failure: they exit 1."""


def _check_flaky(report: dict[str, Any]) -> None:
    assert attempts(report) == {"fetch.prepare": 1, "fetch.call": 3, "fetch.store": 1}


def _check_all_for_one(report: dict[str, Any]) -> None:
    assert attempts(report) == {
        "transaction.begin": 2, "transaction.write": 2, "transaction.commit": 2}
    begin = steps_of(report, "transaction")["begin"]
    assert begin["output"] == {"tx": f"{report['workflow_id']}-2"}


def _check_escalation(report: dict[str, Any]) -> None:
    assert starts(report) == {"load": 2}
    assert attempts(report) == {"load.connect": 2, "load.insert": 2}


def _check_hello(report: dict[str, Any]) -> None:
    assert steps_of(report, "greet")["say"]["output"] == {"msg": "hello world from hello"}
    assert steps_of(report, "confirm")["done"]["output"]["msg"].startswith("greet said: ")


def _check_parallel_etl(report: dict[str, Any]) -> None:
    orders, customers = report["tasks"]["orders"], report["tasks"]["customers"]
    assert orders["started_at"] < customers["finished_at"]
    assert customers["started_at"] < orders["finished_at"]
    assert steps_of(report, "transform")["merge"]["output"] == {"orders": 120, "customers": 45}


def _check_timeout(report: dict[str, Any]) -> None:
    hang = steps_of(report, "slow")["hang"]
    assert hang["attempts"] == 2
    assert hang["error"]["type"] == "timeout", hang
    assert len(report["error"]["chain"]) == 3


def _check_branch_and_loop(report: dict[str, Any]) -> None:
    check = report["tasks"]["check"]
    assert check["loop"]["items"] == 3 and check["loop"]["succeeded"] == 3
    assert [it["steps"]["warn"]["status"] for it in check["iterations"]] == [
        "skipped", "skipped", "succeeded"], "only apac's name is longer than 3"
    assert steps_of(report, "load")["all"]["output"] == {"loaded": ["eu", "us", "apac"]}
    assert report["tasks"]["alert"]["status"] == "skipped"


CHECKS = {"branch-and-loop": _check_branch_and_loop, "flaky": _check_flaky,
          "all-for-one": _check_all_for_one,
          "escalation": _check_escalation, "hello": _check_hello,
          "parallel-etl": _check_parallel_etl, "timeout": _check_timeout}


@pytest.mark.parametrize("example", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_example_runs_with_the_outcome_it_promises(example: Path, tmp_path: Path) -> None:
    result, report = run_playbook(example, tmp_path / "nats")

    expected = "failed" if example.stem in FAILING else "succeeded"
    assert report["status"] == expected, report["error"]
    assert result.returncode == (1 if expected == "failed" else 0), result.stderr
    assert report["playbook"] == example.stem
    if expected == "succeeded":
        assert report["error"] is None
        for task in report["tasks"].values():
            assert task["status"] in ("succeeded", "skipped")
    if example.stem in CHECKS:
        CHECKS[example.stem](report)


def test_the_examples_cover_what_the_quick_start_promises() -> None:
    names = {path.stem for path in EXAMPLES.glob("*.yaml")}
    assert {"hello", "parallel-etl", "flaky", "all-for-one", "escalation", "timeout"} <= names


def test_branch_and_loop_takes_the_other_branch_with_a_higher_threshold(tmp_path: Path) -> None:
    """What its comment promises: `--set threshold=3` takes the other branch."""
    result, report = run_playbook(EXAMPLES / "branch-and-loop.yaml", tmp_path / "nats",
                                  "--set", "threshold=3")
    assert result.returncode == 0, result.stderr
    assert report["tasks"]["load"]["status"] == "skipped"
    assert report["tasks"]["load"]["skipped"] == (
        "not reached: no route to it was taken (from check)")
    assert steps_of(report, "alert")["page"]["output"] == {
        "msg": "a region is below the threshold"}


@pytest.mark.parametrize("example", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_example_previews_as_a_run_that_succeeds(example: Path, tmp_path: Path) -> None:
    """A preview has no plugin: templates over its stand-in outputs (`| length`,
    arithmetic, comparisons) render, and conditions on them are false."""
    result = noetl("preview", example, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "outcome: succeeded: all tasks finished" in result.stdout
