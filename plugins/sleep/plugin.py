"""sleep: wait `seconds` on the attempt's cancel event, so a cancel or timeout ends it at once."""

from __future__ import annotations

from typing import Any

from noetl_actors.runners import INPUT_ERROR, Context, PluginError


def run(input: dict[str, Any], ctx: Context) -> dict[str, Any]:
    seconds = input["seconds"]
    if seconds < 0:
        raise PluginError(f"seconds must be >= 0 (got {seconds!r})", error_type=INPUT_ERROR)
    ctx.sleep(seconds)  # raises Cancelled when the attempt is cancelled
    return {"slept": seconds}
