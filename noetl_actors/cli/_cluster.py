"""Commands that talk to running nodes over NATS: any node answers the API.

Rich, the client (nats-py) and the console are imported by the commands
that use them, when they run: `noetl --help` loads none of them.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from noetl_actors.cli._main import (
    EXIT_FAILED,
    EXIT_INVALID,
    SET_OPTION,
    cluster_options,
    main,
    parse_sets,
)

if TYPE_CHECKING:
    from rich.tree import Tree

T = TypeVar("T")

_JSON = click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")


def call(options: Any, work: Callable[[Any], Awaitable[T]]) -> T:
    """Run `work(client)` on a connected client; errors become one line and an exit status."""
    import asyncio

    from noetl_actors.client import ApiError, Client, ErrorKind
    from noetl_actors.errors import NoetlError

    async def go() -> T:
        async with Client(options) as client:
            return await work(client)

    try:
        return asyncio.run(go())
    except ApiError as error:
        click.echo(f"noetl: {error}", err=True)
        for problem in error.problems:
            click.echo(problem, err=True)
        invalid = error.kind in (ErrorKind.BAD_REQUEST, ErrorKind.INVALID_PLAYBOOK)
        sys.exit(EXIT_INVALID if invalid else EXIT_FAILED)
    except NoetlError as error:
        click.echo(f"noetl: {error}", err=True)
        sys.exit(EXIT_FAILED)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as error:
        click.echo(f"{path}: cannot read it: {error.strerror}", err=True)
        sys.exit(EXIT_INVALID)


# -- workflows -------------------------------------------------------------------


@main.command()
@click.argument("file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--name", "registered", metavar="NAME",
              help="Run the playbook registered as NAME instead of a file.")
@SET_OPTION
@cluster_options
@click.option("--wait", is_flag=True, help="Wait for the workflow and exit 0 only if it "
                                           "succeeded.")
@click.option("--id", "workflow_id", metavar="ID",
              help="The workflow's id (default: a new one). A submit of an ID that is "
                   "taken starts nothing and prints that workflow: safe to run again.")
@_JSON
def submit(file: Path | None, registered: str | None, sets: tuple[str, ...], nats: Any,
           wait: bool, workflow_id: str | None, as_json: bool) -> None:
    """Start a workflow on the cluster; print its id (with --wait, its outcome)."""
    if (file is None) == (registered is None):
        raise click.UsageError("give a playbook FILE or --name NAME (one of them)")
    if workflow_id is not None and registered is not None:
        raise click.UsageError("--id goes with a playbook FILE, not --name")
    variables = parse_sets(sets)

    async def work(client: Any) -> dict[str, Any]:
        if file is not None:
            started = await client.submit(_read(file), file=str(file), variables=variables,
                                          workflow_id=workflow_id)
        else:
            started = await client.run_registered(registered, variables=variables)
        if wait:
            return {"started": started, "record": await client.wait(started["workflow_id"])}
        return {"started": started}

    result = call(nats, work)
    started, record = result["started"], result.get("record")
    if record is None:
        click.echo(json.dumps(started) if as_json else started["workflow_id"])
        if not as_json:
            what = "was started already:" if started.get("again") else "started"
            click.echo(f"{what} {started['playbook']} on node {started['node']}", err=True)
        return
    _show_record(record, as_json)
    sys.exit(0 if record["status"] == "succeeded" else EXIT_FAILED)


@main.command()
@click.argument("workflow_id")
@cluster_options
@_JSON
def status(workflow_id: str, nats: Any, as_json: bool) -> None:
    """Show a workflow: its node, status, tasks and steps (exit 1 unless it succeeded)."""
    record = call(nats, lambda client: client.status(workflow_id))
    _show_record(record, as_json)
    sys.exit(0 if record["status"] in ("succeeded", "running") else EXIT_FAILED)


@main.command()
@click.argument("workflow_id")
@cluster_options
def cancel(workflow_id: str, nats: Any) -> None:
    """Cancel a workflow: every task, step and subprocess of it stops."""
    result = call(nats, lambda client: client.cancel(workflow_id))
    click.echo(f"{workflow_id} {result['status']}")
    if result.get("message"):
        click.echo(result["message"], err=True)


@main.command(name="list")
@click.option("--status", "only", metavar="STATUS",
              help="Only workflows with this status (running, succeeded, failed, ...).")
@cluster_options
@_JSON
def list_workflows(only: str | None, nats: Any, as_json: bool) -> None:
    """List the cluster's workflows, oldest first."""
    workflows = call(nats, lambda client: client.workflows(only))
    if as_json:
        click.echo(json.dumps({"workflows": workflows}))
        return
    if not workflows:
        click.echo("no workflows", err=True)
        return
    from rich.console import Console
    from rich.text import Text

    from noetl_actors.console import STATUS_STYLE

    console = Console()
    for workflow in workflows:
        line = Text(f"{workflow['workflow_id']}  {workflow['playbook']:<20} "
                    f"{workflow['node']:<16} ")
        line.append(f"{workflow['status']:<10}", style=STATUS_STYLE.get(workflow["status"], ""))
        line.append(f" {_when(workflow.get('started_at'))}  "
                    f"{_took(workflow.get('started_at'), workflow.get('finished_at'))}")
        # One line per workflow: wrapped at the terminal's width on a terminal,
        # whole when piped (rich would wrap at 80 columns, splitting the dates).
        console.print(line, highlight=False, soft_wrap=not console.is_terminal)


# -- playbooks -------------------------------------------------------------------


