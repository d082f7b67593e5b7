"""Load a plugin's entry file and call its ``run(input, ctx)``: the part every runner shares.

`invoke()` never raises for what a plugin does: whatever happens becomes an
`Outcome`, so the in-process runner and the process runner's child report
plugin failures identically. An error's type is its ``error_type``
attribute if it has one (`PluginError`), else its class name, as the
supervision kernel names errors.

A plugin whose ``run`` is ``async def`` only waits (sleep: a timer); the
inproc runner awaits it with `invoke_async()` on its event loop, so a
waiting attempt holds no thread, and its cancel is the task's. Called by
`invoke()` (the process runner's child), it runs on a loop of its own, and
is cancelled when ``ctx.cancelled`` is set.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import inspect
import json
import sys
import threading
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any

from noetl_actors.errors import Cancelled, PluginError
from noetl_actors.runners._attempt import CRASH, OUTPUT_ERROR, Outcome
from noetl_actors.runners._context import Context
from noetl_actors.runners._inputs import prepare_input
from noetl_actors.runners._manifest import PluginInfo

__all__ = ["error_type_of", "invoke", "invoke_async", "is_async", "load_entry"]

CANCEL_POLL = 0.1
"""Seconds between two looks at ``ctx.cancelled`` while `invoke()` runs an async plugin."""

_modules: dict[Path, ModuleType] = {}
_modules_lock = threading.Lock()


def load_entry(plugin: PluginInfo) -> ModuleType:
    """The module of `plugin`'s entry file, imported once per process and file.

    Raises:
        PluginError: no entry file, or it has no callable ``run``.
        Exception: whatever importing the file raised.
    """
    if plugin.entry is None:
        raise PluginError(f"plugin {plugin.name!r} has no entry file")
    module = _modules.get(plugin.entry)  # the fast path, without a lock or a syscall
    if module is not None:
        return module
    path = plugin.entry.resolve()
    with _modules_lock:
        module = _modules.get(path)
        if module is None:
            digest = hashlib.sha1(str(path).encode(), usedforsecurity=False).hexdigest()[:10]
            name = f"noetl_plugin_{plugin.name.replace('-', '_')}_{digest}"
            spec = importlib.util.spec_from_file_location(name, path)
            if spec is None or spec.loader is None:
                raise PluginError(f"plugin {plugin.name!r}: cannot import {path}")
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module  # dataclasses, pickle and typing look modules up here
            try:
                spec.loader.exec_module(module)
            except BaseException:
                del sys.modules[name]
                raise
            if not callable(getattr(module, "run", None)):
                del sys.modules[name]
                raise PluginError(f"plugin {plugin.name!r}: {path} defines no run(input, ctx)")
            _modules[path] = module
        _modules[plugin.entry] = module
    return module


def error_type_of(error: BaseException) -> str:
    """The error type an exception reports: its ``error_type`` attribute, else its class name."""
    declared = getattr(error, "error_type", None)
    return declared if isinstance(declared, str) and declared else type(error).__name__


def invoke(plugin: PluginInfo, ctx: Context, *, started_at: float) -> Outcome:
    """Run one attempt of `plugin` on this thread and say how it ended.

    The output is passed through JSON and back, so every runner returns the
    same shapes (tuples become lists) and a value JSON cannot carry fails
    here, with error type ``OutputError``, rather than later on the wire.
    """
    try:
        run = load_entry(plugin).run
        output = run(prepare_input(plugin, ctx.attempt.input), ctx)
        if inspect.iscoroutine(output):
            output = asyncio.run(_until_cancelled(output, ctx))
    except (SystemExit, Exception) as error:
        return _failed(plugin, error, started_at)
    return _succeeded(plugin, output, started_at)


def invoke_on_thread(ctx: Context, *, started_at: float, who: str) -> Outcome:
    """`invoke()` on a thread of its own, while this (main) thread only waits: SIGTERM,
    which Python handles on the main thread, is then seen at once and never interrupts
    plugin code holding a lock. `who` (the child, the entrypoint) names this process in
    the failure of the runner itself."""
    result: list[Outcome] = []

    def work() -> None:
        try:
            result.append(invoke(ctx.plugin, ctx, started_at=started_at))
        except BaseException as error:  # invoke() catches plugin errors; this is ours
            result.append(Outcome.failed(CRASH, f"the {who} failed: {error!r}",
                                         started_at=started_at))

    thread = threading.Thread(target=work, name="noetl-plugin", daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(0.5)  # a bounded join lets the SIGTERM handler run promptly
    return result[0]


def is_async(plugin: PluginInfo) -> bool:
    """Whether `plugin`'s ``run`` is ``async def``; False if its entry cannot be loaded
    (`invoke()` then says why)."""
    try:
        return inspect.iscoroutinefunction(load_entry(plugin).run)
    except Exception:
        return False


async def invoke_async(plugin: PluginInfo, ctx: Context, *, started_at: float) -> Outcome:
    """`invoke()` of an async plugin, awaited on the caller's loop.

    Raises:
        asyncio.CancelledError: the task was cancelled (the runner stops it).
    """
    try:
        output = await load_entry(plugin).run(prepare_input(plugin, ctx.attempt.input), ctx)
    except asyncio.CancelledError:
        raise
    except (SystemExit, Exception) as error:
        return _failed(plugin, error, started_at)
    return _succeeded(plugin, output, started_at)


def _failed(plugin: PluginInfo, error: BaseException, started_at: float) -> Outcome:
    """How an attempt ended whose plugin raised `error` (call it in the except block)."""
    if isinstance(error, SystemExit):
        return Outcome.failed(CRASH, f"plugin {plugin.name!r} called sys.exit({error.code!r})",
                              started_at=started_at, detail=traceback.format_exc())
    return Outcome.failed(error_type_of(error), str(error) or type(error).__name__,
                          started_at=started_at, detail=_detail(error))


def _succeeded(plugin: PluginInfo, output: Any, started_at: float) -> Outcome:
    """How an attempt ended whose plugin returned `output`: it must be JSON-ready."""
    try:
        return Outcome.succeeded(_json_ready(output), started_at=started_at)
    except (TypeError, ValueError) as error:
        return Outcome.failed(OUTPUT_ERROR, f"plugin {plugin.name!r} returned something that "
                                            f"is not JSON-ready: {error}", started_at=started_at)


async def _until_cancelled(coroutine: Any, ctx: Context) -> Any:
    """Await `coroutine`; cancel it (and raise `Cancelled`) once ``ctx.cancelled`` is set."""
    task = asyncio.ensure_future(coroutine)
    while not task.done():
        if ctx.cancelled.is_set():
            task.cancel()
            break
        await asyncio.wait({task}, timeout=CANCEL_POLL)
    try:
        return await task
    except asyncio.CancelledError:
        raise Cancelled(f"attempt {ctx.attempt.command_id} was cancelled") from None


def _json_ready(output: Any) -> Any:
    return json.loads(json.dumps(output, allow_nan=False))


def _detail(error: BaseException) -> str:
    """A traceback, except for the failures a plugin reports on purpose."""
    if isinstance(error, PluginError):
        return ""
    return "".join(traceback.format_exception(error))
