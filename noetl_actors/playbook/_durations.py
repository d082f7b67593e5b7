"""Durations as people write them: ``250ms``, ``30s``, ``5m``, ``1h``, or seconds."""

from __future__ import annotations

import math
import re
from decimal import Decimal

__all__ = ["format_duration", "parse_duration"]

_UNITS = {"ms": Decimal("0.001"), "s": Decimal(1), "m": Decimal(60), "h": Decimal(3600)}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)\s*(ms|s|m|h)?\s*$")


def parse_duration(value: object) -> float:
    """Seconds in `value`: a number of seconds, or a string like ``250ms`` or ``1.5h``.

    Raises:
        ValueError: not a duration; the message shows what is accepted.
    """
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration (use 250ms, 30s, 5m, 1h or seconds)")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        number, unit = match.groups()
        seconds = float(Decimal(number) * _UNITS[unit or "s"])  # 700ms is 0.7, exactly
    else:
        raise ValueError(f"{value!r} is not a duration (use 250ms, 30s, 5m, 1h or seconds)")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{value!r} is not a duration: it must be finite and not negative")
    return seconds


def format_duration(seconds: float) -> str:
    """The shortest exact spelling that `parse_duration` reads back: 0.25 -> ``250ms``,
    90 -> ``90s``, 300 -> ``5m``, 1e-7 -> ``0.0000001s``."""
    seconds = float(seconds)
    for unit, size in (("h", 3600.0), ("m", 60.0), ("s", 1.0)):
        if seconds >= size and (seconds / size).is_integer():
            return f"{int(seconds / size)}{unit}"
    exact = Decimal(repr(seconds))
    millis = exact * 1000
    if millis == millis.to_integral_value() and seconds != 0:
        return f"{int(millis)}ms"
    text = format(exact, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return f"{text}s"
