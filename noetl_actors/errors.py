"""Every error noetl-actors raises on purpose.

The tree, as callers catch it::

    NoetlError
    ├── PlaybookError             a playbook is invalid; .problems says where and what
    ├── TemplateError             a template did not parse or render (step error "template")
    ├── LoopTooLong               a looped task's items are more than its max_items
    ├── SupervisionError          a supervisor gave up; .reason holds the chain
    ├── InjectedCrash             what an actor told `Crash` raises in its own loop
    ├── ChildError                a dynamic-child verb was misused
    │   ├── ChildNotFound             no child with that id (also a KeyError)
    │   ├── ChildAlreadyExists        start_child with an id in use
    │   └── ChildRunning              restart/delete of a child that still runs
    ├── ActorDeadError            the actor (or address) is gone for good
    │                             (also a pykka.ActorDeadError)
    ├── MailboxFull               an address buffered as much as it may
    ├── PluginError               a plugin failed an attempt; .error_type names the failure
    ├── StepFailed                a step's plugin reported a failure (as the step sees it)
    ├── StepTimeout               a step attempt ran past its timeout
    ├── WorkerLost                the worker running an attempt fell silent
    ├── NoWorker                  no worker took an attempt's command in the time it may wait
    ├── RouterClosed              a step started after its workflow's router closed
    ├── ApiError                  an error reply of the command API; .kind is an ErrorKind
    ├── Cancelled                 a plugin noticed that its attempt was cancelled
    ├── ManifestError             a plugin.yaml is invalid; .file says which
    ├── PluginNotFound            no plugin of that name on the plugin path (also a KeyError)
    ├── ResultError               a Job's result cannot be read: a bad termination message,
    │                             a missing or damaged object in NATS
    ├── KubeConfigError           the node's `kubernetes:` settings name no usable cluster
    └── BridgeError               something between us and NATS
        ├── NatsServerError           the embedded nats-server did not start
        │   ├── NatsServerNotFound        no nats-server binary to run
        │   └── StoreInUse                another live nats-server uses that store
        ├── ConnectError              could not connect (the cause says why)
        │   └── AuthorizationError        the server refused our credentials
        ├── CredentialsError          credentials cannot be issued, revoked or found
        ├── BridgeTimeout             no answer (ack, reply) in time
        ├── NoResponders              a request no one listens for (no subscriber on its subject)
        ├── ConnectionLost            the connection ended unasked; the bridge's actor restarts it
        └── MalformedMessage          a payload that is not ours: not JSON, no schema

Misuse of an API (wrong types, impossible options) raises the matching
builtin (`TypeError`, `ValueError`) with a message naming the argument.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pykka

if TYPE_CHECKING:
    from noetl_actors.supervision import ExitReason

__all__ = [
    "ActorDeadError",
    "ApiError",
    "AuthorizationError",
    "BridgeError",
    "BridgeTimeout",
    "Cancelled",
    "ChildAlreadyExists",
    "ChildError",
    "ChildNotFound",
    "ChildRunning",
    "ConnectError",
    "ConnectionLost",
    "CredentialsError",
    "ErrorKind",
    "InjectedCrash",
    "KubeConfigError",
    "LoopTooLong",
    "MailboxFull",
    "MalformedMessage",
    "ManifestError",
    "NatsServerError",
    "NatsServerNotFound",
    "NoResponders",
    "NoWorker",
    "NoetlError",
    "PlaybookError",
    "PluginError",
    "PluginNotFound",
    "ResultError",
    "RouterClosed",
    "StepFailed",
    "StepTimeout",
    "StoreInUse",
    "SupervisionError",
    "TemplateError",
    "WorkerLost",
]


class NoetlError(Exception):
    """The root of every error that noetl-actors raises on purpose."""


class PlaybookError(NoetlError):
    """A playbook (or preset) is invalid; nothing of it runs.

    `problems` holds one `Problem` per thing wrong (file, line, col,
    message); `str()` is one ``file:line:col: message`` line each.
    """

    def __init__(self, problems: Sequence[Any]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = list(problems)


class TemplateError(NoetlError):
    """A template did not parse or render: an undefined name, bad syntax, a sandbox refusal.

    At run time it is a step failure of type ``template``.
    """

    error_type = "template"


class LoopTooLong(NoetlError):
    """A looped task's `over` gave more items than its `max_items` (error type ``loop``)."""

    error_type = "loop"


class InjectedCrash(NoetlError):
    """What an actor told `Crash` raises in its own loop (error type ``killed``)."""

    error_type = "killed"


class SupervisionError(NoetlError):
    """A supervision tree (or part of one) gave up.

    Raised by `start_supervisor` when the root cannot start and by
    `SupervisorRef.start_child` when the child cannot be started. `reason`
    holds the whole chain: which supervisor gave up, because of which child,
    down to the original exception type and message.
    """

    def __init__(self, reason: ExitReason) -> None:
        super().__init__(reason.describe())
        self.reason = reason


class ChildError(NoetlError):
    """A dynamic-child verb (start/terminate/restart/delete) was misused."""