@main.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--name", help="Register it under this name [default: the playbook's name].")
@cluster_options
def register(file: Path, name: str | None, nats: Any) -> None:
    """Store a playbook in the cluster's registry, to run with `submit --name`."""
    import yaml

    text = _read(file)
    if name is None:
        try:
            document = yaml.safe_load(text)
        except yaml.YAMLError:
            document = None
        name = document.get("name") if isinstance(document, dict) else None
        if not isinstance(name, str):
            name = file.stem
    result = call(nats, lambda client: client.register(name, text, file=str(file)))
    click.echo(f"registered {result['name']} (revision {result['revision']})")


@main.command()
@cluster_options
@_JSON
def playbooks(nats: Any, as_json: bool) -> None:
    """List the registered playbooks."""
    found = call(nats, lambda client: client.playbooks())
    if as_json:
        click.echo(json.dumps({"playbooks": found}))
        return
    for entry in found:
        click.echo(f"{entry['name']:<24} revision {entry['revision']:<4} "
                   f"{_when(entry.get('registered_at'))}  {entry.get('file') or ''}")
    if not found:
        click.echo("no playbooks registered", err=True)


# -- nodes and actors -----------------------------------------------------------------


@main.command()
@cluster_options
@_JSON
@click.option("--watch", is_flag=True, help="Redraw every second until Ctrl-C.")
def tree(nats: Any, as_json: bool, watch: bool) -> None:
    """Show every node's actor tree."""
    if as_json:
        nodes = call(nats, lambda client: client.tree())
        click.echo(json.dumps({"nodes": [_node_json(entry) for entry in nodes]}))
        return
    from rich.console import Console

    console = Console()
    if not watch:
        console.print(_render_nodes(call(nats, lambda client: client.tree())))
        return
    import asyncio

    from rich.live import Live

    async def follow(client: Any) -> None:
        with Live(console=console, auto_refresh=False) as live:
            while True:
                live.update(_render_nodes(await client.tree()), refresh=True)
                await asyncio.sleep(1.0)

    try:
        call(nats, follow)
    except KeyboardInterrupt:
        pass


def _actor_command(op: str, help_text: str) -> None:
    @main.command(name=op, help=help_text)
    @click.argument("actor_path")
    @cluster_options
    def command(actor_path: str, nats: Any) -> None:
        call(nats, lambda client: client.actor(actor_path, op))
        click.echo(f"{op}: {actor_path}")


_actor_command("kill", "Crash an actor (as if its code had raised): its supervisor acts.")
_actor_command("restart", "Restart an actor: stop it, then start it again.")
_actor_command("terminate", "Stop an actor for good (it stays stopped until restarted).")


@main.command()
@cluster_options
def console(nats: Any) -> None:
    """The live console: every node's tree, the selected actor, the events."""
    if nats.embedded:
        raise click.UsageError("the console needs --nats URL (or NATS_URL): the NATS server "
                               "of the nodes, as `noetl node start` printed it")
    from noetl_actors.console import ConsoleApp

    ConsoleApp(nats).run()


# -- showing -------------------------------------------------------------------


def _node_json(entry: dict[str, Any]) -> dict[str, Any]:
    """A node of `noetl tree --json`: who it is, and its actors as id, kind, state,
    restarts and children, recursively."""
    from noetl_actors.console import shown_state

    def actor(picture: dict[str, Any]) -> dict[str, Any]:
        return {"id": picture["id"], "path": picture["path"], "kind": picture["kind"],
                "state": "unresponsive" if picture.get("unresponsive") else shown_state(picture),
                "restarts": picture.get("total_restarts", 0),
                "children": [actor(child) for child in picture.get("children", [])]}

    snapshot = entry.get("tree")
    return {**entry["node"], "error": entry.get("error"),
            "tree": actor(snapshot) if snapshot else None}


def _render_nodes(results: list[dict[str, Any]]) -> Tree:
    """Every node's tree, each actor labelled as in the console."""
    from rich.text import Text
    from rich.tree import Tree

    from noetl_actors.console import flatten, label_of

    top = Tree(Text(f"{len(results)} node{'s' if len(results) != 1 else ''}", style="bold"))
    branches: dict[str, Tree] = {}
    for path, entry in flatten(results).items():
        parent = branches[entry.parent] if entry.parent is not None else top
        branches[path] = parent.add(label_of(entry))
    return top


def _show_record(record: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(record))
        return
    from rich.console import Console
    from rich.text import Text

    from noetl_actors.console import render_document

    console = Console()
    epoch = record.get("epoch")
    owner = f"{record['node']} (epoch {epoch})" if isinstance(epoch, int) and epoch > 1 \
        else record["node"]
    console.print(render_document(record, detail=(
        f"on {owner}, {_when(record.get('started_at'))}, "
        f"{_took(record.get('started_at'), record.get('finished_at'))}")))
    for move in record.get("moves") or []:
        how = (f"node {move.get('to')} was started again and took it back"
               if move.get("from") == move.get("to") else
               f"moved from node {move.get('from')} to {move.get('to')}")
        console.print(Text(f"{how} (epoch {move.get('epoch')}) at {_when(move.get('at'))}",
                           style="yellow"))
    if record.get("error"):
        console.print(Text(record["error"]["reason"], style="red"))


def _when(at: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at)) if at else "-"


def _took(started: float | None, finished: float | None) -> str:
    if not started:
        return "-"
    return f"{(finished or time.time()) - started:.1f}s" + ("" if finished else " so far")
