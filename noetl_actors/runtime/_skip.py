"""Skipped tasks and steps: a `when:` that did not hold, or a need that did not run.

A skipped task or step is still a child of its supervisor, for one turn: an
actor that tells its parent what a finished one would (no output) and exits
normally with error type `SKIPPED` and the reason as its message. So the
kernel needs no new exit kind, the live tree and the history show it, and
its parent goes on as after any finished child. A `when:` that does not
render is that actor's crash, of error type ``template``, as a `with:` that
does not render: `on_error:` and the restart policy apply.

Decided conditions need no record of their own for a takeover: a condition
reads only `vars`, the workflow's id and name, and outputs that the new owner
replays from the history, so evaluated again it gives the same answer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import attrs

from noetl_actors.errors import TemplateError
from noetl_actors.playbook import condition_holds
from noetl_actors.supervision import ExitKind, ExitReason, SupervisedActor

__all__ = ["SKIPPED", "Skip", "decide", "is_skip"]

SKIPPED = "skipped"
"""The error type of the normal exit of a skipped task or step."""


def decide(when: str | bool | None, context: Mapping[str, Any]) -> str | TemplateError | None:
    """Why a task or step with `when` is skipped in `context`: None if it runs, a
    reason if it is skipped, or the TemplateError its condition raised."""
    if when is None:
        return None
    try:
        holds = condition_holds(when, context)
    except TemplateError as error:
        return error
    if holds:
        return None
    return "when: false" if isinstance(when, bool) else f"when {when!r} was false"


@attrs.frozen
class _Decide:
    pass


class Skip(SupervisedActor):
    """In place of a skipped task or step, for one turn (hosted on its parent's thread)."""

    hosted = True

    def __init__(self, why: str | TemplateError, *, done: Callable[[], None]) -> None:
        """`done` tells the parent the child finished (with no output)."""
        super().__init__()
        self._why = why
        self._done = done

    def on_start(self) -> None:
        self.actor_ref.tell(_Decide())

    def on_receive(self, message: Any) -> Any:
        if not isinstance(message, _Decide):
            return super().on_receive(message)
        if isinstance(self._why, TemplateError):
            raise self._why
        self._done()
        self.exit_with(ExitReason(ExitKind.NORMAL, path=self.path, error_type=SKIPPED,
                                  message=f"skipped: {self._why}"))
        return None


def is_skip(reason: ExitReason | None) -> bool:
    """Whether an exit is that of a skipped task or step."""
    return (reason is not None and reason.kind is ExitKind.NORMAL
            and reason.error_type == SKIPPED)
