"""`noetl console`: a live Textual view of every node's supervision tree.

    ┌ status: where we are connected, how many nodes, the filter ───────────┐
    │ tree of every node          │ details of the selected actor           │
    │ (state, restarts, backoff)  │ (spec, policy, exits, escalation chain) │
    │                             ├ a selected step's output lines ─────────┤
    ├ live lifecycle events (noetl.lifecycle.>) ────────────────────────────┤
    └ keys ─────────────────────────────────────────────────────────────────┘

The tree is polled with `Client.tree()` every `refresh` seconds, and at once
after a lifecycle event, and updated in place: nodes are relabelled, added
and removed, never rebuilt, so the cursor and what is expanded stay put.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any, ClassVar

from rich.text import Text
from textual import events, on
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, Input, RichLog, Static, Tree
from textual.widgets.tree import TreeNode

from noetl_actors.bridge import ConnectOptions
from noetl_actors.client import Client
from noetl_actors.console._lines import StepLines, step_of
from noetl_actors.console._render import (
    Entry,
    details_of,
    event_text,
    flatten,
    label_of,
    visible,
    workflow_of,
)
from noetl_actors.errors import ApiError, NoetlError

__all__ = ["ConsoleApp"]

RETRY = 2.0
"""Seconds between two tries to connect (or to reconnect after a lost connection)."""
EVENT_LINES = 1000
"""The event log keeps this many lines."""

HELP = """\
[b]noetl console[/b] — keys

  [b]↑ ↓[/b]        move in the tree        [b]← →[/b] / [b]space[/b]  collapse, expand
  [b]k[/b]          kill the selected actor (it crashes; its supervisor decides)
  [b]r[/b]          restart it (stop it, then start it again)
  [b]t[/b]          terminate it: stop it for good (asks first)
  [b]c[/b]          cancel the workflow the selected actor belongs to (asks first)
  [b]/[/b]          filter the tree by a part of the path; [b]esc[/b] clears it
  [b]?[/b]          this help
  [b]q[/b]          quit

Labels: id, state ([green]running[/] [yellow]restarting backing_off[/] [dim]not_started stopped[/]
[bold red]unresponsive[/]), restarts used/limit within the window, the backoff
countdown, and the mailbox depth when messages wait.

[dim]esc, q or ? closes this help[/dim]"""


class HelpScreen(ModalScreen[None]):
    """The keys, over the console; any of esc, q, ? closes it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,question_mark", "close", "close"),
    ]
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > Static { width: 90; height: auto; border: round $accent;
                          padding: 1 2; background: $panel; }
    """

    def compose(self) -> ComposeResult:
        yield Static(HELP, id="help")

    def action_close(self) -> None:
        self.dismiss(None)


class ConfirmScreen(ModalScreen[bool]):
    """A yes/no question: y or enter says yes, n or esc says no."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y,enter", "answer(True)", "yes"),
        Binding("n,escape", "answer(False)", "no"),
    ]
    DEFAULT_CSS = """
    ConfirmScreen { align: center middle; }
    ConfirmScreen > Static { width: 80; height: auto; border: thick $warning;
                             padding: 1 2; background: $panel; }
    """

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        yield Static(Text.assemble(self.question, ("\n\ny", "bold"), " yes   ",
                                   ("n", "bold"), " no"), id="question")

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)


# -- the app -----------------------------------------------------------------------------


