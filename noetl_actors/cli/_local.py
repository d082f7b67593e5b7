"""Commands that work on this machine: check, preview and run playbooks, serve NATS.

Each command imports what it needs when it runs (the playbook language, the
node, rich), so that `noetl --help` and `noetl validate` start at once.
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from typing import Any

import click

from noetl_actors._gc import collect_in_larger_steps
from noetl_actors.cli._main import (
    EXIT_CANCELLED,
    EXIT_FAILED,
    EXIT_INVALID,
    FILE_ARGUMENT,
    SET_OPTION,
    STATE_DIR_OPTION,
    load_node_config_or_exit,
    load_or_exit,
    main,
    nats_options,
    nats_options_for,
    parse_sets,
    try_load,
)


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@SET_OPTION
def validate(files: tuple[str, ...], sets: tuple[str, ...]) -> None:
    """Check playbooks: exit 0 if all are valid, else print file:line:col problems, exit 2."""
    overrides = parse_sets(sets)
    invalid = False
    for path in files:
        playbook = try_load(path, overrides)
        if playbook is None:
            invalid = True
            continue
        steps = sum(len(task.steps) for task in playbook.tasks)
        click.echo(f"{path}: valid ({len(playbook.tasks)} tasks, {steps} steps)")
    if invalid:
        sys.exit(EXIT_INVALID)


@main.command()
def schema() -> None:
    """Print the JSON Schema of playbooks (for editors: yaml-language-server)."""
    import json

    from noetl_actors.playbook import playbook_schema

    click.echo(json.dumps(playbook_schema(), indent=2))


@main.command()
@FILE_ARGUMENT
@click.option("--fail", "fails", multiple=True, metavar="TASK.STEP=N",
              help="Make a step fail its first N attempts (N may be 'always'). Repeatable.")
@SET_OPTION
def preview(file: str, fails: tuple[str, ...], sets: tuple[str, ...]) -> None:
    """Simulate the supervisors of a playbook; no plugin runs.

    Prints the timeline (who fails, who restarts what, under which policy,
    when a limit is hit and how it escalates), the outcome and how often each
    step would run. Exit 0 if the simulated run succeeds, 1 if it fails.
    """
    from noetl_actors.runtime import parse_failure, run_preview

    playbook = load_or_exit(file, sets)
    try:
        failures = {}
        for text in fails:
            task, step, count = parse_failure(text)
            failures[(task, step)] = count
        result = run_preview(playbook, failures)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--fail") from None
    click.echo(result.report())
    sys.exit(0 if result.succeeded else 1)


@main.command()
@FILE_ARGUMENT
@SET_OPTION
def lint(file: str, sets: tuple[str, ...]) -> None:
    """Worst-case executions per step, and warnings on suspicious policies."""
    from noetl_actors.playbook import lint as lint_playbook

    playbook = load_or_exit(file, sets)
    worst, warnings = lint_playbook(playbook)
    width = max(len(f"{w.task}.{w.step}") for w in worst)
    click.echo(f"{'step':<{width}}  worst case  because")
    for row in worst:
        click.echo(f"{f'{row.task}.{row.step}':<{width}}  {row.executions:>10}  {row.why}")
    for warning in warnings:
        click.echo(str(warning))
    if not warnings:
        click.echo("no warnings")



@main.command()
@FILE_ARGUMENT
@SET_OPTION
@nats_options
@STATE_DIR_OPTION
@click.option("--json", "as_json", is_flag=True,
              help="Print exactly one JSON document (the run's report) and nothing else.")
def run(file: str, sets: tuple[str, ...], nats: Any, state_dir: Path | None,
        as_json: bool) -> None:
    """Run a playbook and wait for it: exit 0 succeeded, 1 failed, 130 cancelled."""
    collect_in_larger_steps()
    import json

    from rich.console import Console
    from rich.live import Live

    from noetl_actors.console import render_document
    from noetl_actors.errors import NoetlError
    from noetl_actors.services import Node

    playbook = load_or_exit(file, sets)
    node = Node(options=nats, state_dir=state_dir)
    console = Console(stderr=as_json)
    cancelled = False
    try:
        node.start()
        workflow = node.run(playbook)
        report = workflow.report
        live = Live(render_document(report.to_json()), console=console, refresh_per_second=10,
                    transient=False) if console.is_terminal and not as_json else None
        # Ctrl-C is a request to cancel, caught by a handler of our own rather than
        # as a KeyboardInterrupt: that would be raised wherever the main thread is,
        # and it never comes if the shell that started us ignored SIGINT (`cmd &`).
        # A second Ctrl-C, while the cancel runs, is Python's own again.
        interrupted = threading.Event()
        previous = signal.signal(signal.SIGINT, lambda *_: interrupted.set())
        try:
            if live:
                live.start()
            while workflow.wait(0.1) is None:
                if interrupted.is_set():
                    signal.signal(signal.SIGINT, signal.default_int_handler)
                    cancelled = True
                    workflow.cancel()
                    workflow.wait(60)
                    break
                if live:
                    live.update(render_document(report.to_json()))
        finally:
            signal.signal(signal.SIGINT, previous)
            if live:
                live.update(render_document(report.to_json()))
                live.stop()
    except NoetlError as error:
        click.echo(f"noetl run: {error}", err=True)
        sys.exit(EXIT_FAILED)
    finally:
        node.stop()
    document = report.to_json()
    if as_json:
        click.echo(json.dumps(document))
    else:
        if not console.is_terminal:
            console.print(render_document(report.to_json()))
        if document["error"]:
            console.print(f"[red]{document['error']['reason']}[/red]")
    if cancelled:
        sys.exit(EXIT_CANCELLED)
    sys.exit(0 if document["status"] == "succeeded" else EXIT_FAILED)


@main.command()
@click.argument("workflow_id")
@nats_options
@STATE_DIR_OPTION
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def events(workflow_id: str, nats: Any, state_dir: Path | None, as_json: bool) -> None:
    """Print a workflow's history: every step and supervision event, in order."""
    import json

    from noetl_actors.errors import NoetlError
    from noetl_actors.services import Node

    if not nats.embedded:  # a client's read of the stream: a viewer may do it
        from noetl_actors.cli._cluster import call

        history = call(nats, lambda client: client.history(workflow_id))
    else:
        node = Node(options=nats, state_dir=state_dir, workers=())
        try:
            node.start()
            history = node.history(workflow_id)
        except NoetlError as error:
            raise click.ClickException(str(error)) from None
        finally:
            node.stop()
    if not history:
        click.echo(f"no events for workflow {workflow_id}", err=True)
        sys.exit(EXIT_FAILED)
    for entry in history:
        if as_json:
            click.echo(json.dumps(entry))
        elif entry.get("type") == "event":
            failure = f" {entry['error_type']}: {entry['error_message']}" \
                if entry.get("error_type") else ""
            click.echo(f"{entry['at']:.3f}  {entry['step_id']:<24} attempt {entry['attempt']}"
                       f"  {entry['status']}{failure}  ({entry['worker']})")
        else:
            reason = entry.get("reason") or {}
            why = f"  {reason['kind']}" if reason else ""
            if reason.get("error_type") == "skipped":  # and why: `when ...`, `not reached`
                why = f"  {reason['message']}"
            detail = f"  {entry['detail']}" if entry.get("kind") == "moved" else ""
            click.echo(f"{entry['at']:.3f}  {entry['path']:<24} {entry['kind']}{why}{detail}")


