"""`ApiService`: the cluster's command API, answered by whichever node is free.

    noetl.api.submit     {"playbook": text, "file"?, "vars"?, "workflow_id"?}
                                                           -> {"workflow_id", "node", "again"?}
    noetl.api.register   {"name", "playbook": text, "file"?}   -> {"name", "revision"}
    noetl.api.run        {"name", "vars"?}                     -> {"workflow_id", "node"}
    noetl.api.playbooks  {}                                    -> {"playbooks": [...]}
    noetl.api.list       {"status"?}                           -> {"workflows": [...]}
    noetl.api.status     {"workflow_id"}                       -> {"workflow": record}
    noetl.api.cancel     {"workflow_id"}                       -> {"workflow_id", "status"}
    noetl.api.nodes      {}                                    -> {"nodes": [...]}

Every node is in the queue group ``noetl-api``. What a node needs to answer
is in the cluster's buckets, except a cancel, which goes on to the node
that runs the workflow. A request that is wrong changes nothing: playbooks
are checked in full before anything is stored or started.

A submit may name its workflow's id (clients choose one, `Client.submit`):
sent again (no answer in time), it starts nothing new, and is answered
with the workflow that has the id, ``"again": true``: the id's lease (a
create in the leases bucket, so one node only wins it) or record says so.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from noetl_actors.bridge import SCHEMA_VERSION_KEY, Delivery, KeyValue
from noetl_actors.errors import (
    ApiError,
    BridgeError,
    ErrorKind,
    MalformedMessage,
    NoetlError,
    PlaybookError,
)
from noetl_actors.playbook import Playbook, is_name, parse_playbook
from noetl_actors.services._protocol import API_QUEUE, api_subject, node_subject
from noetl_actors.services._records import RUNNING
from noetl_actors.services._responder import Responder, field, workflow_id_field

if TYPE_CHECKING:
    from noetl_actors.services._node import Node

__all__ = ["ApiService"]

CANCEL_TIMEOUT = 90.0
"""Seconds a cancel may take on the owner node (its workflow's grace periods)."""

_SUMMARY_KEYS = ("workflow_id", "playbook", "node", "status", "started_at", "finished_at")


class ApiService(Responder):
    def __init__(self, node: Node, *, playbooks: KeyValue) -> None:
        assert node.bridge is not None and node.records is not None
        super().__init__(node.bridge)
        self.node = node
        self.records = node.records
        self.playbooks = playbooks
        self._handlers = {
            "submit": self.submit, "register": self.register, "run": self.run,
            "playbooks": self.list_playbooks, "list": self.list_workflows,
            "status": self.status, "cancel": self.cancel, "nodes": self.nodes,
        }

    def subscriptions(self) -> list[tuple[str, str | None]]:
        return [(api_subject("*"), API_QUEUE)]

    def handle(self, request: Delivery) -> dict[str, Any]:
        verb = request.subject.rsplit(".", 1)[-1]
        handler = self._handlers.get(verb)
        if handler is None:
            raise ApiError(ErrorKind.BAD_REQUEST,
                           f"unknown verb {verb!r}; known: {', '.join(self._handlers)}")
        return handler(request.data)

    # -- playbooks -------------------------------------------------------------

    def _parse(self, text: str, file: str, variables: dict[str, Any] | None) -> Playbook:
        try:
            return parse_playbook(text, file, catalog=self.node.catalog, overrides=variables)
        except PlaybookError as error:
            problems = [str(problem) for problem in error.problems]
            raise ApiError(ErrorKind.INVALID_PLAYBOOK,
                           f"{file}: the playbook is not valid ({len(problems)} "
                           f"problem{'s' if len(problems) != 1 else ''})",
                           problems=problems) from None

    def _start(self, playbook: Playbook, source: str,
               workflow_id: str | None = None) -> dict[str, Any]:
        running, limit = len(self.node.running()), self.node.config.max_workflows
        if running >= limit:
            raise ApiError(ErrorKind.BUSY, f"node {self.node.name} runs {running} workflows, "
                                           f"its limit (max_workflows: {limit}); try again "
                                           f"later")
        run = self.node.run(playbook, source=source, workflow_id=workflow_id)
        return {"workflow_id": run.workflow_id, "node": self.node.name,
                "playbook": playbook.name}

    def submit(self, data: Mapping[str, Any]) -> dict[str, Any]:
        text = field(data, "playbook", str)
        file = field(data, "file", str, required=False, default="<submitted>")
        variables = field(data, "vars", dict, required=False)
        workflow_id = workflow_id_field(data, required=False)
        if workflow_id is None:
            return self._start(self._parse(text, file, variables), text)
        started = self._submitted(workflow_id)
        if started is not None:
            return started
        playbook = self._parse(text, file, variables)
        try:
            return self._start(playbook, text, workflow_id)
        except NoetlError:
            started = self._submitted(workflow_id, playbook.name)  # another copy won its lease
            if started is None:
                raise
            return started

    def _submitted(self, workflow_id: str, playbook: str | None = None) -> dict[str, Any] | None:
        """The answer to a submit of `workflow_id` sent again: who has it; None if nobody.

        Its record says so from its start on; its lease, while the first copy of the
        submit is starting it (looked at only once this copy lost the lease)."""
        try:
            record = self.records.get(workflow_id)
        except MalformedMessage:
            record = None
        if record is not None and isinstance(record.data, dict):
            return {"workflow_id": workflow_id, "node": record.data.get("node"),
                    "playbook": record.data.get("playbook"), "again": True}
        leases = self.node.leases
        if playbook is None or leases is None:
            return None
        lease = leases.kv.get(workflow_id)
        if lease is not None and isinstance(lease.data, dict):
            return {"workflow_id": workflow_id, "node": lease.data.get("owner"),
                    "playbook": playbook, "again": True}
        return None

    def register(self, data: Mapping[str, Any]) -> dict[str, Any]:
        name = field(data, "name", str)
        if not is_name(name):
            raise ApiError(ErrorKind.BAD_REQUEST, f"a playbook's name is letters, digits, "
                                                  f"'-' and '_' (got {name!r})")
        text = field(data, "playbook", str)
        file = field(data, "file", str, required=False, default=f"<{name}>")
        playbook = self._parse(text, file, None)
        revision = self.playbooks.put(name, {
            "name": name, "playbook": playbook.name, "file": file, "source": text,
            "registered_at": time.time(), "registered_by": self.node.name,
        })
        return {"name": name, "revision": revision}

    def run(self, data: Mapping[str, Any]) -> dict[str, Any]:
        name = field(data, "name", str)
        variables = field(data, "vars", dict, required=False)
        entry = self.playbooks.get(name) if is_name(name) else None
        if entry is None:
            known = sorted(self.playbooks.entries())
            raise ApiError(ErrorKind.NOT_FOUND, f"no playbook registered as {name!r}; "
                                                f"registered: {', '.join(known) or 'none'}")
        text = entry.data["source"]
        return self._start(self._parse(text, entry.data.get("file", name), variables), text)

    def list_playbooks(self, data: Mapping[str, Any]) -> dict[str, Any]:
        entries = sorted(self.playbooks.entries().values(), key=lambda entry: entry.key)
        return {"playbooks": [
            {key: entry.data.get(key) for key in ("name", "playbook", "file", "registered_at")}
            | {"revision": entry.revision}
            for entry in entries
        ]}

    # -- workflows -------------------------------------------------------------

    def list_workflows(self, data: Mapping[str, Any]) -> dict[str, Any]:
        status = field(data, "status", str, required=False)
        return {"workflows": [
            {key: record.get(key) for key in _SUMMARY_KEYS}
            for record in self.records.all()
            if status is None or record.get("status") == status
        ]}

    def _record(self, data: Mapping[str, Any]) -> dict[str, Any]:
        workflow_id = workflow_id_field(data)
        try:
            entry = self.records.get(workflow_id)
        except MalformedMessage:
            entry = None
        if entry is None:
            raise ApiError(ErrorKind.NOT_FOUND, f"no workflow {workflow_id}")
        return entry.data

    def status(self, data: Mapping[str, Any]) -> dict[str, Any]:
        return {"workflow": self._record(data)}

    def cancel(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """Ask the owner to cancel; the lease keeps the request for whoever owns it next.

        A workflow whose owner is gone is cancelled by the node that takes it
        over (``status: cancelling`` until then); one with no lease at all (no
        node can own it) is marked cancelled in its record here.
        """
        record = self._record(data)
        workflow_id = record["workflow_id"]
        if record.get("status") != RUNNING:
            raise ApiError(ErrorKind.CONFLICT,
                           f"workflow {workflow_id} is {record.get('status')}: nothing to cancel")
        leases = self.node.leases
        lease = leases.request_cancel(workflow_id) if leases is not None else None
        owner = lease.owner if lease is not None else record.get("node", "?")
        try:
            reply = self.bridge.request(node_subject(owner, "cancel"),
                                        {"workflow_id": workflow_id},
                                        timeout=CANCEL_TIMEOUT).get()
        except BridgeError as error:
            why = f"node {owner}, which runs {workflow_id}, does not answer: {error}"
            return self._cancel_unowned(workflow_id, why, lease is not None)
        if not reply.data.get("ok"):
            refusal = reply.data.get("error") or {}
            if refusal.get("kind") == ErrorKind.NOT_FOUND.value:
                return self._cancel_unowned(workflow_id, refusal.get("message", ""),
                                            lease is not None)
            raise ApiError.from_reply(reply.data)
        return {key: value for key, value in reply.data.items()
                if key not in ("ok", SCHEMA_VERSION_KEY)}

    def _cancel_unowned(self, workflow_id: str, why: str, leased: bool) -> dict[str, Any]:
        if leased:
            return {"workflow_id": workflow_id, "status": "cancelling",
                    "message": f"{why}; the node that takes it over cancels it"}
        entry = self.records.get(workflow_id)
        if entry is None or not self.records.finish_unowned(entry, "cancelled", why):
            raise ApiError(ErrorKind.UNAVAILABLE, f"{why}; try again")
        return {"workflow_id": workflow_id, "status": "cancelled", "message": why}

    def nodes(self, data: Mapping[str, Any]) -> dict[str, Any]:
        entries = self.node.nodes_bucket.entries() if self.node.nodes_bucket else {}
        return {"nodes": [entries[name].data for name in sorted(entries)]}
