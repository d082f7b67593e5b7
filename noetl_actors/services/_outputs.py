"""What a worker says of an attempt's outcome: its output, unless too big to carry.

An output travels in its step's `succeeded` event (bounded by NATS's
max_payload), stays in its workflow's record and feeds later steps'
templates; past the node's `max_output` it is not sent: the attempt fails
with an error of type ``output`` that says the size. A failure's message is
cut at `MAX_ERROR_MESSAGE` characters.
"""

from __future__ import annotations

from typing import Any

from noetl_actors._refusals import short
from noetl_actors.bridge import encode
from noetl_actors.runners import Outcome
from noetl_actors.runtime import EventStatus

__all__ = ["MAX_ERROR_MESSAGE", "MAX_OUTPUT", "event_of"]

MAX_OUTPUT = 4 * 1024 * 1024
"""Bytes of JSON a step's output may have (the node config's `max_output`)."""
MAX_ERROR_MESSAGE = 16 * 1024
"""Characters of a failure's message kept in its event (the rest is cut)."""


def event_of(outcome: Outcome, step: str,
             max_output: int = MAX_OUTPUT) -> tuple[EventStatus, dict[str, Any]]:
    """The final event's status and fields for `outcome` of an attempt of `step`."""
    if not outcome.ok:
        return EventStatus.FAILED, {"error_type": outcome.error_type,
                                    "error_message": short(outcome.message, MAX_ERROR_MESSAGE),
                                    "started_at": outcome.started_at}
    size = _output_size(outcome.output)
    if size <= max_output:
        return EventStatus.SUCCEEDED, {"output": outcome.output,
                                       "started_at": outcome.started_at}
    return EventStatus.FAILED, {
        "error_type": "output", "started_at": outcome.started_at,
        "error_message": f"the output of step {step!r} is {size:,} bytes of JSON, past the "
                         f"node's max_output of {max_output:,}"}


def _output_size(output: Any) -> int:
    """Bytes of `output` as JSON (0 if it cannot be JSON: sending it says why)."""
    try:
        return len(encode({"output": output}))
    except (TypeError, ValueError, OverflowError, RecursionError):
        return 0
