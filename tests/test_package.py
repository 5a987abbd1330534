"""The layout of src/cbma: no import cycle, and no private name used across modules.

Each module of the package holds one thing and says so by its name; what one
module takes from another is public. Checked on the source text (``ast``),
the imports inside functions included, for every module of the package and
every rule script:

(a) the graph of imports between cbma modules has no cycle (read directly
    from the imports here, and, independently, from
    :func:`cbma.provenance.imported_modules`, which follows them transitively);
(b) no module or script imports a name starting with ``_`` from another cbma
    module, or reads one as an attribute of an imported cbma module
    (``from .x import _y``, ``from . import x`` then ``x._y``).

The checks are run on a toy package too, to see them fail.
"""

import ast
from pathlib import Path

import pytest
from conftest import REPO

from cbma import provenance

PACKAGE = REPO / "src" / "cbma"
SCRIPTS = REPO / "scripts"


def module_name(path, package_dir):
    """``cbma.x`` of ``<package_dir>/x.py``; ``cbma`` of its ``__init__.py``."""
    parts = Path(path).relative_to(package_dir.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_modules(package_dir):
    """``{dotted name: path}`` of every module of a package (subpackages included)."""
    return {module_name(p, package_dir): p for p in sorted(Path(package_dir).rglob("*.py"))
            if "__pycache__" not in p.parts}


def cbma_imports(path, package_dir, modules):
    """What a file takes from the package: ``[(line, module, name or None)]``.

    ``name`` is the imported name of a ``from module import name`` (None for
    ``import module`` and for a ``from`` import that names a module). Relative
    imports are resolved against the file's own package.
    """
    path = Path(path)
    root = Path(package_dir).name
    inside = path.is_relative_to(package_dir)
    package = module_name(path, package_dir) if inside else ""
    if inside and path.name != "__init__.py":
        package = package.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name, None) for a in node.names
                      if a.name == root or a.name.startswith(f"{root}.")]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            if base != root and not base.startswith(f"{root}."):
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                if sub in modules:  # ``from . import io``: a module, not a name of cbma
                    found.append((node.lineno, sub, None))
                else:
                    found.append((node.lineno, base, alias.name))
    return found


def import_graph(package_dir):
    """``{module: set of the package modules it imports directly}`` (itself and the
    parent packages Python imports on the way left out)."""
    modules = package_modules(package_dir)
    graph = {}
    for name, path in modules.items():
        graph[name] = {m for _, m, _ in cbma_imports(path, package_dir, modules)
                       if m in modules and m != name and not name.startswith(f"{m}.")}
    return graph


def find_cycle(graph):
    """One import cycle of ``graph`` as ``[a, b, ..., a]``, or None."""
    state = {}  # absent: not seen; 1: on the current path; 2: done

    def visit(node, path):
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state and (cycle := visit(nxt, [*path, nxt])):
                return cycle
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start, [start])):
            return cycle
    return None


def private_uses(path, package_dir, modules):
    """``["file:line: what"]`` for each private cbma name that ``path`` imports or reads
    from another module of the package."""
    path = Path(path)
    own = module_name(path, package_dir) if path.is_relative_to(package_dir) else None
    imports = cbma_imports(path, package_dir, modules)
    found = []
    for line, module, name in imports:
        private = name if name is not None else module.rpartition(".")[2]
        if private.startswith("_") and not private.startswith("__") and module != own:
            found.append(f"{path.name}:{line}: {module}{'.' + name if name else ''}")
    # the attributes read from a module imported whole (``from . import x``, ``import cbma.x``)
    tree = ast.parse(path.read_text())
    bound = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                for line, module, name in imports:
                    if line == node.lineno and name is None and \
                            module.rpartition(".")[2] == alias.name:
                        bound[alias.asname or alias.name] = module
        elif isinstance(node, ast.Import):
            bound.update({a.asname: a.name for a in node.names if a.asname and a.name in modules})
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                and node.value.id in bound and bound[node.value.id] != own \
                and node.attr.startswith("_") and not node.attr.startswith("__"):
            found.append(f"{path.name}:{node.lineno}: {bound[node.value.id]}.{node.attr}")
    return found


# ------------------------------------------------------------------ the package ----

def test_the_package_has_modules_and_a_graph():
    graph = import_graph(PACKAGE)
    assert len(graph) > 20 and "cbma" in graph and "cbma.errors" in graph
    assert graph["cbma.errors"] == set()  # imported by all, imports none
    assert "cbma.io" in graph["cbma.term_weights"]


def test_no_import_cycle():
    graph = import_graph(PACKAGE)
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_no_import_cycle_by_transitive_imports():
    """No two modules each import the other, directly or not (provenance's reading)."""
    modules = sorted(m for m in package_modules(PACKAGE) if m != "cbma")
    reach = {m: provenance.imported_modules(m, package_dir=PACKAGE) - {m, "cbma"}
             for m in modules}
    both = sorted((a, b) for a in modules for b in reach[a] if a < b and a in reach.get(b, ()))
    assert both == []


def test_no_private_name_crosses_modules():
    modules = package_modules(PACKAGE)
    files = [*modules.values(), *sorted(SCRIPTS.glob("*.py"))]
    assert len(files) > 40
    found = [use for f in files for use in private_uses(f, PACKAGE, modules)]
    assert found == []


# ----------------------------------------------------------- the checks fail ----

TOY = {
    "__init__.py": "",
    "a.py": "from .b import B\n\nA = 1\n",
    "b.py": "B = 2\n\n\ndef f():\n    from .c import C\n    return C\n",
    "c.py": "from . import a\n\nC = a.A\n",
    "d.py": "from .b import _hidden\nfrom . import b as bee\n\nD = bee._other\n",
    "sub/__init__.py": "from ..a import A\n",
    "sub/e.py": "from .. import _private_module\n",
    "_private_module.py": "",
}


@pytest.fixture
def toy(tmp_path):
    pkg = tmp_path / "cbma"
    for name, text in TOY.items():
        (pkg / name).parent.mkdir(parents=True, exist_ok=True)
        (pkg / name).write_text(text)
    return pkg


def test_checks_catch_a_cycle_and_private_names(toy):
    graph = import_graph(toy)
    assert graph["cbma.b"] == {"cbma.c"}  # an import inside a function counts
    assert graph["cbma.sub.e"] == {"cbma._private_module"}
    assert graph["cbma.sub"] == {"cbma.a"}
    cycle = find_cycle(graph)
    assert cycle is not None and cycle[0] == cycle[-1]
    assert set(cycle) == {"cbma.a", "cbma.b", "cbma.c"}
    del graph["cbma.c"]
    assert find_cycle(graph) is None
    modules = package_modules(toy)
    found = [use for p in modules.values() for use in private_uses(p, toy, modules)]
    assert sorted(found) == ["d.py:1: cbma.b._hidden", "d.py:4: cbma.b._other",
                             "e.py:1: cbma._private_module"]
