"""The garbage collector of a process that holds many actors.

CPython's default thresholds (700, 10, 10) collect the youngest objects every
700 allocations, and so the whole heap often once it is big: a node running
10,000 `sleep` steps at once (tens of thousands of actors, their mailboxes,
messages and timers) spent 13 s of a 45 s workflow in 21 full collections of
0.3-1.1 s each, nearly all of which freed nothing, with every thread stopped,
its heartbeats too, so that hundreds of steps took their workers for lost.
Collected in larger steps, the same workflow took 18.6 s, with no step taken
for lost (bench/README.md, "scale.py"). Reference counting still frees what
is not in a cycle at once; cycles wait a little longer.
"""

from __future__ import annotations

import gc

__all__ = ["THRESHOLDS", "collect_in_larger_steps"]

THRESHOLDS = (50_000, 20, 100)
"""`gc.set_threshold` of a long-running noetl process: a young collection every 50,000
allocations (not 700), the older generations as rarely in proportion."""


def collect_in_larger_steps() -> None:
    """Set `THRESHOLDS` for this process (`noetl node start`, `run`, `worker`)."""
    gc.set_threshold(*THRESHOLDS)
