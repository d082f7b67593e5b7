"""Bounds on a playbook: how big it may be, how many tasks and steps, how deep.

A node parses every playbook submitted to it, from anyone who may publish on
`noetl.api.submit`: these bounds keep one playbook from taking the node's
memory or stack. Each is a problem of the playbook (``invalid_playbook``),
with the limit in its message. Loop iterations are bounded per task
(`loop.max_items`), template renders by `TemplateLimits`.
"""

from __future__ import annotations

from typing import Any

import attrs

from noetl_actors.playbook._source import Problem

__all__ = ["DEFAULT_PLAYBOOK_LIMITS", "PlaybookLimits", "count_problems", "size_problem"]


@attrs.frozen
class PlaybookLimits:
    """The largest playbook a node takes (`noetl node start`'s config: `limits:`)."""

    size: int = 1_000_000
    """Bytes of YAML (NATS's own default bound on a message is 1 MiB)."""
    tasks: int = 10_000
    steps: int = 50_000
    """Steps in all tasks together."""
    depth: int = 64
    """Levels of nesting of YAML mappings and lists (`parse_yaml`'s `depth`)."""


DEFAULT_PLAYBOOK_LIMITS = PlaybookLimits()


def size_problem(text: str, file: str, limits: PlaybookLimits) -> Problem | None:
    size = len(text.encode(errors="replace")) if len(text) * 4 > limits.size else len(text)
    if size > limits.size:
        return Problem(file, 1, 1, f"the playbook is {size:,} bytes, past the limit of "
                                   f"{limits.size:,} (playbook limits)")
    return None


def count_problems(tasks: list[Any], file: str, limits: PlaybookLimits) -> list[Problem]:
    """Too many tasks, or steps, in a playbook's `tasks:` (its located tree)."""
    problems = []
    if len(tasks) > limits.tasks:
        problems.append(Problem(file, 1, 1, f"the playbook has {len(tasks):,} tasks, past the "
                                            f"limit of {limits.tasks:,} (playbook limits)"))
    steps = sum(len(task.steps) for task in tasks)
    if steps > limits.steps:
        problems.append(Problem(file, 1, 1, f"the playbook has {steps:,} steps, past the "
                                            f"limit of {limits.steps:,} (playbook limits)"))
    return problems
