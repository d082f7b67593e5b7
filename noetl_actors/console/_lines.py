"""`StepLines`: the output lines of the step selected in the console (`noetl logs`, live).

Read from the ``NOETL_LOGS`` stream with `Client.log_chunks`, followed for as
long as the step stays selected: its latest attempt's lines, and a line
that says so when a later attempt (a restart) begins.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import RichLog

__all__ = ["LINES", "StepLines", "step_of"]

LINES = 2000
"""Lines the pane keeps."""


def step_of(path: str) -> tuple[str, str, str] | None:
    """(workflow id, task, step) of a step's path, ``/<node>/workflows/<id>/<task>/<step>``
    (an iteration's: ``.../<task>/<n>/<step>``, task ``<task>/<n>``); None for another."""
    parts = path.strip("/").split("/")
    if len(parts) < 5 or parts[1] != "workflows":
        return None
    rest = parts[3:]
    if len(rest) == 2:
        return parts[2], rest[0], rest[1]
    if len(rest) == 3 and rest[1].isdigit():
        return parts[2], f"{rest[0]}/{rest[1]}", rest[2]
    return None


class StepLines(RichLog):
    """A pane of one step's output lines; `follow()` fills it until cancelled."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(max_lines=LINES, wrap=False, markup=False, **kwargs)
        self.step: tuple[str, str, str] | None = None
        """What it shows: (workflow id, task, step), or None."""
        self.attempt = 0

    def show_nothing(self, why: str) -> None:
        self.step = None
        self.clear()
        self.write(Text(why, style="dim"))

    async def follow(self, client: Any, step: tuple[str, str, str]) -> None:
        """Show `step`'s lines, oldest first, then as they come (until the worker running
        this is cancelled: another step selected)."""
        self.step = step
        self.attempt = 0
        self.clear()
        self.border_title = f"output of {step[1]}.{step[2]}"
        workflow_id, task, name = step

        async def never() -> bool:
            return False

        async for chunk in client.log_chunks(workflow_id, done=never):
            if (chunk.get("task"), chunk.get("step")) != (task, name):
                continue
            attempt = int(chunk["attempt"])
            if attempt < self.attempt:
                continue
            if attempt > self.attempt:
                self.attempt = attempt
                self.write(Text(f"— attempt {attempt} —", style="dim"))
            for line in chunk["lines"]:
                self.write(Text(str(line)))
            if chunk.get("dropped"):
                self.write(Text(f"({chunk['dropped']} more lines were not kept)", style="dim"))