class ConsoleApp(App[None]):
    """The console: ``ConsoleApp(ConnectOptions(servers=(url,))).run()``."""

    TITLE = "noetl console"
    CSS = """
    #status { height: 1; background: $boost; padding: 0 1; }
    #main { height: 1fr; }
    #tree { width: 3fr; border: round $primary; }
    #side { width: 2fr; }
    #details-box { height: 2fr; border: round $secondary; }
    #lines { height: 1fr; border: round $secondary; }
    #events { height: 12; border: round $accent; }
    #filter { display: none; }
    #filter.shown { display: block; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("k", "kill", "kill"),
        Binding("r", "restart", "restart"),
        Binding("t", "terminate", "terminate"),
        Binding("c", "cancel_workflow", "cancel workflow"),
        Binding("slash", "filter", "filter"),
        Binding("question_mark", "help", "help"),
        Binding("q", "quit", "quit"),
    ]

    def __init__(self, options: ConnectOptions, *, refresh: float = 0.5) -> None:
        super().__init__()
        self.options = options
        self.refresh_interval = refresh
        self.client: Client | None = None
        self.entries: dict[str, Entry] = {}
        self.nodes: dict[str, TreeNode[str]] = {}
        """The tree's nodes, by actor path (only those the filter lets through)."""
        self.filter_text = ""
        self.connection_error: str | None = None
        self._wake = asyncio.Event()
        self._lines_for: str | None = None
        """The path whose output lines the lines pane shows (or says it cannot)."""

    # -- layout ----------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Static(f"connecting to {self.options.describe()}…", id="status")
        with Horizontal(id="main"):
            tree: Tree[str] = Tree("cluster", id="tree")
            tree.show_root = False
            tree.auto_expand = False
            tree.border_title = "supervision trees"
            yield tree
            with Vertical(id="side"):
                with VerticalScroll(id="details-box") as box:
                    box.border_title = "details"
                    yield Static("select an actor in the tree", id="details")
                lines = StepLines(id="lines")
                lines.border_title = "output"
                yield lines
        log = RichLog(id="events", max_lines=EVENT_LINES, wrap=False, markup=False)
        log.border_title = "events"
        yield log
        yield Input(placeholder="filter: part of a path (esc clears)", id="filter")
        yield Footer()

    @property
    def actor_tree(self) -> Tree[str]:
        return self.query_one("#tree", Tree)

    @property
    def event_log(self) -> RichLog:
        return self.query_one("#events", RichLog)

    def on_mount(self) -> None:
        self.actor_tree.focus()
        self.run_worker(self._keep_connected(), name="poll", exclusive=True)

    # -- polling -------------------------------------------------------------------------

    def _status(self, text: str | Text) -> None:
        self.query_one("#status", Static).update(text)

    async def _keep_connected(self) -> None:
        """Connect, follow the events and poll the trees; on a lost connection, again."""
        while True:
            try:
                client = Client(self.options)
            except NoetlError as error:  # no address at all: retrying will not help
                self._failed(str(error), retry=False)
                return
            try:
                async with client:
                    self.client = client
                    self.connection_error = None
                    self._lines_for = None  # a follow of the lost connection: again
                    await client.follow(self._on_event)
                    self.event_log.write(Text(f"connected to {self.options.describe()}",
                                              style="cyan"))
                    while True:
                        await self.poll()
                        self._wake.clear()
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(self._wake.wait(), self.refresh_interval)
            except (NoetlError, OSError, TimeoutError) as error:
                self._failed(str(error) or type(error).__name__, retry=True)
            except Exception as error:  # a NATS error we do not know by name
                self._failed(f"{type(error).__name__}: {error}", retry=True)
            finally:
                self.client = None
            await asyncio.sleep(RETRY)

    def _failed(self, message: str, *, retry: bool) -> None:
        first = self.connection_error != message
        self.connection_error = message
        hint = f" — retrying every {RETRY:g}s (is a node started? `noetl node start`)" \
            if retry else ""
        self._status(Text(f"✗ {message}{hint}", style="bold red"))
        if first:
            self.notify(message, title="no connection", severity="error", timeout=8)
            self.event_log.write(Text(f"no connection: {message}", style="red"))

    async def poll(self) -> None:
        """Ask every node for its tree, and show what came back."""
        assert self.client is not None
        results = await self.client.tree()
        self.show(results)

    def show(self, results: list[dict[str, Any]]) -> None:
        self.entries = flatten(results)
        self._sync_tree()
        self._show_details()
        answered = sum(result.get("tree") is not None for result in results)
        status = Text(f"● {self.options.describe()}", style="green")
        status.append(f"  {len(results)} node{'s' * (len(results) != 1)}")
        if answered < len(results):
            status.append(f" ({len(results) - answered} not answering)", style="bold red")
        status.append(f"  {len(self.entries)} actors  updated "
                      f"{time.strftime('%H:%M:%S')}", style="dim")
        if self.filter_text:
            status.append(f"  filter: {self.filter_text!r}", style="yellow")
        status.append("  ? help", style="dim")
        self._status(status)

    def _on_event(self, event: dict[str, Any]) -> None:
        self.event_log.write(event_text(event))
        self._wake.set()  # show the change now, not at the next tick

    # -- the tree, in place -----------------------------------------------------------

    def _sync_tree(self) -> None:
        """Make the tree show `entries` (filtered): relabel, add, remove; never rebuild."""
        wanted = visible(self.entries, self.filter_text)
        gone = {path: self.nodes.pop(path) for path in list(self.nodes) if path not in wanted}
        for old in gone.values():
            above = old.parent
            if above is None or above.data not in gone:  # the top of a removed subtree
                old.remove()
        for path, entry in wanted.items():  # parents come before their children
            label = label_of(entry)
            expandable = bool(entry.data.get("children")) or entry.parent is None
            found = self.nodes.get(path)
            if found is None:
                parent = self.nodes.get(entry.parent) if entry.parent \
                    else self.actor_tree.root
                if parent is None:
                    continue
                node = parent.add(label, data=path, expand=True,
                                  before=self._index(parent, entry, wanted))
                self.nodes[path] = node
            else:
                node = found
            if node.label != label:
                node.set_label(label)
            if node.allow_expand != expandable:
                node.allow_expand = expandable

    def _index(self, parent: TreeNode[str], entry: Entry,
               wanted: dict[str, Entry]) -> int | None:
        """Where a new child goes among its siblings: in the snapshot's order."""
        if entry.parent is None:
            return None
        siblings = [child["path"] for child in
                    self.entries[entry.parent].data.get("children") or ()
                    if child["path"] in wanted]
        mine = siblings.index(entry.path)
        shown = [child.data for child in parent.children]
        for later in siblings[mine + 1:]:
            if later in shown:
                return shown.index(later)
        return None

    @property
    def selected_path(self) -> str | None:
        node = self.actor_tree.cursor_node
        return node.data if node is not None else None

    def select(self, path: str) -> bool:
        """Move the cursor to the actor at `path` (shown by the tree); False if it is not.

        The move happens after the next refresh: a node under parents just
        expanded has no line in the tree until then.
        """
        node = self.nodes.get(path)
        if node is None:
            return False
        parent = node.parent
        while parent is not None:
            parent.expand()
            parent = parent.parent
        self.call_after_refresh(self.actor_tree.move_cursor, node)
        return True

    @on(Tree.NodeHighlighted)
    def _highlighted(self) -> None:
        self._show_details()

    def _show_details(self) -> None:
        path = self.selected_path
        details = self.query_one("#details", Static)
        entry = self.entries.get(path) if path else None
        if entry is None:
            details.update(Text(f"{path}: gone" if path else "select an actor in the tree",
                                style="dim"))
        else:
            details.update(details_of(entry, self.entries))
        if path != self._lines_for:
            self._lines_for = path
            self._show_lines(path)

    def _show_lines(self, path: str | None) -> None:
        """Follow the selected step's output lines (the previous follow is cancelled)."""
        pane = self.query_one("#lines", StepLines)
        entry = self.entries.get(path) if path else None
        supervisor = entry is None or entry.data.get("kind") == "supervisor"
        step = step_of(path) if path and not supervisor else None
        if step is None or self.client is None:
            self.workers.cancel_group(self, "lines")
            pane.border_title = "output"
            pane.show_nothing("select a step to see its output lines"
                              if self.client is not None or step is None else "not connected")
            return
        self.run_worker(pane.follow(self.client, step), group="lines", exclusive=True,
                        exit_on_error=False)

    # -- actions -------------------------------------------------------------------------

    def _target(self) -> str | None:
        path = self.selected_path
        if path is None:
            self.notify("select an actor first", severity="warning")
        return path

    def action_kill(self) -> None:
        if (path := self._target()) is not None:
            self._act(path, "kill")

    def action_restart(self) -> None:
        if (path := self._target()) is not None:
            self._act(path, "restart")

    def action_terminate(self) -> None:
        if (path := self._target()) is None:
            return
        question = f"terminate {path}? It stops for good: its supervisor will not restart it."

        def answered(yes: bool | None) -> None:
            if yes:
                self._act(path, "terminate")

        self.push_screen(ConfirmScreen(question), answered)

    def action_cancel_workflow(self) -> None:
        if (path := self._target()) is None:
            return
        workflow = workflow_of(path)
        if workflow is None:
            self.notify(f"{path} is not part of a workflow", severity="warning")
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.run_worker(self._cancel(workflow), group="actions")

        self.push_screen(ConfirmScreen(f"cancel workflow {workflow}?"), answered)

    def _act(self, path: str, op: str) -> None:
        self.run_worker(self._actor(path, op), group="actions")

    async def _actor(self, path: str, op: str) -> None:
        client = self._connected()
        if client is None:
            return
        try:
            await client.actor(path, op)
        except ApiError as error:
            self.notify(f"{op} {path}: {error}", title=error.kind.value, severity="error")
        except NoetlError as error:
            self.notify(f"{op} {path}: {error}", severity="error")
        else:
            self.notify(f"{op}: {path}", title="done")
            self._wake.set()

    async def _cancel(self, workflow: str) -> None:
        client = self._connected()
        if client is None:
            return
        self.notify(f"cancelling {workflow}…")
        try:
            await client.cancel(workflow)
        except NoetlError as error:
            self.notify(f"cancel {workflow}: {error}", severity="error")
        else:
            self.notify(f"cancelled {workflow}", title="done")
            self._wake.set()

    def _connected(self) -> Client | None:
        if self.client is None:
            self.notify(f"not connected: {self.connection_error or 'connecting'}",
                        severity="error")
        return self.client

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    def action_filter(self) -> None:
        field = self.query_one("#filter", Input)
        field.add_class("shown")
        field.focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.filter_text = event.value.strip()
        self._sync_tree()

    @on(Input.Submitted, "#filter")
    def _filter_submitted(self) -> None:
        self.actor_tree.focus()

    def on_key(self, event: events.Key) -> None:
        """Esc in the filter (or on the tree, while a filter is set) clears it."""
        if event.key != "escape" or len(self.screen_stack) > 1:
            return
        field = self.query_one("#filter", Input)
        if field.has_focus or self.filter_text:
            field.value = ""
            self.filter_text = ""
            field.remove_class("shown")
            self._sync_tree()
            self.actor_tree.focus()
            event.stop()
