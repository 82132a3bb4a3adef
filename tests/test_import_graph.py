"""The modules of ``src/supervisor`` import one another without a cycle.

The graph is read with ``ast`` from the source, so it holds every import: at
module level, inside functions (lazy imports) and inside ``try`` blocks. Only
imports under ``if TYPE_CHECKING:`` are left out: they never run.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path

import supervisor

PACKAGE = Path(supervisor.__file__).resolve().parent


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node, except what is under ``if TYPE_CHECKING:``."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            yield from (n for child in node.orelse for n in _runtime_nodes(child))
            continue
        yield node
        yield from _runtime_nodes(node)


def imported(module: str, tree: ast.AST, known: frozenset[str]) -> set[str]:
    """The package's modules that ``module`` imports, anywhere in its code."""
    found: set[str] = set()
    package = module if module == "supervisor" else module.rpartition(".")[0]
    for node in _runtime_nodes(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name in known}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            for alias in node.names:
                target = f"{base}.{alias.name}"
                found.add(target if target in known else base)
    return {m for m in found if m in known and m != module}


def import_graph() -> dict[str, set[str]]:
    files = sorted(PACKAGE.rglob("*.py"))
    known = frozenset(module_name(f) for f in files)
    return {
        module_name(f): imported(module_name(f), ast.parse(f.read_text(encoding="utf-8")), known)
        for f in files
    }


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_cycles_are_found_in_a_small_graph() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_function_level_and_relative_imports_are_edges() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "from . import b\n"
        "if TYPE_CHECKING:\n    from supervisor import d\n"
        "def f():\n    from supervisor.c import thing\n    import supervisor.e\n"
    )
    known = frozenset({"supervisor", "supervisor.a", "supervisor.b", "supervisor.c",
                       "supervisor.d", "supervisor.e"})  # fmt: skip
    edges = imported("supervisor.a", ast.parse(source), known)
    assert edges == {"supervisor.b", "supervisor.c", "supervisor.e"}


def test_the_package_imports_no_module_in_a_circle() -> None:
    graph = import_graph()
    assert graph.get("supervisor.cli"), "the graph was not read"
    assert cycles(graph) == []


def test_nothing_imports_the_cli() -> None:
    """``cli`` is the top: it prints and picks exit codes; nothing depends on it."""
    graph = import_graph()
    users = sorted(m for m, targets in graph.items() if "supervisor.cli" in targets)
    assert users in ([], ["supervisor.__main__"]), users
