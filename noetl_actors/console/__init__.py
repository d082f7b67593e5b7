"""Terminal presentation: tree rendering, the demo, run reports, the Textual console.

Lazy, by a module-level ``__getattr__``: each name loads its own module when
first asked for, so ``from noetl_actors.console import render_document``
loads rich but not Textual, and nothing of this package is loaded by
`noetl node start` or by a CLI command that prints no tree. The console
itself (Textual) is `ConsoleApp`, asked for by `noetl console` only.

This package renders what others own: snapshots of supervision trees and
workflows' reports (`noetl_actors.runtime.RunReport`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from noetl_actors._lazy import lazy_exports

if TYPE_CHECKING:
    from noetl_actors.console._app import ConsoleApp as ConsoleApp
    from noetl_actors.console._render import flatten as flatten
    from noetl_actors.console._render import label_of as label_of
    from noetl_actors.console._render import shown_state as shown_state
    from noetl_actors.console._report import STATUS_STYLE as STATUS_STYLE
    from noetl_actors.console._report import render_document as render_document
    from noetl_actors.console._tree import event_line as event_line
    from noetl_actors.console._tree import snapshot_tree as snapshot_tree

_WHERE = {
    "ConsoleApp": "_app",
    "flatten": "_render",
    "label_of": "_render",
    "shown_state": "_render",
    "STATUS_STYLE": "_report",
    "render_document": "_report",
    "event_line": "_tree",
    "snapshot_tree": "_tree",
}

__all__ = [
    "STATUS_STYLE",
    "ConsoleApp",
    "event_line",
    "flatten",
    "label_of",
    "render_document",
    "shown_state",
    "snapshot_tree",
]


__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
