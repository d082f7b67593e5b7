"""nats-py's errors are translated at the boundary, every one of them."""

from __future__ import annotations

import inspect

import nats.errors
import nats.js.errors

from noetl_actors.bridge._errors import NATS_ERRORS, translate
from noetl_actors.errors import AuthorizationError, BridgeError, BridgeTimeout, ConnectError


def _error_classes(module: object) -> set[type[BaseException]]:
    return {
        value for value in vars(module).values()
        if inspect.isclass(value) and issubclass(value, BaseException)
        and value.__module__ == module.__name__  # type: ignore[attr-defined]
    }


def test_every_nats_error_class_has_an_entry_in_the_table() -> None:
    missing = {cls.__name__ for cls in _error_classes(nats.errors)} - {
        cls.__name__ for cls in NATS_ERRORS
    }
    assert not missing, f"add these nats-py errors to NATS_ERRORS: {sorted(missing)}"


def test_every_jetstream_error_is_covered_through_its_base_class() -> None:
    for cls in _error_classes(nats.js.errors):
        assert any(base in NATS_ERRORS for base in cls.__mro__), cls.__name__


def test_errors_are_translated_to_our_own_with_the_original_as_cause() -> None:
    original = nats.errors.NoServersError()
    translated = translate(original)
    assert isinstance(translated, ConnectError)
    assert translated.__cause__ is original
    assert "NoServersError" in str(translated)
    assert isinstance(translate(nats.errors.TimeoutError()), BridgeTimeout)
    assert isinstance(translate(nats.errors.AuthorizationError()), AuthorizationError)
    assert isinstance(translate(nats.js.errors.NotFoundError()), BridgeError)
    assert isinstance(translate(nats.errors.BadSubjectError()), ValueError)


def test_errors_that_are_not_nats_ones_pass_through_unchanged() -> None:
    error = KeyError("x")
    assert translate(error) is error
