"""Terminal presentation: tree rendering, the demo, the Textual console.

Heavy UI libraries are imported lazily by the modules that need them, so
`noetl node start` never loads them: `ConsoleApp` (Textual) is imported
from `noetl_actors.console._app` only when asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from noetl_actors.console._tree import event_line as event_line
from noetl_actors.console._tree import snapshot_tree as snapshot_tree

if TYPE_CHECKING:
    from noetl_actors.console._app import ConsoleApp as ConsoleApp

__all__ = ["ConsoleApp", "event_line", "snapshot_tree"]


def __getattr__(name: str) -> Any:
    if name == "ConsoleApp":
        from noetl_actors.console._app import ConsoleApp

        return ConsoleApp
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
