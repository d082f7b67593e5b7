"""The restart-intensity window of one supervisor (OTP's add_restart/3)."""

from __future__ import annotations

from collections import deque

__all__ = ["RestartIntensity"]


class RestartIntensity:
    """At most `max_restarts` restarts in any `within`-second window.

    A restart at time ``t`` counts with every earlier restart at ``t - within``
    or later (inclusive, as OTP). `record()` adds one and says whether the
    supervisor may go on; failed restart attempts are recorded like any other.
    Not thread-safe: only its supervisor's thread touches it.
    """

    def __init__(self, max_restarts: int, within: float) -> None:
        self.max_restarts = max_restarts
        self.within = within
        self._times: deque[float] = deque()

    def carry_over(self, times: list[float]) -> None:
        """Count restarts made before this supervisor started (at `times`, on its clock):
        those of the incarnation it continues, on a node that took its workflow over."""
        self._times.extend(sorted(times))

    def record(self, now: float) -> bool:
        """Count a restart at `now`; False means the limit is exceeded: give up."""
        self._forget_before(now - self.within)
        self._times.append(now)
        return len(self._times) <= self.max_restarts

    def in_window(self, now: float) -> int:
        """How many restarts still count at `now`."""
        self._forget_before(now - self.within)
        return len(self._times)

    def _forget_before(self, threshold: float) -> None:
        while self._times and self._times[0] < threshold:
            self._times.popleft()