@main.command()
@nats_options_for(role="node", current=True)
@click.option("--plugin", "plugins", multiple=True, metavar="NAME",
              help="Run workers for this plugin only (repeatable) [default: all].")
@click.option("--heartbeat", type=click.FloatRange(min=0.05),
              help="Seconds between heartbeats of a running attempt [default: the config's].")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path),
              help="YAML merged over supervisors/node.yaml: its workers' settings and "
                   "`kubernetes:` (to run `runner: kubernetes` steps as Jobs).")
@click.option("--accept-unfenced", is_flag=True,
              help="Also run commands that no workflow owner sent (epoch 0: from `noetl run "
                   "--nats`, which holds no lease); by default they are refused.")
def worker(nats: Any, plugins: tuple[str, ...], heartbeat: float | None,
           config_file: Path | None, accept_unfenced: bool) -> None:
    """Run plugin workers (no workflows) against a NATS server until Ctrl-C."""
    collect_in_larger_steps()
    from noetl_actors.errors import NoetlError
    from noetl_actors.services import Node

    options = nats
    if options.embedded:
        raise click.UsageError("a worker needs --nats (or NATS_URL): the server of its nodes")
    config = load_node_config_or_exit(config_file)
    node = Node(options=options, config=config, workers=plugins or None, heartbeat=heartbeat,
                unfenced=accept_unfenced)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        node.start()
        names = ", ".join(plugins) if plugins else "every plugin"
        click.echo(f"workers for {names} on {options.describe()}; Ctrl-C stops them.")
        sys.stdout.flush()
        # In slices, as `noetl node start` waits: a signal the kernel hands to another
        # thread (seen after SIGSTOP and SIGCONT) would not wake an endless wait, and
        # SIGTERM went unheard until the test's 20 s grace ran out.
        while not stop.wait(0.5):
            pass
    except NoetlError as error:
        raise click.ClickException(str(error)) from None
    finally:
        node.stop()


