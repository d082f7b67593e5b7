"""The wire format: every payload is a JSON object with a schema version.

Encoded and decoded by orjson: every step's command and event go through
here twice each, and orjson does a small payload in ~2 us where the
standard library takes 7-10. What orjson refuses and the standard library
takes (an integer past 64 bits; NaN or Infinity when decoding) goes the
standard library's way, so its answer, or its error, stands. One
difference is kept: orjson writes NaN and Infinity as ``null``, standard
JSON, where `json` wrote literals that other languages cannot read.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import orjson

from noetl_actors.errors import MalformedMessage

__all__ = ["SCHEMA_VERSION", "SCHEMA_VERSION_KEY", "decode", "encode"]

SCHEMA_VERSION = 1
SCHEMA_VERSION_KEY = "schema_version"

MAX_DEPTH = 1024
"""Levels of nesting a payload may have (orjson's own bound)."""

_OPTIONS = orjson.OPT_NON_STR_KEYS  # {1: "a"} -> {"1": "a"}, as json does
# One encoder and one decoder for the process, for what orjson refuses:
# `json.dumps(..., separators=...)` builds a JSONEncoder per call.
_ENCODER = json.JSONEncoder(separators=(",", ":"))
_DECODER = json.JSONDecoder()


def encode(data: Mapping[str, Any]) -> bytes:
    """JSON bytes of `data`, with ``schema_version`` added if it is missing.

    Raises:
        TypeError: `data` is not a mapping, or holds something JSON cannot carry.
    """
    if not isinstance(data, Mapping):
        raise TypeError(f"a payload must be a mapping (got {type(data).__name__})")
    if SCHEMA_VERSION_KEY not in data:
        data = {SCHEMA_VERSION_KEY: SCHEMA_VERSION, **data}
    try:
        return orjson.dumps(data, option=_OPTIONS)
    except TypeError:
        return _ENCODER.encode(dict(data) if type(data) is not dict else data).encode()


def decode(payload: bytes) -> dict[str, Any]:
    """The JSON object in `payload`.

    Raises:
        MalformedMessage: not UTF-8 JSON, not an object, or no schema version
            this runtime reads; the message says which.
    """
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError as first:
        if "depth limit" in str(first):  # the standard library would overflow its stack
            raise MalformedMessage(f"nested deeper than {MAX_DEPTH} levels") from None
        try:
            data = _DECODER.decode(payload.decode())
        except (UnicodeDecodeError, ValueError) as error:
            raise MalformedMessage(f"not JSON: {error}") from None
        except RecursionError:
            raise MalformedMessage(f"nested deeper than {MAX_DEPTH} levels") from None
    if not isinstance(data, dict):
        raise MalformedMessage(f"not a JSON object but {type(data).__name__}")
    version = data.get(SCHEMA_VERSION_KEY)
    if version is None:
        raise MalformedMessage(f"no {SCHEMA_VERSION_KEY!r} field")
    if version != SCHEMA_VERSION:
        raise MalformedMessage(
            f"{SCHEMA_VERSION_KEY} {version!r} is not one this runtime reads ({SCHEMA_VERSION})"
        )
    return data
