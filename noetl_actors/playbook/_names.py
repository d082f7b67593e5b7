"""What a name may be, and the hint for a name that is not known.

A playbook's, task's, step's or policy's name becomes a NATS subject token,
so one pattern serves the loader, the legacy translator and the command API.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable

__all__ = ["NAME_PATTERN", "did_you_mean", "is_name", "to_name"]

_NAME_CHARACTERS = "A-Za-z0-9_-"
NAME_PATTERN = re.compile(f"^[{_NAME_CHARACTERS}]+$")
"""Letters, digits, '_' and '-'; anchored, so its `.pattern` serves the JSON Schema too."""
_NOT_IN_A_NAME = re.compile(f"[^{_NAME_CHARACTERS}]+")


def is_name(text: str) -> bool:
    """True if all of `text` matches `NAME_PATTERN` (a trailing newline does not)."""
    return NAME_PATTERN.fullmatch(text) is not None


def to_name(text: str, *, fill: str = "_") -> str:
    """`text` with each run of what a name may not hold replaced by `fill`, and
    `fill` stripped from both ends; "" if nothing of it may stay."""
    return _NOT_IN_A_NAME.sub(fill, text).strip(fill)


def did_you_mean(word: str, options: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the option closest to `word`, or "" if none is close."""
    hint = difflib.get_close_matches(word, list(options), n=1)
    return f" (did you mean {hint[0]!r}?)" if hint else ""
