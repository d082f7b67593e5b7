"""A step's output lines: what its plugin prints, handed by the runner to an `OutputSink`.

Every runner sends what the plugin writes to the sink it was given, as
text in pieces (not always whole lines): under `inproc` what the plugin's
thread or task writes to ``sys.stdout`` and ``sys.stderr`` (`capture`),
under `process` the child's stderr (where its stdout goes too), under
`kubernetes` the pod's log. `end()` follows the attempt's last `write()`.
The node's sink publishes the lines on NATS (`noetl logs`); without a sink
a runner keeps nothing.

Under `inproc`, ``sys.stdout`` and ``sys.stderr`` are replaced once, at the
first captured attempt, by a `_Router` that writes to the sink of the
attempt running on the current thread (or task: a context variable), and
to the former stream elsewhere. A subprocess a plugin starts under
`inproc` writes to the node's own file descriptors: not captured.
"""

from __future__ import annotations

import contextlib
import contextvars
import io
import sys
import threading
from collections.abc import Iterator
from typing import Protocol, TextIO, runtime_checkable

from noetl_actors.runners._attempt import Attempt

__all__ = ["OutputSink", "capture"]


@runtime_checkable
class OutputSink(Protocol):
    """Where a runner sends an attempt's output. Thread-safe; never blocks for long."""

    def write(self, attempt: Attempt, text: str) -> None:
        """Text the attempt's plugin wrote: any piece, lines split anywhere."""
        ...

    def end(self, attempt: Attempt) -> None:
        """The attempt wrote its last: keep what is left (a line without its newline)."""
        ...


_target: contextvars.ContextVar[tuple[OutputSink, Attempt] | None] = \
    contextvars.ContextVar("noetl_output", default=None)
_install_lock = threading.Lock()


class _Router(io.TextIOBase):
    """``sys.stdout`` / ``sys.stderr``: the current attempt's sink, else the former stream."""

    def __init__(self, former: TextIO) -> None:
        super().__init__()
        self.former = former

    def write(self, text: str) -> int:
        if not isinstance(text, str):  # as any text stream: click probes with b""
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        target = _target.get()
        if target is None:
            return self.former.write(text)
        sink, attempt = target
        sink.write(attempt, text)
        return len(text)

    def flush(self) -> None:
        if _target.get() is None:
            self.former.flush()

    def isatty(self) -> bool:
        return _target.get() is None and self.former.isatty()

    def fileno(self) -> int:
        return self.former.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.former, "encoding", "utf-8")

    @property
    def errors(self) -> str | None:  # type: ignore[override]
        return getattr(self.former, "errors", None)

    def __getattr__(self, name: str) -> object:
        """The rest (``buffer``, ``line_buffering``...) is the former stream's: bytes
        written to ``sys.stdout.buffer`` go there, not to an attempt's sink."""
        return getattr(self.former, name)


def _install() -> None:
    """Route ``sys.stdout`` and ``sys.stderr`` (again, if someone replaced them since)."""
    if isinstance(sys.stdout, _Router) and isinstance(sys.stderr, _Router):
        return
    with _install_lock:
        if not isinstance(sys.stdout, _Router):
            sys.stdout = _Router(sys.stdout)
        if not isinstance(sys.stderr, _Router):
            sys.stderr = _Router(sys.stderr)


@contextlib.contextmanager
def capture(sink: OutputSink | None, attempt: Attempt) -> Iterator[None]:
    """While in it, what this thread (or asyncio task) prints goes to `sink`; no-op for None.

    It does not call `sink.end()`: the runner does, once the attempt ended.
    """
    if sink is None:
        yield
        return
    _install()
    token = _target.set((sink, attempt))
    try:
        yield
    finally:
        _target.reset(token)
