"""The ``tdn`` package's import graph has no cycle, counting imports inside functions too.

Every ``import`` statement of every module under ``tdn/`` is an edge, wherever it sits: an
import moved into a function to dodge a circle still closes the circle here. A name taken from
a package that imports its names on first use (``tdn``, ``tdn.data``, ``tdn.engine``) is an
edge to the module that defines it. The graph is read with ``ast`` (nothing is imported), so
the test sees the code as written.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "tdn"


def module_names(package_dir: Path) -> dict[str, Path]:
    """Dotted name -> file, for every module of the package (``__init__`` is the package)."""
    names = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = list(path.relative_to(package_dir.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def lazy_exports(tree: ast.Module) -> dict[str, str]:
    """Public name -> defining module of a package that imports its names on first use.

    Such a package lists them in a literal ``_EXPORTS``, either ``{name: module}`` or
    ``{module: [names]}``; ``from package import name`` then loads that module.
    """
    for node in tree.body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1
                and getattr(node.targets[0], "id", None) == "_EXPORTS"):
            table = ast.literal_eval(node.value)
            where = {}
            for key, value in table.items():
                if isinstance(value, str):
                    where[key] = value
                else:
                    where.update({name: key for name in value})
            return where
    return {}


def _imported(node: ast.AST, module: str, is_package: bool, known: set[str],
              exports: dict[str, dict[str, str]]) -> set[str]:
    """The project modules one import statement loads."""
    if isinstance(node, ast.Import):
        targets = {alias.name for alias in node.names}
    else:
        if node.level:
            base = module.split(".") if is_package else module.split(".")[:-1]
            base = base[:len(base) - (node.level - 1)]
            parent = ".".join(base + ([node.module] if node.module else []))
        else:
            parent = node.module or ""
        # ``from pkg import name`` loads pkg.name when that is a module, the module a lazy
        # package names for it, else pkg itself.
        targets = set()
        for alias in node.names:
            submodule = f"{parent}.{alias.name}"
            lazy = exports.get(parent, {}).get(alias.name)
            targets.add(submodule if submodule in known else lazy or parent)
    return {name for name in targets if name in known}


def import_graph(package_dir: Path) -> dict[str, set[str]]:
    modules = module_names(package_dir)
    known = set(modules)
    trees = {name: ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
             for name, path in modules.items()}
    exports = {name: lazy_exports(tree) for name, tree in trees.items()
               if modules[name].name == "__init__.py"}
    graph = {}
    for name, tree in trees.items():
        is_package = modules[name].name == "__init__.py"
        edges: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                edges |= _imported(node, name, is_package, known, exports)
        graph[name] = edges - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as ``[a, b, ..., a]``, or None (depth-first search, three colours)."""
    state: dict[str, str] = {}  # "open" while on the current path, "done" once explored
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for successor in sorted(graph[node]):
            if state.get(successor) == "open":
                return path[path.index(successor):] + [successor]
            if successor not in state:
                cycle = visit(successor)
                if cycle:
                    return cycle
        path.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_the_tdn_package_has_no_import_cycle():
    graph = import_graph(PACKAGE_DIR)
    assert len(graph) > 30, "the package was not found"
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_layers_read_top_down():
    graph = import_graph(PACKAGE_DIR)
    # The state-dict I/O and the registry know nothing about the networks.
    assert not any(name.startswith("tdn.models") for name in graph["tdn.checkpoint_io"])
    assert graph["tdn.models.registry"] == set()
    # Models do not reach up into the engine or the commands; the engine not into commands.
    for name, edges in graph.items():
        if name.startswith(("tdn.models", "tdn.data", "tdn.checkpoint_io", "tdn.fileio")):
            assert not any(e.startswith(("tdn.engine", "tdn.commands")) for e in edges), name
        if name.startswith("tdn.engine"):
            assert not any(e.startswith("tdn.commands") for e in edges), name


def test_a_cycle_through_a_function_level_import_is_found(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from .b import g\n")
    (package / "b.py").write_text("def g():\n    from . import a\n    return a\n")
    (package / "c.py").write_text("import pkg.a\n")
    graph = import_graph(package)
    assert graph["pkg.b"] == {"pkg.a"} and graph["pkg.c"] == {"pkg.a"}
    assert find_cycle(graph) in (["pkg.a", "pkg.b", "pkg.a"], ["pkg.b", "pkg.a", "pkg.b"])


@pytest.mark.parametrize("source, expected", [
    ("from .. import fileio", "pkg.fileio"),
    ("from ..fileio import atomic_write", "pkg.fileio"),
    ("from . import leaf", "pkg.sub.leaf"),
    ("from .leaf import x", "pkg.sub.leaf"),
    ("import pkg.sub.leaf", "pkg.sub.leaf"),
    ("from pkg.sub import leaf", "pkg.sub.leaf"),
    ("from pkg.sub import something", "pkg.sub"),
    ("from pkg import lazy_name", "pkg.fileio"),  # through the package's _EXPORTS
])
def test_imports_resolve_to_the_module_they_load(tmp_path, source, expected):
    sub = tmp_path / "pkg" / "sub"
    sub.mkdir(parents=True)
    for path in (tmp_path / "pkg" / "fileio.py", sub / "__init__.py", sub / "leaf.py"):
        path.write_text("")
    (tmp_path / "pkg" / "__init__.py").write_text('_EXPORTS = {"lazy_name": "pkg.fileio"}\n')
    (sub / "user.py").write_text(source + "\n")
    assert import_graph(tmp_path / "pkg")["pkg.sub.user"] == {expected}


@pytest.mark.parametrize("package", ["tdn", "tdn.engine"])
def test_every_public_name_is_found_where_the_package_says(package):
    module = importlib.import_module(package)
    assert module.__all__
    for name in module.__all__:
        assert getattr(module, name) is not None, f"{package}.{name}"
