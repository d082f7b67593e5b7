"""What a node publishes of its supervision events, and under which fence.

Every event of a workflow carries the epoch of its owner's lease. What a
workflow writes while its lease is not renewed (NATS just came back) is held
back by the lease and written at its renewal, never if the lease is lost
(`HeldLease.when_allowed`). A journal entry carries a message id: one an
outage may have swallowed is sent again and stored once.
"""

from __future__ import annotations

import functools
import logging
import uuid
from typing import Any

from noetl_actors.bridge import Bridge
from noetl_actors.errors import NoetlError
from noetl_actors.runtime import JOURNAL, Fence, is_skip
from noetl_actors.services._lease import HeldLease
from noetl_actors.supervision import EventKind, ExitKind, LifecycleEvent

__all__ = ["is_routine", "publish_fenced"]

logger = logging.getLogger("noetl_actors.services")


def publish_fenced(bridge: Bridge, subject: str, data: dict[str, Any],
                   fence: Fence | None) -> None:
    """Publish `data` on `subject`, stamped with `fence`'s epoch when it has one."""
    msg_id = uuid.uuid4().hex if data.get("kind") == JOURNAL else None

    def publish(data: dict[str, Any]) -> None:
        try:
            bridge.publish(subject, data, msg_id=msg_id)
        except NoetlError:
            logger.debug("could not publish %s on %s", data, subject)

    if isinstance(fence, HeldLease):
        fence.when_allowed(functools.partial(publish, {**data, "epoch": fence.epoch}))
    elif fence is not None:
        publish({**data, "epoch": fence.epoch})
    else:
        publish(data)


def is_routine(event: LifecycleEvent) -> bool:
    """A step's first start or its normal exit: every step has them, its events tell them.

    Two lifecycle messages per step (publish, JetStream store) for nothing its
    worker's final event does not say already; restarts, abnormal exits,
    give-ups, backoffs and skips are the supervision events, and are published.
    """
    if event.kind is EventKind.STARTED:
        return True
    return (event.kind is EventKind.EXITED and event.reason is not None
            and event.reason.kind is ExitKind.NORMAL and not is_skip(event.reason))
