"""echo: the output is the input, the step's rendered `with:` mapping."""

from __future__ import annotations

from typing import Any

from noetl_actors.runners import Context


def run(input: dict[str, Any], ctx: Context) -> dict[str, Any]:
    return input
