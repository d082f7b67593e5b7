"""`RefusalLog`: one line per refused input, but never a flood of them.

Anyone who can publish on a node's NATS can send it garbage as fast as the
network carries it; a node that wrote a line (or a traceback) for each would
fill its disk and drown the lines that matter. Each refusal is written once,
in one line, up to `burst` lines per kind every `interval` seconds; past
that, refusals of that kind are counted and the count is written with the
next line of that kind ("and 1,234 more like it in the last 10 s").
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict

__all__ = ["RefusalLog", "short"]


class RefusalLog:
    """Rate-limited warnings, by kind (thread-safe)."""

    def __init__(self, logger: logging.Logger, *, interval: float = 10.0, burst: int = 5,
                 kinds: int = 256) -> None:
        self._logger = logger
        self._interval = interval
        self._burst = burst
        self._kinds = kinds
        self._lock = threading.Lock()
        self._windows: OrderedDict[str, list[float | int]] = OrderedDict()
        """kind -> [window start, lines written in it, refusals not written]."""

    def refused(self, kind: str, message: str, *args: object) -> bool:
        """Log `message % args` unless `kind` has had its `burst` this interval;
        True if it was written."""
        now = time.monotonic()
        with self._lock:
            window = self._windows.get(kind)
            if window is None or now - window[0] >= self._interval:
                suppressed = int(window[2]) if window is not None else 0
                window = [now, 0, 0]
                self._windows[kind] = window
                self._windows.move_to_end(kind)
                while len(self._windows) > self._kinds:
                    self._windows.popitem(last=False)
            else:
                suppressed = 0
            if window[1] >= self._burst:
                window[2] += 1
                return False
            window[1] += 1
        if suppressed:
            self._logger.warning(message + " (and %d more like it in the %g s before)",
                                 *args, suppressed, self._interval)
        else:
            self._logger.warning(message, *args)
        return True


def short(text: str, limit: int = 200) -> str:
    """`text` cut to `limit` characters for a log line (what a sender wrote can be huge)."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"
