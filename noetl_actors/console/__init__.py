"""Terminal presentation: tree rendering, the demo (later: the Textual console).

Heavy UI libraries are imported lazily by the modules that need them, so
`noetl node start` never loads them.
"""

from noetl_actors.console._tree import event_line as event_line
from noetl_actors.console._tree import snapshot_tree as snapshot_tree

__all__ = ["event_line", "snapshot_tree"]
