"""`noetl logs WORKFLOW_ID [TASK.STEP]`: steps' output lines, from the ``NOETL_LOGS`` stream.

The workflow's record (any node answers `status`) says which steps it has
and how many attempts each had; the lines come from JetStream
(`Client.log_chunks`), whoever ran the step and wherever (docs/node.md).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import click

from noetl_actors.cli._cluster import call
from noetl_actors.cli._main import EXIT_INVALID, main, nats_options

__all__ = ["logs", "parse_step", "record_steps"]

ENDED = ("succeeded", "skipped", "cancelled")
"""A step in one of these states prints nothing more (unless its task runs it again)."""


def parse_step(text: str) -> tuple[str, str]:
    """``extract.read`` -> (``extract``, ``read``); ``t/2.s``: iteration 2 of looped task t.

    Raises:
        ValueError: it is not a task and a step joined by one dot.
    """
    task, dot, step = text.partition(".")
    if not dot or not task or not step or "." in step:
        raise ValueError(f"{text!r} is not TASK.STEP (a task and one of its steps joined by "
                         f"a dot, such as extract.read)")
    return task, step


def record_steps(record: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """(task, step) -> its status and attempts, in the playbook's order; a looped task's
    iterations as ``t/0``, ``t/1``... (the task name their lines carry)."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for task_name, task in (record.get("tasks") or {}).items():
        for step_name, step in (task.get("steps") or {}).items():
            found[(task_name, step_name)] = step
        for index, iteration in enumerate(task.get("iterations") or []):
            for step_name, step in (iteration.get("steps") or {}).items():
                found[(f"{task_name}/{index}", step_name)] = step
    return found


@main.command()
@click.argument("workflow_id")
@click.argument("step", required=False, metavar="[TASK.STEP]")
@click.option("--attempt", type=click.IntRange(min=1), metavar="N",
              help="Attempt N of the step (from 1) [default: its latest].")
@click.option("-f", "--follow", is_flag=True,
              help="Keep printing lines as they come, until the step or workflow ends.")
@nats_options
def logs(workflow_id: str, step: str | None, attempt: int | None, follow: bool,
         nats: Any) -> None:
    """Print the output lines of a workflow's steps (of one step with TASK.STEP).

    Each step's latest attempt, or attempt N with --attempt; without TASK.STEP
    every step's lines, each prefixed with its TASK.STEP.
    """
    chosen: tuple[str, str] | None = None
    if step is not None:
        try:
            chosen = parse_step(step)
        except ValueError as error:
            click.echo(f"noetl logs: {error}", err=True)
            sys.exit(EXIT_INVALID)
    elif attempt is not None:
        click.echo("noetl logs: --attempt needs TASK.STEP (the step whose attempt to show)",
                   err=True)
        sys.exit(EXIT_INVALID)
    call(nats, lambda client: _Printer(client, workflow_id, chosen, attempt).run(follow))


class _Printer:
    """Reads the workflow's chunks and prints the lines of the attempts shown."""

    def __init__(self, client: Any, workflow_id: str, step: tuple[str, str] | None,
                 attempt: int | None) -> None:
        self.client = client
        self.workflow_id = workflow_id
        self.step = step
        self.attempt = attempt
        self.shown: dict[tuple[str, str], int] = {}
        """Per step, the attempt whose lines are printed."""

    async def run(self, follow: bool) -> None:
        from noetl_actors.client import ApiError, ErrorKind

        record = await self.client.status(self.workflow_id)
        steps = record_steps(record)
        if self.step is not None and self.step not in steps:
            names = ", ".join(f"{t}.{s}" for t, s in steps) or "none"
            raise ApiError(ErrorKind.BAD_REQUEST, f"workflow {self.workflow_id} has no step "
                           f"'{self.step[0]}.{self.step[1]}' (its steps: {names})")
        if follow:  # from the first chunk on, each step's attempt as the record says
            for name, info in steps.items():
                self.shown[name] = self.attempt or int(info.get("attempts") or 0)
            await self._follow()
            return
        backlog: dict[tuple[str, str, int], list[str]] = {}
        dropped: dict[tuple[str, str, int], int] = {}
        async for chunk in self.client.log_chunks(self.workflow_id):
            key = (str(chunk["task"]), str(chunk["step"]), int(chunk["attempt"]))
            if self.step is None or key[:2] == self.step:
                backlog.setdefault(key, []).extend(str(line) for line in chunk["lines"])
                dropped[key] = int(chunk.get("dropped") or 0)
        for name, info in steps.items():
            seen = [a for (t, s, a) in backlog if (t, s) == name]
            latest = max([int(info.get("attempts") or 0), *seen])
            self.shown[name] = self.attempt or latest
        printed = False
        for key in self._order(steps, backlog):
            for line in backlog[key]:
                self._print(key, line)
                printed = True
            self._note_dropped(key, dropped.get(key, 0))
        if self.step is not None and not printed:
            shown = self.shown[self.step]
            what = f"attempt {shown}" if shown else "it has not run yet, so it"
            click.echo(f"noetl logs: {self.step[0]}.{self.step[1]} of {self.workflow_id}: "
                       f"{what} printed nothing", err=True)

    def _order(self, steps: dict[tuple[str, str], Any],
               backlog: dict[tuple[str, str, int], list[str]]) -> Iterator[tuple[str, str, int]]:
        for name in steps:
            key = (*name, self.shown[name])
            if key in backlog:
                yield key

    async def _follow(self) -> None:
        """Print each chunk of the attempts shown as it comes; a later attempt of a step
        (restarted meanwhile) takes its place, with a line on stderr that says so."""
        async for chunk in self.client.log_chunks(self.workflow_id, done=self._done):
            key = (str(chunk["task"]), str(chunk["step"]), int(chunk["attempt"]))
            name = key[:2]
            if self.step is not None and name != self.step:
                continue
            lines = [str(line) for line in chunk["lines"]]
            shown = self.shown.get(name, 0)
            if self.attempt is None and key[2] > shown:
                self.shown[name] = shown = key[2]
                click.echo(f"noetl logs: {name[0]}.{name[1]} attempt {shown}:", err=True)
            if key[2] != shown:
                continue
            for line in lines:
                self._print(key, line)
            if chunk.get("end"):
                self._note_dropped(key, int(chunk.get("dropped") or 0))

    async def _done(self) -> bool:
        record = await self.client.status(self.workflow_id)
        if record.get("status") != "running":
            return True
        if self.step is None:
            return False
        return record_steps(record).get(self.step, {}).get("status") in ENDED

    def _print(self, key: tuple[str, str, int], line: str) -> None:
        if self.step is None:
            click.echo(f"{key[0]}.{key[1]} | {line}")
        else:
            click.echo(line)
        sys.stdout.flush()

    def _note_dropped(self, key: tuple[str, str, int], count: int) -> None:
        if count:
            click.echo(f"noetl logs: {count} more lines of {key[0]}.{key[1]} attempt {key[2]} "
                       f"were not kept (an attempt keeps 4 MiB)", err=True)
