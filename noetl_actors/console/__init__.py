"""Terminal presentation: tree rendering, the demo, run reports, the Textual console.

Heavy UI libraries are imported lazily by the modules that need them, so
`noetl node start` never loads them: the console (Textual) is
`noetl_actors.console._app.ConsoleApp`, imported by `noetl console` only.
"""

from noetl_actors.console._tree import event_line as event_line
from noetl_actors.console._tree import snapshot_tree as snapshot_tree

__all__ = ["event_line", "snapshot_tree"]
