"""python: import `module`, call `function(*args, **kwargs)`, return what it returns.

The module is imported from the runner's `sys.path` (under the process
runner: the child's, which starts with the working directory).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from noetl_actors.runners import INPUT_ERROR, Context, PluginError


def run(input: dict[str, Any], ctx: Context) -> Any:
    target = input.get("function")
    if not isinstance(target, str):
        raise PluginError("the python plugin needs input 'function' (module:function)",
                          error_type=INPUT_ERROR)
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise PluginError(f"function must read 'module:function' (got {target!r})",
                          error_type=INPUT_ERROR)
    args, kwargs = input.get("args"), dict(input.get("kwargs") or {})
    if isinstance(args, Mapping):  # `args: {name: value}` reads as keyword arguments
        kwargs = {**args, **kwargs}
        args = []
    elif args is None:
        args = []
    elif not isinstance(args, list):
        raise PluginError(f"args must be a list or a mapping (got {args!r})",
                          error_type=INPUT_ERROR)
    try:
        function: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            function = getattr(function, part)
    except (ImportError, AttributeError) as error:
        raise PluginError(f"cannot find {target!r}: {error}", error_type=INPUT_ERROR) from None
    if not callable(function):
        raise PluginError(f"{target!r} is not callable", error_type=INPUT_ERROR)
    return function(*args, **kwargs)
