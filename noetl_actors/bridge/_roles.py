"""The roles of a noetl NATS and the subjects each may publish and subscribe to.

docs/security.md has this as a table; `tests/test_security.py` checks each
role against a real nats-server. The subjects are the ones the code uses:

    command.<plugin>.<wf>.<step>    a step attempt for a plugin's workers
    event.<plugin>.<wf>.<step>      what happened to it (kept in NOETL_EVENTS)
    noetl.api.<verb>                the command API (any node answers)
    noetl.node.<node>.<verb>        one node: tree, cancel
    noetl.actor.<node>.<path...>    one actor's control mailbox (kill, restart, ...)
    noetl.lifecycle.>               supervision events (kept in NOETL_EVENTS)
    noetl.log.<wf>.<step>.<attempt> what a step printed (kept in NOETL_LOGS)
    noetl.ready.<plugin>            a worker of the plugin started
    noetl.cancel.<plugin>           cancel an attempt in flight
    noetl.deadletter                payloads the bridge could not decode
    $KV.<bucket>.>, $JS.API.>       JetStream: buckets, streams, consumers
    _INBOX.>                        replies (requests, JetStream acks, KV reads)
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Any

__all__ = ["Role", "permissions", "render_roles"]

BUCKETS = ("noetl-claims", "noetl-leases", "noetl-workflows", "noetl-nodes", "noetl-playbooks")
"""The node's JetStream key-value buckets (services/_protocol.py, _claims.py, _lease.py);
a node also reads the object store `noetl-results` (Jobs' large results, runners/_results.py)."""
EVENTS_STREAM = "NOETL_EVENTS"
RESULTS_BUCKET = "noetl-results"
"""The object store of Jobs' large results (runners/_results.py)."""
LOGS_STREAM = "NOETL_LOGS"
"""Steps' output lines (services/_logs.py)."""

READ_VERBS = ("list", "status", "nodes", "playbooks")
"""API verbs that change nothing."""
WRITE_VERBS = ("submit", "run", "register", "cancel")


class Role(enum.Enum):
    """Who connects, and so what they may do."""

    ADMIN = "admin"
    """Everything: the machine's owner (the CLI's own context), operators."""
    NODE = "node"
    """A supervisor node: runs workflows, workers, the API; every noetl subject and
    JetStream, nothing else."""
    WORKER = "worker"
    """`noetl worker --plugin NAME`: its plugins' commands and events, heartbeats,
    its claims; never the API or another plugin's commands."""
    CLIENT = "client"
    """`noetl submit/status/list/cancel/events/tree`: asks the API; never publishes a
    command or an event, nor touches an actor."""
    VIEWER = "viewer"
    """Read-only: `noetl status/list/tree/events`, the console without its actions."""
    JOB = "job"
    """The pod of a plugin's Kubernetes Job (`runner: kubernetes`): stores a result too
    large for its termination message in the object store `noetl-results`; nothing else."""


def _stream_reader(stream: str) -> list[str]:
    """JetStream API subjects to read `stream` through a consumer of one's own
    (`noetl events`, `noetl logs`), and nothing that changes or deletes the stream."""
    return [
        f"$JS.API.STREAM.INFO.{stream}",
        f"$JS.API.CONSUMER.CREATE.{stream}",
        f"$JS.API.CONSUMER.CREATE.{stream}.>",
        f"$JS.API.CONSUMER.INFO.{stream}.*",
        f"$JS.API.CONSUMER.MSG.NEXT.{stream}.*",
        f"$JS.API.CONSUMER.DELETE.{stream}.*",
        f"$JS.ACK.{stream}.>",
    ]


def _results_writer() -> list[str]:
    """What nats-py's object store needs to put one object in `noetl-results` (and make
    the bucket if it is not there): its stream's info, create and last-message read,
    the purge of an object's older chunks, and the chunks and meta themselves."""
    stream = f"OBJ_{RESULTS_BUCKET}"
    return ["$JS.API.INFO", f"$JS.API.STREAM.INFO.{stream}",
            f"$JS.API.STREAM.CREATE.{stream}", f"$JS.API.STREAM.MSG.GET.{stream}",
            f"$JS.API.DIRECT.GET.{stream}.>", f"$JS.API.STREAM.PURGE.{stream}",
            f"$O.{RESULTS_BUCKET}.>"]


def _worker(plugins: Sequence[str]) -> tuple[list[str], list[str]]:
    publish = [f"event.{p}.>" for p in plugins] + [f"noetl.ready.{p}" for p in plugins]
    publish += [
        "$JS.API.INFO",
        # its claims: one key per attempt in noetl-claims (create, read, delete)
        "$JS.API.STREAM.INFO.KV_noetl-claims",
        "$KV.noetl-claims.>",
        "$JS.API.DIRECT.GET.KV_noetl-claims.>",
        "$JS.API.STREAM.MSG.GET.KV_noetl-claims",
        # the owner's lease, read to fence a claim (never written)
        "$JS.API.STREAM.INFO.KV_noetl-leases",
        "$JS.API.DIRECT.GET.KV_noetl-leases.>",
        "$JS.API.STREAM.MSG.GET.KV_noetl-leases",
        # events go to NOETL_EVENTS with an ack
        f"$JS.API.STREAM.INFO.{EVENTS_STREAM}",
        # its process starts as a node does: it makes sure the stream and buckets exist
        # (a create of one that exists, with the same config, changes nothing; never an
        # update or a delete)
        f"$JS.API.STREAM.CREATE.{EVENTS_STREAM}",
        "$JS.API.STREAM.CREATE.KV_noetl-claims",
        "$JS.API.STREAM.CREATE.KV_noetl-leases",
        # what its plugins print, kept in NOETL_LOGS (`noetl logs`): a chunk of an
        # attempt's lines names no plugin, so a worker may publish any workflow's
        "noetl.log.>",
        f"$JS.API.STREAM.INFO.{LOGS_STREAM}",
        f"$JS.API.STREAM.CREATE.{LOGS_STREAM}",
        # the supervision events of its own actors (workers restarted...)
        "noetl.lifecycle.node.>",
        "noetl.deadletter",
    ]
    subscribe = [f"command.{p}.>" for p in plugins] + [f"noetl.cancel.{p}" for p in plugins]
    subscribe += ["noetl.ready.*"]
    return publish, subscribe


def permissions(role: Role, *, plugins: Sequence[str] = ()) -> dict[str, Any]:
    """The nats-server `permissions` block of `role` (`plugins`: a worker's).

    Every role may subscribe to `_INBOX.>` (replies) and answer a request it
    received (`allow_responses`); anything not listed is refused by the server
    ("Permissions Violation").

    Raises:
        ValueError: a worker without plugins.
    """
    if role is Role.ADMIN:
        return {"publish": {"allow": [">"]}, "subscribe": {"allow": [">"]}}
    if role is Role.NODE:
        kv = [f"$KV.{bucket}.>" for bucket in BUCKETS] + [f"$O.{RESULTS_BUCKET}.>"]
        return {
            "publish": {"allow": ["command.>", "event.>", "noetl.>", "$JS.API.>",
                                  "$JS.ACK.>", "$JS.FC.>", *kv, "_INBOX.>"]},
            "subscribe": {"allow": ["command.>", "event.>", "noetl.>", *kv, "_INBOX.>"]},
            "allow_responses": True,
        }
    if role is Role.WORKER:
        if not plugins:
            raise ValueError("a worker's credentials name its plugins (--plugin NAME)")
        publish, subscribe = _worker(plugins)
        return {"publish": {"allow": publish},
                "subscribe": {"allow": [*subscribe, "_INBOX.>"]},
                "allow_responses": True}
    if role is Role.JOB:
        return {"publish": {"allow": _results_writer()}, "subscribe": {"allow": ["_INBOX.>"]}}
    verbs = READ_VERBS + (WRITE_VERBS if role is Role.CLIENT else ())
    return {
        "publish": {"allow": [*(f"noetl.api.{verb}" for verb in verbs),
                              "noetl.node.*.tree", "$JS.API.INFO",
                              *_stream_reader(EVENTS_STREAM), *_stream_reader(LOGS_STREAM)]},
        "subscribe": {"allow": ["noetl.lifecycle.>", "_INBOX.>"]},
    }


def render_roles(*, plugins: Sequence[str] = ("*",)) -> str:
    """Every role's permissions as nats-server config variables (`NOETL_ADMIN = {...}`),
    for a server's config to include and its users to name (deploy/nats/). A worker's
    are for `plugins` (``*``: every plugin)."""
    import json

    lines = ["# The permissions of noetl-actors' roles (docs/security.md), as nats-server",
             "# config variables. Made by `noetl credentials roles"
             + "".join(f" --plugin {p}" for p in plugins if p != "*") + "`: do not edit.", ""]
    for role in Role:
        block = permissions(role, plugins=plugins)
        lines.append(f"NOETL_{role.name} = " + json.dumps(block, indent=2))
        lines.append("")
    return "\n".join(lines)
