"""The project's import graph, read from the source with `ast` (nothing is imported).

An edge `a -> b` means module `a` imports project module `b`, at the top of the file
or inside a function (a lazy import still ties the two together). Imports under
`if TYPE_CHECKING:` never run: they are kept apart (`type_only`), so that a cycle
check can ignore them while a layer check still sees them.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

PACKAGES = ("zapstream", "schemas", "ingest", "processors", "sinks", "bench", "tests")


@dataclass
class ImportGraph:
    modules: set[str] = field(default_factory=set)
    edges: dict[str, set[str]] = field(default_factory=dict)
    """Imports that run (at import time or when a function runs)."""
    type_only: dict[str, set[str]] = field(default_factory=dict)
    """Imports under `if TYPE_CHECKING:`."""

    def all_edges(self) -> dict[str, set[str]]:
        return {m: self.edges.get(m, set()) | self.type_only.get(m, set()) for m in self.modules}


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


class _Imports(ast.NodeVisitor):
    def __init__(self, module: str, is_package: bool) -> None:
        self.package = module.split(".") if is_package else module.split(".")[:-1]
        self.found: list[tuple[str, bool]] = []  # (dotted name, type-only)
        self._type_only = 0

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node.test):
            self._type_only += 1
            for child in node.body:
                self.visit(child)
            self._type_only -= 1
            for child in node.orelse:
                self.visit(child)
        else:
            self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.found.append((alias.name, self._type_only > 0))

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = node.module or ""
        if node.level:
            package = self.package[: len(self.package) - (node.level - 1)]
            base = ".".join([*package, base] if base else package)
        for alias in node.names:
            # `from a import b` imports the module a.b when there is one, else a name of a
            self.found.append((f"{base}.{alias.name}", self._type_only > 0))


def _resolve(name: str, modules: set[str]) -> str | None:
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def build(root: Path, packages: Iterable[str] = PACKAGES) -> ImportGraph:
    files = {
        module_name(root, path): path for pkg in packages for path in (root / pkg).rglob("*.py")
    }
    graph = ImportGraph(modules=set(files))
    for module, path in files.items():
        visitor = _Imports(module, path.name == "__init__.py")
        visitor.visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
        for name, type_only in visitor.found:
            target = _resolve(name, graph.modules)
            if target is None or target == module:
                continue
            (graph.type_only if type_only else graph.edges).setdefault(module, set()).add(target)
    return graph


def cycles(edges: Mapping[str, Iterable[str]]) -> list[frozenset[str]]:
    """The import cycles: strongly connected components of more than one module
    (Tarjan's algorithm, iterative)."""
    graph = {m: sorted(set(targets)) for m, targets in edges.items()}
    for targets in list(graph.values()):
        for t in targets:
            graph.setdefault(t, [])
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = len(index)
                stack.append(node)
                on_stack.add(node)
            targets = graph[node]
            if i < len(targets):
                work.append((node, i + 1))
                target = targets[i]
                if target not in index:
                    work.append((target, 0))
                elif target in on_stack:
                    low[node] = min(low[node], index[target])
                continue
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(frozenset(component))
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return found
