"""The package's modules import each other without circles.

Every module under ``testbed/`` is parsed (not imported), so imports under ``TYPE_CHECKING``
and inside functions count as much as the ones at the top.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from _support import paths

ROOT = paths.PACKAGE
PACKAGE = ROOT.name


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _resolve(node: ast.ImportFrom, importer: str, is_package: bool) -> str:
    """The absolute name of the module ``node`` imports from."""
    if not node.level:
        return node.module or ""
    base = importer.split(".")
    # ``from . import x`` in a package's __init__ means the package itself.
    base = base[: len(base) - node.level + (1 if is_package else 0)]
    return ".".join([*base, *([node.module] if node.module else [])])


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The modules of this package that ``name`` imports (the modules themselves, not the
    packages around them: ``from ..platform import Machine`` is an edge to ``platform``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(node, name, is_package)
            # ``from .pkg import module`` imports the submodule; the package itself is an edge
            # only when a name is taken from its own namespace (a parent package is always
            # initialised before its children, so that edge alone is no circle).
            subs = {f"{target}.{alias.name}" for alias in node.names}
            found.update(subs)
            if not subs <= known:
                found.add(target)
    return {m for m in found if m in known and m != name}


def import_graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: imports_of(name, path, known) for name, path in mods.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as ``[a, b, ..., a]``, or ``None``."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for succ in sorted(graph.get(node, ())):
            if state.get(succ) == 1:
                return [*path[path.index(succ) :], succ]
            if succ not in state:
                cycle = visit(succ)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_graph_sees_the_package() -> None:
    graph = import_graph()
    assert f"{PACKAGE}.platform.machine" in graph
    assert f"{PACKAGE}.errors" in graph[f"{PACKAGE}.platform.machine"]
    assert f"{PACKAGE}.platform" in graph[f"{PACKAGE}.attacks._base"]


@pytest.mark.parametrize(
    ("graph", "cycle"),
    [
        ({"a": {"b"}, "b": {"c"}, "c": set()}, None),
        ({"a": {"b"}, "b": {"a"}}, ["a", "b", "a"]),
        ({"a": {"b"}, "b": {"c"}, "c": {"b"}}, ["b", "c", "b"]),
    ],
)
def test_find_cycle(graph: dict[str, set[str]], cycle: list[str] | None) -> None:
    assert find_cycle(graph) == cycle


def test_relative_imports_resolve(tmp_path: Path) -> None:
    source = "from . import a\nfrom .b import c\nfrom ..d import e\nimport x.y\n"
    path = tmp_path / "m.py"
    path.write_text(source, encoding="utf-8")
    known = {"p", "p.a", "p.q.b", "p.q.b.c", "p.d", "x.y"}
    # c is a module of p.q.b: the edge goes to it alone.
    assert imports_of("p.q.m", path, known) == {"p.q.b.c", "p.d", "x.y"}
    package = tmp_path / "__init__.py"
    package.write_text("from . import a\nfrom .b import c\n", encoding="utf-8")
    assert imports_of("p", package, known | {"p.b"}) == {"p.a", "p.b"}


def test_no_import_cycles() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])
