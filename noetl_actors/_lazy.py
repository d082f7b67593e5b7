"""Package `__init__`s that import a module only when one of its names is used (PEP 562).

`noetl --help` must not pay for the node, the bridge or rich; the packages
whose modules are heavy say which module holds each name they export, and
the name is imported on first use, then kept as an ordinary attribute.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, where: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A module `__getattr__` and `__dir__` for `package`, whose names live in `where`.

    `where` maps each exported name to the submodule that defines it
    (``{"Node": "_node"}``); an unknown name raises `AttributeError` as
    usual.
    """

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(where)

    return __getattr__, __dir__
