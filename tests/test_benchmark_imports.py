"""afr_aug.bench is a package of one-concept modules that import each other without a cycle;
benchmarks/ holds only thin entry points to them.

A cycle hides behind a function-level import (``common`` read packs through one, ``pack`` built
them through another): it works until someone moves an import to the top, so the graph is read
from the source, every import statement anywhere in a module counted.
"""

import ast
import importlib
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "afr_aug" / "bench"
ENTRY_POINTS = Path(__file__).resolve().parents[1] / "benchmarks"
MODULES = sorted(p.stem for p in BENCH.glob("*.py") if p.stem not in ("__init__", "__main__"))


def import_graph(folder: Path, package: str = "afr_aug.bench") -> dict:
    """``{module: {modules of the package it imports}}`` from every ``import`` statement in
    ``folder/*.py`` (those inside functions too): ``from .x import``, ``from . import x``,
    ``from package.x import``, ``from package import x`` and ``import package.x``."""
    modules = {p.stem for p in folder.glob("*.py")} - {"__init__", "__main__"}
    prefix = package + "."
    graph = {}
    for name in sorted(modules):
        edges = set()
        for node in ast.walk(ast.parse((folder / f"{name}.py").read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                module = node.module or ""
                absolute = node.level == 0 and (module == package or module.startswith(prefix))
                if node.level == 1 or absolute:
                    rest = module[len(package) :].lstrip(".") if absolute else module
                    parts = rest.split(".") if rest else []
                    edges |= {parts[0]} if parts else {a.name for a in node.names}
            elif isinstance(node, ast.Import):
                edges |= {
                    a.name[len(prefix) :].split(".")[0]
                    for a in node.names
                    if a.name.startswith(prefix)
                }
        graph[name] = edges & modules
    return graph


def find_cycle(graph: dict):
    """One import cycle as ``[a, b, ..., a]``, or ``None``."""
    state, path = {}, []

    def visit(node):
        state[node] = "open"
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        state[node] = "done"
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_checker_sees_a_cycle_through_a_function_level_import(tmp_path):
    (tmp_path / "a.py").write_text("from .b import f\n")
    (tmp_path / "b.py").write_text("def f():\n    from .a import g\n")
    (tmp_path / "c.py").write_text(
        "import afr_aug.bench.a\nfrom afr_aug.bench import b\nimport os\n"
    )
    graph = import_graph(tmp_path)
    assert graph == {"a": {"b"}, "b": {"a"}, "c": {"a", "b"}}
    assert find_cycle(graph) in (["a", "b", "a"], ["b", "a", "b"])
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_benchmarks_modules_import_without_a_cycle():
    graph = import_graph(BENCH)
    assert set(graph) == set(MODULES)
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


@pytest.mark.parametrize("name", MODULES)
def test_every_module_imports(name):
    importlib.import_module(f"afr_aug.bench.{name}")


def test_benchmarks_holds_only_thin_entry_points():
    for path in ENTRY_POINTS.glob("*.py"):
        if path.stem == "__init__":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        imports = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
        from_bench = [n.module for n in imports if isinstance(n, ast.ImportFrom)]
        assert from_bench == [f"afr_aug.bench.{path.stem}"], path
        assert len([n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))]) == 0


def test_afr_aug_modules_import_without_a_cycle():
    package = ENTRY_POINTS.parent / "afr_aug"
    for folder in (package, package / "data"):
        graph = import_graph(folder, package="afr_aug")
        assert "loader" in graph or folder.name == "data"
        cycle = find_cycle(graph)
        assert cycle is None, f"import cycle in {folder.name}: " + " -> ".join(cycle)
