"""sleep: wait `seconds` as a timer, holding no thread; a cancel or timeout ends it at once.

`run` is async: the inproc runner awaits it on its event loop (ten thousand
sleeps are ten thousand timers on one thread), and cancels its task when
the attempt is cancelled or times out.
"""

from __future__ import annotations

import asyncio
from typing import Any

from noetl_actors.runners import INPUT_ERROR, Context, PluginError


async def run(input: dict[str, Any], ctx: Context) -> dict[str, Any]:
    seconds = input["seconds"]
    if seconds < 0:
        raise PluginError(f"seconds must be >= 0 (got {seconds!r})", error_type=INPUT_ERROR)
    await asyncio.sleep(seconds)
    return {"slept": seconds}
