"""kthreads is layered: no import cycles, no imports hidden in function bodies.

The import graph is read from the source with ``ast``: module-level imports
of kthreads modules, except those under ``if TYPE_CHECKING:`` (annotations
only, never executed).
"""

from __future__ import annotations

import ast
from pathlib import Path

import kthreads

PACKAGE = Path(kthreads.__file__).parent


def modules() -> dict[str, ast.Module]:
    return {p.stem: ast.parse(p.read_text(), str(p)) for p in sorted(PACKAGE.glob("*.py"))}


def is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or \
        (isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def imported(node: ast.Import | ast.ImportFrom, names: set[str]) -> set[str]:
    """The kthreads modules an import statement loads."""
    out = set()
    if isinstance(node, ast.ImportFrom):
        if node.level == 1 and node.module:
            out.add(node.module.split(".")[0])
        elif node.level == 1:  # from . import x
            out |= {a.name for a in node.names if a.name in names}
        elif node.module and node.module.split(".")[0] == "kthreads":
            parts = node.module.split(".")
            if len(parts) > 1:
                out.add(parts[1])
    else:
        for a in node.names:
            parts = a.name.split(".")
            if parts[0] == "kthreads" and len(parts) > 1:
                out.add(parts[1])
    return out & names


def module_level_imports(tree: ast.Module, names: set[str]) -> set[str]:
    deps: set[str] = set()

    def walk(stmts: list[ast.stmt]) -> None:
        for node in stmts:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                deps.update(imported(node, names))
            elif isinstance(node, ast.If):
                if not is_type_checking(node):
                    walk(node.body)
                walk(node.orelse)
            elif isinstance(node, ast.Try):
                for block in (node.body, node.orelse, node.finalbody, *(h.body for h in node.handlers)):
                    walk(block)
            elif isinstance(node, ast.With):
                walk(node.body)

    walk(tree.body)
    return deps


def function_imports(tree: ast.Module) -> list[str]:
    """``module:line`` of every import inside a function or method body."""
    found = []
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            for node in ast.walk(fn):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    found.append(str(node.lineno))
    return found


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    WHITE, GREY, BLACK = 0, 1, 2
    colour = dict.fromkeys(graph, WHITE)
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        colour[m] = GREY
        stack.append(m)
        for d in sorted(graph[m]):
            if colour[d] == GREY:
                return stack[stack.index(d):] + [d]
            if colour[d] == WHITE:
                cycle = visit(d)
                if cycle:
                    return cycle
        stack.pop()
        colour[m] = BLACK
        return None

    for m in sorted(graph):
        if colour[m] == WHITE:
            cycle = visit(m)
            if cycle:
                return cycle
    return None


def test_no_import_inside_a_function():
    bad = {name: lines for name, tree in modules().items() if (lines := function_imports(tree))}
    assert bad == {}, f"imports inside functions (module: lines): {bad}"


def test_the_import_graph_has_no_cycle():
    mods = modules()
    names = set(mods)
    graph = {name: module_level_imports(tree, names) - {name} for name, tree in mods.items()
             if name != "__init__"}
    for deps in graph.values():
        deps.discard("__init__")
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph))}"


def test_the_checker_sees_cycles_and_hidden_imports():
    """The two checks above would fail on the shapes they look for."""
    src = ast.parse("from typing import TYPE_CHECKING\n"
                    "from .b import x\n"
                    "if TYPE_CHECKING:\n    from .c import y\n"
                    "def f():\n    from .d import z\n")
    assert module_level_imports(src, {"b", "c", "d"}) == {"b"}
    assert function_imports(src) == ["6"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
