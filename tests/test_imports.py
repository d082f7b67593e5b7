"""The package's shape, read from its source: who may import what, no cycles, small modules.

Every module of `noetl_actors` is parsed with `ast`; its imports are read
wherever they stand (module level and inside functions), relative ones
resolved. An import under `if TYPE_CHECKING:` alone never runs, so it
counts for the privacy rule but not for cycles.
"""

from __future__ import annotations

import ast
import importlib
import inspect
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

import noetl_actors

PACKAGE = Path(noetl_actors.__file__).parent
MAX_LINES = 500


@attrs.frozen
class Import:
    importer: str
    """The importing module, dotted (``noetl_actors.cli._main``)."""
    target: str
    """The module imported, dotted: for ``from M import N``, M (or M.N if that is a module)."""
    name: str | None
    """The name taken from `target` (``from M import N``), when it is not a module."""
    line: int
    runs: bool
    """False for an import that only type checkers see (under ``TYPE_CHECKING``)."""

    def __str__(self) -> str:
        what = f"{self.target}.{self.name}" if self.name else self.target
        return f"{self.importer}:{self.line} imports {what}"


def module_files() -> dict[str, Path]:
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = ["noetl_actors", *path.relative_to(PACKAGE).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


MODULES = module_files()


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    hidden: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            hidden.update(id(inner) for statement in node.body for inner in ast.walk(statement))
    return hidden


def _base_of(importer: str, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    package = importer.split(".")
    if MODULES[importer].name != "__init__.py":
        package.pop()
    package = package[: len(package) - (node.level - 1)]
    return ".".join([*package, *([node.module] if node.module else [])])


def imports_of(importer: str) -> Iterator[Import]:
    tree = ast.parse(MODULES[importer].read_text(), str(MODULES[importer]))
    hidden = _type_checking_nodes(tree)
    for node in ast.walk(tree):
        runs = id(node) not in hidden
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(importer, alias.name, None, node.lineno, runs)
        elif isinstance(node, ast.ImportFrom):
            base = _base_of(importer, node)
            for alias in node.names:
                if f"{base}.{alias.name}" in MODULES:
                    yield Import(importer, f"{base}.{alias.name}", None, node.lineno, runs)
                else:
                    yield Import(importer, base, alias.name, node.lineno, runs)


ALL_IMPORTS = [i for m in MODULES for i in imports_of(m) if i.target.startswith("noetl_actors")]


def subpackage(module: str) -> str:
    """``noetl_actors.bridge._kv`` -> ``noetl_actors.bridge``; a top-level module is its own."""
    return ".".join(module.split(".")[:2])


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def test_no_module_reaches_into_another_subpackages_privates() -> None:
    """Outside its own subpackage, a subpackage is used through its `__init__` only."""
    offenders = []
    for imported in ALL_IMPORTS:
        if subpackage(imported.importer) == subpackage(imported.target):
            continue
        private_module = any(is_private(part) for part in imported.target.split(".")[2:])
        if private_module or (imported.name is not None and is_private(imported.name)):
            offenders.append(str(imported))
    assert offenders == []


def _graph() -> dict[str, set[str]]:
    """Module -> the modules importing it runs, parents included.

    Importing ``a.b.c`` runs ``a.b``'s `__init__` first, unless the importer
    is inside ``a.b`` already (then that `__init__` is what is importing).
    """
    graph: dict[str, set[str]] = {module: set() for module in MODULES}
    for imported in ALL_IMPORTS:
        if not imported.runs:
            continue
        target = imported.target
        while target not in MODULES:
            target = target.rpartition(".")[0]
        chain = target.split(".")
        for end in range(2, len(chain) + 1):
            module = ".".join(chain[:end])
            inside = imported.importer == module or imported.importer.startswith(module + ".")
            if module in MODULES and module != imported.importer and not (
                inside and module != target
            ):
                graph[imported.importer].add(module)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as a path that ends where it starts, or None."""
    done: set[str] = set()
    for start in sorted(graph):
        path: list[str] = []
        on_path: set[str] = set()
        stack = [(start, iter(sorted(graph[start])))]
        if start in done:
            continue
        path.append(start)
        on_path.add(start)
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                path.pop()
                on_path.discard(node)
                done.add(node)
            elif child in on_path:
                return [*path[path.index(child):], child]
            elif child not in done:
                stack.append((child, iter(sorted(graph[child]))))
                path.append(child)
                on_path.add(child)
    return None


def test_the_package_has_no_import_cycles() -> None:
    cycle = find_cycle(_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_subpackages_are_layers_without_cycles() -> None:
    """`services` may use `runtime`, never the other way round; nor `console`, say."""
    layers: dict[str, set[str]] = {}
    for imported in ALL_IMPORTS:
        importer, target = subpackage(imported.importer), subpackage(imported.target)
        layers.setdefault(importer, set())
        layers.setdefault(target, set())
        if imported.runs and importer != target and target != "noetl_actors":
            layers[importer].add(target)
    cycle = find_cycle(layers)
    assert cycle is None, "subpackages in a cycle: " + " -> ".join(cycle or [])


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set()}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_is_over_500_lines(module: str) -> None:
    lines = len(MODULES[module].read_text().splitlines())
    assert lines <= MAX_LINES, f"{MODULES[module]} has {lines} lines"


def test_every_exception_class_lives_in_errors_py() -> None:
    strays = []
    for module in MODULES:
        if module.endswith("__main__"):
            continue
        for name, value in vars(importlib.import_module(module)).items():
            if (inspect.isclass(value) and issubclass(value, BaseException)
                    and value.__module__ == module and module != "noetl_actors.errors"):
                strays.append(f"{module}.{name}")
    assert strays == []
