"""The entrypoint of a plugin's pod: ``python -m noetl_actors.runners.entry``.

Contract (docs/kubernetes.md, for authors of their own images):

- The command is JSON in the ``NOETL_COMMAND`` variable::

    {"schema_version": 1, "plugin": NAME, "attempt": Attempt.to_json()}

  The plugin is found by NAME on the image's plugin path
  (``NOETL_PLUGIN_PATH``, then the installed built-ins).
- The plugin runs as under the process runner: its inputs are checked, it
  runs on a thread, SIGTERM (what Kubernetes sends when the Job is deleted)
  sets ``ctx.cancelled``, and whatever it raises becomes the outcome.
- The answer goes to the termination message, ``NOETL_RESULT_PATH``
  (default ``/dev/termination-log``): the outcome as JSON when it fits in
  4096 bytes, else a pointer to it in NATS's object store
  (``NOETL_NATS_URL``, bucket ``noetl-results``); see `_results`.
- Exit status: 0 the plugin succeeded, 1 it failed (its error type and
  message are in the answer), 2 the command is bad (one line on stderr,
  and an answer of error type ``CommandError``) or the result could not be
  delivered (error type ``ResultError``).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

from noetl_actors.errors import NoetlError, PluginNotFound
from noetl_actors.runners._attempt import SCHEMA_VERSION, Attempt, Outcome
from noetl_actors.runners._context import Context
from noetl_actors.runners._discovery import find_plugin
from noetl_actors.runners._invoke import invoke_on_thread
from noetl_actors.runners._kube_job import COMMAND_ENV, NATS_URL_ENV, job_name
from noetl_actors.runners._results import termination_message

__all__ = ["COMMAND_ERROR", "RESULT_PATH_ENV", "main"]

RESULT_PATH_ENV = "NOETL_RESULT_PATH"
DEFAULT_RESULT_PATH = "/dev/termination-log"
COMMAND_ERROR = "CommandError"
"""Error type: the pod's command is missing or malformed, or names no plugin of the image."""
RESULT_ERROR = "ResultError"
"""Error type: the result is too large for the termination message and NATS did not take it."""


def _command() -> tuple[str, Attempt]:
    """The plugin's name and the attempt, from `COMMAND_ENV`; ValueError saying what is wrong."""
    text = os.environ.get(COMMAND_ENV)
    if not text:
        raise ValueError(f"{COMMAND_ENV} is not set: it must hold the attempt's command "
                          f"as JSON")
    try:
        data = json.loads(text)
    except ValueError as error:
        raise ValueError(f"{COMMAND_ENV} is not JSON ({error})") from None
    if not isinstance(data, dict) or data.get("schema_version") != SCHEMA_VERSION:
        got = data.get("schema_version") if isinstance(data, dict) else data
        raise ValueError(f"{COMMAND_ENV} must be a mapping with schema_version "
                          f"{SCHEMA_VERSION} (got {got!r})")
    plugin = data.get("plugin")
    if not isinstance(plugin, str) or not plugin:
        raise ValueError(f"{COMMAND_ENV} names no plugin")
    try:
        attempt = Attempt.from_json(data["attempt"])
    except KeyError as error:
        raise ValueError(f"{COMMAND_ENV}'s attempt lacks {error.args[0]!r}") from None
    except (TypeError, ValueError) as error:
        raise ValueError(f"{COMMAND_ENV} holds a bad attempt: {error}") from None
    return plugin, attempt


def _write(path: Path, data: bytes) -> None:
    path.write_bytes(data)


def main() -> int:
    """Run the command's attempt, write its answer; the exit status (see the module)."""
    started_at = time.time()
    result_path = Path(os.environ.get(RESULT_PATH_ENV) or DEFAULT_RESULT_PATH)
    try:
        plugin_name, attempt = _command()
        plugin = find_plugin(plugin_name)
    except (ValueError, PluginNotFound) as error:  # _command's own, one line each
        message = f"noetl entry: bad command: {error}".replace("\n", " ")
        print(message, file=sys.stderr)
        failed = Outcome.failed(COMMAND_ERROR, message, started_at=started_at)
        _write(result_path, json.dumps({"schema_version": SCHEMA_VERSION,
                                        "outcome": failed.to_json()}).encode("utf-8"))
        return 2
    deadline = None if attempt.timeout is None else time.monotonic() + attempt.timeout
    ctx = Context(attempt=attempt, plugin=plugin, runner="kubernetes", deadline=deadline)
    signal.signal(signal.SIGTERM, lambda _signum, _frame: ctx.cancelled.set())
    outcome = invoke_on_thread(ctx, started_at=started_at, who="entrypoint")
    try:
        message_bytes = termination_message(outcome, name=job_name(attempt),
                                            nats_url=os.environ.get(NATS_URL_ENV))
    except NoetlError as error:
        print(f"noetl entry: {error}", file=sys.stderr)
        failed = Outcome.failed(RESULT_ERROR, str(error), started_at=started_at)
        _write(result_path, json.dumps({"schema_version": SCHEMA_VERSION,
                                        "outcome": failed.to_json()}).encode("utf-8"))
        return 2
    _write(result_path, message_bytes)
    if not outcome.ok:
        print(f"noetl entry: {attempt.plugin} failed: {outcome.error_type}: {outcome.message}",
              file=sys.stderr)
    return 0 if outcome.ok else 1


if __name__ == "__main__":
    try:
        code = main()
    except OSError as failure:  # the termination message cannot be written
        print(f"noetl entry: cannot write the answer: {failure}", file=sys.stderr)
        code = 2
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # do not wait for threads a plugin may have left behind