@main.command()
def demo() -> None:
    """Start a supervision tree, crash its children, watch them restart."""
    from noetl_actors.console.demo import run_demo

    run_demo()


@main.command()
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Where JetStream keeps its store, the users and their seeds "
                   "[default: ~/.local/state/noetl-actors].")
@click.option("--port", type=click.IntRange(1, 65535),
              help="Client port [default: the last start's on this state dir if free, else a "
                   "free one].")
@click.option("--monitor-port", type=click.IntRange(0, 65535),
              help="Serve HTTP monitoring on this port of 127.0.0.1 (0: a free one) "
                   "[default: none].")
@click.option("--user", help="Also accept this user, an admin; its password from "
                             "NATS_PASSWORD, --password-file or a prompt.")
@click.option("--password-file", type=click.Path(dir_okay=False, path_type=Path),
              help="File holding the password of --user.")
@click.option("--tls", is_flag=True,
              help="TLS with client certificates, from a local CA made in the state dir "
                   "(its tls/ folder): your commands and nodes find them too.")
def server(state_dir: Path | None, port: int | None, monitor_port: int | None,
           user: str | None, password_file: Path | None, tls: bool) -> None:
    """Run the embedded nats-server (loopback, JetStream, users) until Ctrl-C.

    Nodes and commands of this user find it without flags; others need
    credentials from `noetl credentials issue`.
    """
    import os

    from noetl_actors.bridge import EmbeddedNatsServer
    from noetl_actors.errors import NoetlError

    password = None
    if user is not None:
        if password_file is not None:
            password = password_file.read_text(encoding="utf-8").strip()
        else:
            password = os.environ.get("NATS_PASSWORD") or click.prompt(
                f"password of {user}", hide_input=True, err=True)
    try:
        nats = EmbeddedNatsServer(state_dir=state_dir, port=port, monitor_port=monitor_port,
                                  user=user, password=password, tls=tls,
                                  remember=True).start()
    except (NoetlError, ValueError) as error:
        raise click.ClickException(str(error)) from None
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    monitoring = f"(monitoring {nats.monitor_url})" if nats.monitor_port is not None else \
        "(no monitoring)"
    click.echo(f"nats-server on {nats.url} {monitoring}, JetStream store {nats.store_dir}")
    if nats.port_note:
        click.echo(f"{nats.port_note}: clients that kept its URL must use {nats.url}")
    if nats.tls is not None:
        click.echo(f"TLS: clients trust {nats.tls.ca} and show a certificate it signed "
                   f"(yours: {nats.tls.client_cert}, {nats.tls.client_key})")
    click.echo(f"Your noetl commands find its credentials; other users need "
               f"`noetl credentials issue --state-dir {nats.state_dir} ROLE NAME`.")
    click.echo("Ctrl-C stops it.")
    sys.stdout.flush()
    try:
        while not stop.wait(0.5):
            if not nats.is_running():
                raise click.ClickException(f"nats-server exited; see {nats.log_file}")
    finally:
        nats.stop()
    click.echo("nats-server stopped.")