class ChildNotFound(ChildError, KeyError):
    """The supervisor has no child with that id."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class ChildAlreadyExists(ChildError):
    """`start_child` was given an id that the supervisor already has."""


class ChildRunning(ChildError):
    """`restart_child` or `delete_child` on a child that is still running."""


class ActorDeadError(NoetlError, pykka.ActorDeadError):
    """The actor, or the address of a child that will not come back, is gone.

    Also a `pykka.ActorDeadError`, so code written for pykka still catches it.
    """


class MailboxFull(NoetlError):
    """An address holds as many messages for a restarting child as it may.

    The message was not accepted; nothing that was accepted before is lost.
    """


class PluginError(NoetlError):
    """A plugin failed its attempt: raised by plugin code, reported as the step's error.

    `error_type` names the failure for `on_error:` (``ShellError``,
    ``HTTPError``, ...); the default is ``PluginError``. The message becomes
    the step's error message.
    """

    def __init__(self, message: str, *, error_type: str = "PluginError") -> None:
        super().__init__(message)
        self.error_type = error_type


class StepFailed(NoetlError):
    """A step's plugin reported a failure; `error_type` is the plugin's name for it."""

    def __init__(self, message: str, *, error_type: str = "StepFailed") -> None:
        super().__init__(message)
        self.error_type = error_type


class StepTimeout(NoetlError):
    """A step attempt ran past its `timeout` (error type ``timeout``)."""

    error_type = "timeout"


class WorkerLost(NoetlError):
    """The worker running an attempt fell silent (error type ``crash``)."""

    error_type = "crash"


class NoWorker(NoetlError):
    """No worker took an attempt's command within the node's `worker_wait` (error type
    ``crash``); `plugin` names the plugin it waited for."""

    error_type = "crash"

    def __init__(self, message: str, *, plugin: str = "") -> None:
        super().__init__(message)
        self.plugin = plugin


class RouterClosed(NoetlError):
    """A step started after its workflow's router was closed (error type ``crash``)."""

    error_type = "crash"


class ErrorKind(enum.Enum):
    """What an `ApiError` is about; the ``kind`` of an error reply of the command API."""

    BAD_REQUEST = "bad_request"
    """The request is malformed: a field missing or of the wrong type."""
    INVALID_PLAYBOOK = "invalid_playbook"
    """The playbook does not load; ``problems`` lists ``file:line:col: ...``."""
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    """The request does not fit the state: cancel a finished workflow, say."""
    UNAVAILABLE = "unavailable"
    """The node that could answer is gone or still starting."""
    BUSY = "busy"
    """The node runs as many workflows as it may (`max_workflows`): try again later."""


class ApiError(NoetlError):
    """An error reply of the command API, raised by the client."""

    def __init__(self, kind: ErrorKind, message: str, *, problems: list[str] | None = None):
        super().__init__(message)
        self.kind = kind
        self.problems = problems or []

    @classmethod
    def from_reply(cls, reply: Mapping[str, Any]) -> ApiError:
        error = reply.get("error") or {}
        try:
            kind = ErrorKind(error.get("kind"))
        except ValueError:
            kind = ErrorKind.BAD_REQUEST
        return cls(kind, str(error.get("message", "the node gave no reason")),
                   problems=[str(p) for p in error.get("problems", [])])

    def to_reply(self) -> dict[str, Any]:
        """The reply a service sends for this error."""
        return {"ok": False, "error": {"kind": self.kind.value, "message": str(self),
                                       "problems": self.problems}}


class Cancelled(NoetlError):
    """Raised in a plugin by `Context.sleep()`/`check_cancelled()` once its attempt is cancelled.

    The runner already knows why it stopped the attempt (a cancel, a
    timeout), so a plugin may let this propagate or simply return.
    """

    error_type = "cancelled"


class ManifestError(NoetlError, ValueError):
    """A plugin's `plugin.yaml` is missing a field, has one of the wrong type, or an unknown one.

    `file` is the manifest's path; the message says what is wrong.
    """

    def __init__(self, file: str, message: str) -> None:
        super().__init__(f"{file}: {message}")
        self.file = file
        self.problem = message


class PluginNotFound(NoetlError, KeyError):
    """No plugin of that name in any folder of the plugin path."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class ResultError(NoetlError):
    """A Kubernetes Job's result cannot be read: its termination message is not one the
    entrypoint writes, or the object it points to in NATS is missing or damaged."""


class KubeConfigError(NoetlError):
    """The node's `kubernetes:` settings name no cluster it can use: the kubeconfig file is
    missing or invalid, or ``in-cluster`` outside a pod. Raised by `Node.start()`."""


class BridgeError(NoetlError):
    """Something went wrong between noetl-actors and NATS."""


class NatsServerError(BridgeError):
    """The embedded nats-server exited at start or was not ready in time.

    The message ends with the tail of the server's log.
    """


class NatsServerNotFound(NatsServerError):
    """No nats-server binary to run; the message says what to install."""


class StoreInUse(NatsServerError):
    """Another nats-server runs on the state dir's store, and two must never share one.

    Either its process lives (a node or `noetl server` on that state dir), or it
    was left by one that died and did not exit when asked. The message names it.
    """


class ConnectError(BridgeError):
    """Could not connect to NATS; the message names the servers, `__cause__` the reason."""


class AuthorizationError(ConnectError):
    """The NATS server refused the credentials given (user/password, token, creds)."""


class CredentialsError(BridgeError):
    """Credentials of an embedded server cannot be issued, revoked or read: a bad name
    or role, a user that does not exist, a state dir without users."""


class BridgeTimeout(BridgeError, TimeoutError):
    """NATS did not answer (a reply, a JetStream ack) within the time given."""


class NoResponders(BridgeError):
    """A request found no subscriber on its subject (the server said so at once)."""


class ConnectionLost(BridgeError):
    """The bridge's connection ended without being asked to; its actor restarts it."""


class MalformedMessage(BridgeError, ValueError):
    """A payload on a bridged subject that is not ours: not JSON, or no schema version.

    Never raised into an actor: the bridge counts it, logs it and publishes
    it to the dead-letter subject. Raised by `decode()` for direct callers.
    """
