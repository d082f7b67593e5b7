"""`BridgeActor`: the supervised owner of the bridge's connection."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs

from noetl_actors.bridge._connection import Connection
from noetl_actors.errors import BridgeError, ConnectionLost
from noetl_actors.supervision import SupervisedActor, tell_if_alive

if TYPE_CHECKING:
    from noetl_actors.bridge._bridge import Bridge

__all__ = ["BridgeActor"]


@attrs.frozen
class _Lost:
    why: str


class BridgeActor(SupervisedActor):
    """Owns the bridge's connection: one per incarnation, made in `on_start`, on
    the bridge's loop (which outlives a crash, and stops with a stop).

    A start that cannot connect is a start failure (restarted with backoff
    by its supervisor); a lost loop thread or closed client is a crash.
    """

    def __init__(self, bridge: Bridge) -> None:
        super().__init__()
        self._bridge = bridge
        self._connection: Connection | None = None

    def on_start(self) -> None:
        bridge = self._bridge
        ref = self.actor_ref

        try:
            self._connection = Connection(
                bridge.options, loop=bridge._running_loop(), on_state=bridge._connection_state,
                on_lost=lambda why: tell_if_alive(ref, _Lost(why)),
            ).open()
        except BaseException:
            bridge._stop_loop(unless_hosting=True)  # kept for what runs there, if anything
            raise
        bridge._attach(self._connection, self.path)

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, _Lost):
            raise ConnectionLost(message.why)
        return super().on_receive(message)

    def _release(self) -> None:
        if self._connection is not None:
            self._bridge._detach(self._connection)
            self._connection.close()
            self._connection = None

    def on_stop(self) -> None:
        self._release()
        self._bridge._stop_loop()  # stopped for good, or with its siblings: not kept

    def on_failure(self, *_exc_info: Any) -> None:
        self._release()  # the loop stays: the next incarnation connects on it
