"""The process runner's child: ``python -m noetl_actors.runners._child``.

Protocol (schema version 1), one JSON document each way:

- stdin, read to its end::

    {"schema_version": 1,
     "plugin": {"name": str, "folder": str, "entry": str, ...manifest facts},
     "attempt": Attempt.to_json()}

- stdout, written once, just before the child exits with status 0::

    {"schema_version": 1, "outcome": Outcome.to_json()}

Plugin failures are outcomes too; only a crash (a signal, ``os._exit``, an
interpreter failure) leaves stdout without one. The plugin's own output to
stdout (``print``, subprocesses) is sent to stderr instead, so it can never
corrupt the answer. SIGTERM sets ``ctx.cancelled``; the parent sends
SIGKILL to the whole process group if the plugin does not stop in time.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from typing import TextIO

from noetl_actors.runners._attempt import SCHEMA_VERSION, Attempt
from noetl_actors.runners._context import Context
from noetl_actors.runners._invoke import invoke_on_thread
from noetl_actors.runners._wire import LIFELINE_ENV, plugin_from_json

__all__ = ["main"]


def _watch_lifeline() -> None:
    """Die with the worker: when its end of the lifeline closes, kill this process group."""
    fd = os.environ.pop(LIFELINE_ENV, None)
    if fd is None:
        return

    def watch() -> None:
        while os.read(int(fd), 1):
            pass  # nobody writes; EOF means the worker is gone
        os.killpg(os.getpgid(0), signal.SIGKILL)

    threading.Thread(target=watch, name="noetl-lifeline", daemon=True).start()


def main() -> None:
    """Read the request, run the plugin on a thread, answer, exit.

    The plugin runs on its own thread so that the main thread only waits:
    the SIGTERM handler (which Python runs on the main thread) then never
    interrupts plugin code while it holds a lock.
    """
    _watch_lifeline()
    answer = _take_stdout()
    started_at = time.time()
    data = json.load(sys.stdin)
    if data.get("schema_version") != SCHEMA_VERSION:
        raise SystemExit(f"noetl child: unknown schema_version {data.get('schema_version')!r}")
    attempt = Attempt.from_json(data["attempt"])
    plugin = plugin_from_json(data["plugin"])
    deadline = None if attempt.timeout is None else time.monotonic() + attempt.timeout
    ctx = Context(attempt=attempt, plugin=plugin, runner="process", deadline=deadline)
    signal.signal(signal.SIGTERM, lambda _signum, _frame: ctx.cancelled.set())

    outcome = invoke_on_thread(ctx, started_at=started_at, who="child")
    answer.write(json.dumps({"schema_version": SCHEMA_VERSION, "outcome": outcome.to_json()}))
    answer.flush()
    sys.stderr.flush()
    os._exit(0)  # do not wait for threads a plugin may have left behind


def _take_stdout() -> TextIO:
    """Keep the real stdout for the answer; point fd 1 (and `sys.stdout`) at stderr."""
    answer = os.fdopen(os.dup(1), "w", encoding="utf-8")  # os.dup: not inherited
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return answer


if __name__ == "__main__":
    main()
