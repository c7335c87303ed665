"""vidrec's modules import each other without circles, at module level or inside functions.

An import inside a function hides a circle from Python (by the time the function runs, both modules are
complete) but not from a reader: the two modules still cannot be understood, tested or moved apart. So the
graph below holds every ``import`` / ``from ... import`` statement between vidrec's files, wherever it
stands (module level, a function, ``if TYPE_CHECKING:``), found by reading the source (AST), not by
importing it. A package's ``__init__.py`` is the module named by the package.

Parent packages. Importing ``vidrec.models.registry`` first runs ``vidrec/models/__init__.py``, so an
import of ``a.b.c`` also counts as an import of ``a.b`` and ``a`` (stricter than the statements alone:
``vidrec/models/__init__.py`` imports every model, so a module that reaches for the registry depends on all
of them). The exception is a module's own ancestors: when ``vidrec.models.lrcn`` runs, its package is
already being initialised, and a sibling import does not run ``__init__`` again, so a package whose
``__init__`` gathers its submodules (``vidrec.models``, ``vidrec.data``) is not a circle by itself. An
import of a name from the package (``from vidrec.models import get_model``) inside one of its own
submodules is an edge to ``__init__`` like any other, and would be a circle.

Not seen: modules imported by a string (``importlib.import_module``): the CLI's command table and the
built-in task list load their modules so, and each of those modules is checked like any other.
"""

from __future__ import annotations

import ast
from collections import deque
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "vidrec"


def module_files(package: Path = PACKAGE) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` under `package` (``a/b/__init__.py`` is ``a.b``)."""
    mods = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = path
    return mods


def _targets(node: ast.AST, module: str, is_package: bool, mods: dict[str, Path]) -> list[str]:
    """The vidrec modules one import statement names (a ``from`` import of a submodule names it)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    if node.level:  # relative: from the importing module's package, up `level - 1` more
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        source = ".".join(base + ([node.module] if node.module else []))
    else:
        source = node.module or ""
    return [f"{source}.{a.name}" if f"{source}.{a.name}" in mods else source for a in node.names]


def import_graph(package: Path = PACKAGE) -> dict[str, dict[str, int]]:
    """module -> {imported vidrec module: line of the first such import}, parents included (see above)."""
    mods = module_files(package)
    graph: dict[str, dict[str, int]] = {}
    for module, path in mods.items():
        ancestors = {".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 1)}
        if path.name == "__init__.py":
            ancestors.discard(module)
        out: dict[str, int] = {}
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            for target in _targets(node, module, path.name == "__init__.py", mods):
                parts = target.split(".")
                for i in range(len(parts), 0, -1):
                    name = ".".join(parts[:i])
                    if i < len(parts) and name in ancestors:
                        continue  # the importing module's own package: already initialising
                    if name in mods and name != module:
                        out[name] = min(out.get(name, node.lineno), node.lineno)
        graph[module] = out
    return graph


def find_circle(graph: dict[str, dict[str, int]]) -> list[str] | None:
    """A shortest circle ``[a, b, ..., a]`` in `graph`, or None."""
    best = None
    for start in sorted(graph):
        prev, queue = {start: ""}, deque([start])
        while queue:
            node = queue.popleft()
            for nxt in sorted(graph.get(node, {})):
                if nxt == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(prev[path[-1]])
                    path = [start, *reversed(path[:-1]), start]
                    if best is None or len(path) < len(best):
                        best = path
                    queue.clear()
                    break
                if nxt not in prev:
                    prev[nxt] = node
                    queue.append(nxt)
    return best


def describe(circle: list[str], graph: dict[str, dict[str, int]], package: Path = PACKAGE) -> str:
    """One line per edge of `circle`: ``a -> b  (vidrec/a.py:LINE)``."""
    mods = module_files(package)
    return "\n".join(
        f"  {a} -> {b}  ({mods[a].relative_to(package.parent)}:{graph[a][b]})"
        for a, b in zip(circle, circle[1:], strict=False)
    )


def test_vidrec_has_no_import_circle() -> None:
    graph = import_graph()
    circle = find_circle(graph)
    assert circle is None, "import circle:\n" + describe(circle, graph)


def test_the_graph_sees_lazy_relative_typing_and_parent_imports(tmp_path: Path) -> None:
    """The checker itself: each kind of import that can hide a circle is an edge."""
    pkg = tmp_path / "vidrec"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from vidrec.sub.a import A\n")
    (pkg / "sub" / "a.py").write_text("from vidrec.sub import b\nA = 1\n")  # own package: no edge to it
    (pkg / "sub" / "b.py").write_text("def f():\n    from . import a\n")
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import vidrec.d\n")
    (pkg / "d.py").write_text("def g():\n    from vidrec.sub.b import f\n")
    (pkg / "e.py").write_text("import vidrec.sub.b\n")
    graph = import_graph(pkg)
    assert graph["vidrec.sub.a"] == {"vidrec.sub.b": 1}
    assert graph["vidrec.sub.b"] == {"vidrec.sub.a": 2}  # inside a function, relative
    assert graph["vidrec.c"] == {"vidrec.d": 3}  # under TYPE_CHECKING
    assert graph["vidrec.d"] == {"vidrec.sub.b": 2, "vidrec.sub": 2}  # the parent package counts
    assert find_circle(graph) == ["vidrec.sub.a", "vidrec.sub.b", "vidrec.sub.a"]
    assert find_circle({**graph, "vidrec.sub.b": {}}) is None
    text = describe(["vidrec.sub.a", "vidrec.sub.b", "vidrec.sub.a"], graph, pkg)
    assert text.splitlines() == [
        "  vidrec.sub.a -> vidrec.sub.b  (vidrec/sub/a.py:1)",
        "  vidrec.sub.b -> vidrec.sub.a  (vidrec/sub/b.py:2)",
    ]
