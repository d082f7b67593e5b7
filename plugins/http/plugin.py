"""http: one request with httpx; status, headers and body (decoded when it is JSON) come back.

A status >= 400 fails with error type ``HTTPError``; a request that takes
longer than `timeout` (or than the attempt has left) fails with ``timeout``;
a connection that fails, with ``ConnectionError``.
"""

from __future__ import annotations

import json as jsonlib
from collections.abc import Mapping
from typing import Any

import httpx

from noetl_actors.runners import INPUT_ERROR, TIMEOUT, Context, PluginError

TAIL = 500
"""Characters of a failed response's body quoted in its message."""


def run(input: dict[str, Any], ctx: Context) -> dict[str, Any]:
    method, url = input["method"].upper(), input["url"]
    given = [key for key in ("json", "data", "body") if input.get(key) is not None]
    if len(given) > 1:
        raise PluginError(f"give one of json, data, body (got {', '.join(given)})",
                          error_type=INPUT_ERROR)
    content = _content(input)
    timeout = input["timeout"]
    remaining = ctx.remaining()
    if remaining is not None:  # never outlive the attempt (an inproc thread cannot be killed)
        timeout = min(timeout, max(remaining, 0.001))
    try:
        with httpx.Client(timeout=timeout, follow_redirects=True) as client:
            response = client.request(method, url, headers=input.get("headers"),
                                      params=input.get("params"), **content)
    except httpx.TimeoutException as error:
        raise PluginError(f"{method} {url}: no answer within {timeout:g}s ({error})",
                          error_type=TIMEOUT) from None
    except httpx.InvalidURL as error:
        raise PluginError(f"{method} {url}: {error}", error_type=INPUT_ERROR) from None
    except httpx.HTTPError as error:
        raise PluginError(f"{method} {url}: {type(error).__name__}: {error}",
                          error_type="ConnectionError") from None
    body = _body(response)
    if response.status_code >= 400:
        said = response.text.strip()[:TAIL]
        raise PluginError(f"{method} {url}: {response.status_code} {response.reason_phrase}"
                          + (f": {said}" if said else ""), error_type="HTTPError")
    return {
        "status": response.status_code,
        "headers": {key: ", ".join(response.headers.get_list(key))
                    for key in response.headers},
        "body": body,
    }


def _content(input: Mapping[str, Any]) -> dict[str, Any]:
    if input.get("json") is not None:
        return {"json": input["json"]}
    data = input.get("data")
    if data is None and input.get("body") is not None:
        body = input["body"]
        return {"content": body} if isinstance(body, str) else {"json": body}
    if data is None:
        return {}
    if isinstance(data, str):
        return {"content": data}
    if isinstance(data, Mapping):
        return {"data": {str(k): str(v) for k, v in data.items()}}
    raise PluginError(f"data must be a string or a mapping (got {data!r})",
                      error_type=INPUT_ERROR)


def _body(response: httpx.Response) -> Any:
    kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "application/json" or kind.endswith("+json"):
        try:
            return jsonlib.loads(response.content)
        except ValueError:
            return response.text
    return response.text
