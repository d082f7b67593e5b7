"""nats-py's errors, translated at the boundary into noetl-actors' own.

One table, read by `translate()`; a test fails if nats-py gains an error
class that is not in it.
"""

from __future__ import annotations

import nats.errors as nats_errors
import nats.js.errors as js_errors

from noetl_actors.errors import (
    AuthorizationError,
    BridgeError,
    BridgeTimeout,
    ConnectError,
    NoResponders,
)

__all__ = ["NATS_ERRORS", "is_auth_error", "translate"]

NATS_ERRORS: dict[type[Exception], type[Exception]] = {
    # No answer in time.
    nats_errors.TimeoutError: BridgeTimeout,
    nats_errors.FlushTimeoutError: BridgeTimeout,
    nats_errors.DrainTimeoutError: BridgeTimeout,
    js_errors.FetchTimeoutError: BridgeTimeout,
    # Credentials refused.
    nats_errors.AuthorizationError: AuthorizationError,
    nats_errors.InvalidUserCredentialsError: AuthorizationError,
    # No usable connection.
    nats_errors.NoServersError: ConnectError,
    nats_errors.ConnectionClosedError: ConnectError,
    nats_errors.ConnectionReconnectingError: ConnectError,
    nats_errors.ConnectionDrainingError: ConnectError,
    nats_errors.StaleConnectionError: ConnectError,
    nats_errors.UnexpectedEOF: ConnectError,
    nats_errors.SecureConnRequiredError: ConnectError,
    nats_errors.SecureConnWantedError: ConnectError,
    nats_errors.SecureConnFailedError: ConnectError,
    nats_errors.ServerNotInPoolError: ConnectError,
    nats_errors.ProtocolError: ConnectError,
    # Misuse: the caller's mistake, as builtins.
    nats_errors.BadSubjectError: ValueError,
    nats_errors.BadHeaderError: ValueError,
    nats_errors.BadTimeoutError: ValueError,
    nats_errors.BadSubscriptionError: ValueError,
    nats_errors.InvalidCallbackTypeError: TypeError,
    nats_errors.MaxPayloadError: ValueError,
    nats_errors.JsonParseError: ValueError,
    # No subscriber on a request's subject.
    nats_errors.NoRespondersError: NoResponders,
    # Everything else that went wrong on the way.
    nats_errors.SlowConsumerError: BridgeError,
    nats_errors.OutboundBufferLimitError: BridgeError,
    nats_errors.MsgAlreadyAckdError: BridgeError,
    nats_errors.NotJSMessageError: BridgeError,
    nats_errors.Error: BridgeError,
    js_errors.Error: BridgeError,
}


def translate(error: BaseException) -> BaseException:
    """Our error for a nats-py one (by its closest class in the table); others unchanged."""
    for cls in type(error).__mro__:
        target = NATS_ERRORS.get(cls)
        if target is not None:
            text = str(error) or type(error).__name__
            translated = target(f"{text} ({type(error).__name__})")
            translated.__cause__ = error
            return translated
    return error


def is_auth_error(error: BaseException) -> bool:
    """Whether `error` (nats-py's, or the server's text in another) is a refusal of
    our credentials."""
    text = str(error).lower()
    return isinstance(error, nats_errors.AuthorizationError) or (
        "authorization violation" in text or "authentication" in text
    )
