"""`BridgeActor`: the supervised owner of the bridge's connection."""

from __future__ import annotations

from typing import Any

import attrs

from noetl_actors.bridge._connection import Connection
from noetl_actors.bridge._core import BridgeCore
from noetl_actors.errors import ConnectionLost
from noetl_actors.supervision import SupervisedActor, tell_if_alive

__all__ = ["BridgeActor"]


@attrs.frozen
class _Lost:
    why: str


class BridgeActor(SupervisedActor):
    """Owns the bridge's connection: one per incarnation, made in `on_start`, on
    the core's loop (which outlives a crash, and stops with a stop), and
    handed to the core (`BridgeCore.attach`).

    A start that cannot connect is a start failure (restarted with backoff
    by its supervisor); a lost loop thread or closed client is a crash.
    """

    def __init__(self, core: BridgeCore) -> None:
        super().__init__()
        self._core = core
        self._connection: Connection | None = None

    def on_start(self) -> None:
        core = self._core
        ref = self.actor_ref

        try:
            self._connection = Connection(
                core.options, loop=core.running_loop(), on_state=core.connection_state,
                on_lost=lambda why: tell_if_alive(ref, _Lost(why)), on_unsent=core.count_unsent,
            ).open()
        except BaseException:
            core.stop_loop(unless_hosting=True)  # kept for what runs there, if anything
            raise
        core.attach(self._connection, self.path)

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, _Lost):
            raise ConnectionLost(message.why)
        return super().on_receive(message)

    def _release(self) -> None:
        if self._connection is not None:
            self._core.detach(self._connection)
            self._connection.close()
            self._connection = None

    def on_stop(self) -> None:
        self._release()
        self._core.stop_loop()  # stopped for good, or with its siblings: not kept

    def on_failure(self, *_exc_info: Any) -> None:
        self._release()  # the loop stays: the next incarnation connects on it
