"""`Responder`: a service actor that answers NATS requests with the API's replies."""

from __future__ import annotations

import concurrent.futures
import logging
from collections.abc import Mapping
from typing import Any

from noetl_actors._refusals import RefusalLog, short
from noetl_actors.bridge import Bridge, Delivery
from noetl_actors.errors import ApiError, ErrorKind, NoetlError
from noetl_actors.playbook import is_name
from noetl_actors.services._protocol import error_reply, ok_reply
from noetl_actors.supervision import SupervisedActor

__all__ = ["MAX_ID", "Responder", "field", "workflow_id_field"]

logger = logging.getLogger("noetl_actors.services")
_REFUSALS = RefusalLog(logger)

MAX_ID = 64
"""Characters a workflow id may have (a subject token, and a key in the buckets)."""

HANDLER_THREADS = 16


class Responder(SupervisedActor):
    """Subscribes in `on_start`; answers each request on a small thread pool.

    A request can be slow (a cancel waits until its workflow has stopped),
    so the actor only hands requests out and the pool answers them. A
    handler returns the reply's fields or raises `ApiError`; any other
    error is a bug, logged, and answered as one: a bad request must never
    take the service down.
    """

    def __init__(self, bridge: Bridge) -> None:
        super().__init__()
        self.bridge = bridge
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

    def subscriptions(self) -> list[tuple[str, str | None]]:
        """(subject, queue group or None) pairs to answer."""
        raise NotImplementedError

    def handle(self, request: Delivery) -> dict[str, Any]:
        """The reply's fields for `request` (on a pool thread)."""
        raise NotImplementedError

    def on_start(self) -> None:
        self._pool = concurrent.futures.ThreadPoolExecutor(
            HANDLER_THREADS, thread_name_prefix=f"noetl{self.path}")
        for subject, queue in self.subscriptions():
            self.bridge.subscribe(subject, self.actor_ref, queue=queue,
                                  answer_malformed=_malformed)

    def on_stop(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    def on_failure(self, *exc_info: Any) -> None:
        self.on_stop()

    def on_receive(self, message: Any) -> Any:
        if not isinstance(message, Delivery):
            return super().on_receive(message)
        if not message.reply:
            logger.warning("%s: a message on %s asks nothing (no reply subject); ignored",
                           self.path, message.subject)
            return None
        assert self._pool is not None
        self._pool.submit(self._answer, message)
        return None

    def _answer(self, request: Delivery) -> None:
        try:
            reply = ok_reply(**self.handle(request))
        except ApiError as error:
            reply = error.to_reply()
            if error.kind is ErrorKind.BAD_REQUEST:
                _REFUSALS.refused("bad_request:" + ".".join(request.subject.split(".")[:3]),
                                  "%s: refused a request on %s: %s", self.path,
                                  request.subject, short(str(error)))
        except NoetlError as error:
            reply = error_reply(ErrorKind.UNAVAILABLE, str(error))
        except Exception as error:
            logger.exception("%s: failed on a request on %s", self.path, request.subject)
            reply = error_reply(ErrorKind.BAD_REQUEST, f"the node failed on it: {error!r}")
        try:
            self.bridge.respond(request, reply)
        except (NoetlError, TypeError) as error:
            logger.warning("%s: could not answer on %s: %s", self.path, request.reply, error)


def _malformed(why: str) -> dict[str, Any]:
    return error_reply(ErrorKind.BAD_REQUEST, f"the request is not a JSON object with "
                                              f"schema_version: {why}")


def field(data: Mapping[str, Any], name: str, kind: type, *, required: bool = True,
          default: Any = None) -> Any:
    """`data[name]`, checked to be a `kind`; ApiError(bad_request) says what is wrong."""
    if name not in data or data[name] is None:
        if required:
            raise ApiError(ErrorKind.BAD_REQUEST, f"the request needs {name!r}")
        return default
    value = data[name]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ApiError(ErrorKind.BAD_REQUEST, f"{name!r} must be a {_KINDS.get(kind, kind)} "
                                              f"(got {type(value).__name__})")
    return value


_KINDS = {str: "string", dict: "mapping", list: "list", int: "whole number", bool: "boolean"}


def workflow_id_field(data: Mapping[str, Any], *, required: bool = True) -> Any:
    """`data["workflow_id"]`, checked to be an id (``wf-*`` or ``>`` would be a wildcard
    in a subject or a bucket's key): ApiError(bad_request) otherwise."""
    workflow_id = field(data, "workflow_id", str, required=required)
    if workflow_id is not None and (not is_name(workflow_id) or len(workflow_id) > MAX_ID):
        got = short(workflow_id, 80)
        raise ApiError(ErrorKind.BAD_REQUEST, f"a workflow id is at most {MAX_ID} letters, "
                                              f"digits, '-' and '_' (got {got!r})")
    return workflow_id
