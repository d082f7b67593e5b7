"""fail: fail on purpose, by raising, by killing its process, or by never answering."""

from __future__ import annotations

import os
import sys
from typing import Any

from noetl_actors.runners import INPUT_ERROR, Cancelled, Context, PluginError

EXIT_CODE = 137
"""What a shell reports for a process killed by SIGKILL (128 + 9): an out-of-memory kill."""


def run(input: dict[str, Any], ctx: Context) -> dict[str, Any]:
    number = ctx.attempt.number
    until = input.get("until_attempt")
    if until is not None and number >= until:
        return {"attempt": number}
    mode, message = input["mode"], input["message"]
    if mode == "exit":
        if ctx.runner == "inproc":
            raise PluginError(
                "fail mode 'exit' would kill the node itself under the inproc runner; "
                "give the step `runner: process`", error_type=INPUT_ERROR)
        sys.stderr.write(f"fail: exiting with code {EXIT_CODE}: {message}\n")
        sys.stderr.flush()
        os._exit(EXIT_CODE)
    if mode == "hang":
        ctx.cancelled.wait()  # until the attempt is cancelled or times out
        raise Cancelled(f"fail (hang) attempt {number} was stopped")
    raise PluginError(f"{message} (attempt {number})")
