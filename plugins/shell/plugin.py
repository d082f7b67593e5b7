"""shell: run a command (a string through `sh -c`, or a list of arguments) and capture it.

Runs in the process runner's child, in the attempt's process group: when the
attempt is stopped, the command gets the same SIGTERM and SIGKILL.
"""

from __future__ import annotations

import os
import subprocess
from typing import Any

from noetl_actors.runners import INPUT_ERROR, Context, PluginError

TAIL = 1000
"""Characters of stderr (or stdout) quoted in a failure's message."""


def run(input: dict[str, Any], ctx: Context) -> dict[str, Any]:
    command = input["command"]
    if isinstance(command, str):
        argv = ["sh", "-c", command]
    elif isinstance(command, list) and command and all(
            isinstance(a, str | int | float) and not isinstance(a, bool) for a in command):
        argv = [str(a) for a in command]
    else:
        raise PluginError(f"command must be a string or a non-empty list of strings "
                          f"(got {command!r})", error_type=INPUT_ERROR)
    env = dict(os.environ)
    env.update({str(k): str(v) for k, v in (input.get("env") or {}).items()})
    try:
        done = subprocess.run(argv, env=env, cwd=input.get("cwd"), stdin=subprocess.DEVNULL,
                              capture_output=True, check=False)
    except OSError as error:  # no such program, no such cwd
        raise PluginError(f"cannot run {argv[0]!r}: {error}", error_type="ShellError") from None
    stdout = done.stdout.decode("utf-8", "replace")
    stderr = done.stderr.decode("utf-8", "replace")
    if done.returncode != 0:
        said = (stderr or stdout).strip()[-TAIL:]
        raise PluginError(f"command exited with code {done.returncode}"
                          + (f": {said}" if said else ""), error_type="ShellError")
    return {"exit_code": done.returncode, "stdout": stdout, "stderr": stderr}
