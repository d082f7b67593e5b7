"""shell: run a command (a string through `sh -c`, or a list of arguments) and capture it.

Runs in the process runner's child, in the attempt's process group: when the
attempt is stopped, the command gets the same SIGTERM and SIGKILL. What the
command writes is also passed on to this process's stderr as it comes: the
step's output lines (`noetl logs`), under the process runner and in a Job's
pod log.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from typing import IO, Any

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
        proc = subprocess.Popen(argv, env=env, cwd=input.get("cwd"), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except OSError as error:  # no such program, no such cwd
        raise PluginError(f"cannot run {argv[0]!r}: {error}", error_type="ShellError") from None
    assert proc.stdout is not None and proc.stderr is not None
    out: list[bytes] = []
    err: list[bytes] = []
    readers = [threading.Thread(target=_tee, args=(pipe, kept), daemon=True)
               for pipe, kept in ((proc.stdout, out), (proc.stderr, err))]
    for reader in readers:
        reader.start()
    returncode = proc.wait()
    for reader in readers:
        reader.join()
    stdout = b"".join(out).decode("utf-8", "replace")
    stderr = b"".join(err).decode("utf-8", "replace")
    if returncode != 0 and input.get("check", True):
        said = (stderr or stdout).strip()[-TAIL:]
        raise PluginError(f"command exited with code {returncode}"
                          + (f": {said}" if said else ""), error_type="ShellError")
    return {"exit_code": returncode, "stdout": stdout, "stderr": stderr}


_echo = threading.Lock()


def _tee(pipe: IO[bytes], kept: list[bytes]) -> None:
    """Keep what `pipe` gives, and write it on to stderr a line at a time as it comes."""
    with pipe:
        for line in iter(pipe.readline, b""):
            kept.append(line)
            with _echo:
                sys.stderr.write(line.decode("utf-8", "replace"))
                sys.stderr.flush()
