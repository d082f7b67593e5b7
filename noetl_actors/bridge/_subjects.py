"""Build, parse and check the subjects that commands and events travel on.

    command.<plugin>.<workflow_id>.<step_id>    asks a plugin to run one step attempt
    event.<plugin>.<workflow_id>.<step_id>      says what happened to it

Each part is one NATS subject token: it holds no `.`, `*`, `>` or white space
(playbook names are stricter still: letters, digits, `_` and `-`).
"""

from __future__ import annotations

import enum
import re

import attrs

__all__ = [
    "DEAD_LETTER_SUBJECT",
    "Subject",
    "SubjectKind",
    "check_token",
    "command_subject",
    "event_subject",
    "parse_subject",
]

DEAD_LETTER_SUBJECT = "noetl.deadletter"
"""Where the bridge republishes payloads it could not decode (see docs/bridge.md)."""

_BAD_TOKEN = re.compile(r"[.*>\s]")


class SubjectKind(enum.Enum):
    COMMAND = "command"
    EVENT = "event"


@attrs.frozen
class Subject:
    kind: SubjectKind
    plugin: str
    workflow_id: str
    step_id: str

    def __str__(self) -> str:
        return ".".join((self.kind.value, self.plugin, self.workflow_id, self.step_id))


def check_token(value: str, what: str) -> str:
    """Return `value` if it can be one subject token, else raise ValueError naming `what`."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a non-empty string (got {value!r})")
    bad = _BAD_TOKEN.search(value)
    if bad:
        raise ValueError(
            f"{what} {value!r} cannot be a NATS subject token: it contains {bad.group()!r} "
            "(no '.', '*', '>' or white space)"
        )
    return value


def _build(kind: SubjectKind, plugin: str, workflow_id: str, step_id: str) -> str:
    return ".".join(
        (
            kind.value,
            check_token(plugin, "plugin"),
            check_token(workflow_id, "workflow id"),
            check_token(step_id, "step id"),
        )
    )


def command_subject(plugin: str, workflow_id: str, step_id: str) -> str:
    """``command.<plugin>.<workflow_id>.<step_id>``"""
    return _build(SubjectKind.COMMAND, plugin, workflow_id, step_id)


def event_subject(plugin: str, workflow_id: str, step_id: str) -> str:
    """``event.<plugin>.<workflow_id>.<step_id>``"""
    return _build(SubjectKind.EVENT, plugin, workflow_id, step_id)


def parse_subject(subject: str) -> Subject:
    """Split a command or event subject into its parts.

    Raises:
        ValueError: it is not ``command|event.<plugin>.<workflow_id>.<step_id>``.
    """
    parts = subject.split(".")
    if len(parts) != 4 or parts[0] not in {k.value for k in SubjectKind}:
        raise ValueError(
            f"{subject!r} is not a command or event subject "
            "(command|event.<plugin>.<workflow_id>.<step_id>)"
        )
    kind, plugin, workflow_id, step_id = parts
    for value, what in ((plugin, "plugin"), (workflow_id, "workflow id"), (step_id, "step id")):
        check_token(value, what)
    return Subject(SubjectKind(kind), plugin, workflow_id, step_id)
