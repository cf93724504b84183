"""No import cycles in the layerfs package, counting imports inside functions too.

Every module is parsed (not imported) and each ``import``/``from ... import`` that
names a layerfs module becomes an edge, wherever it stands: at module level, in a
function, in a ``try``. Only ``if TYPE_CHECKING:`` blocks are left out (they never
run). ``from .pkg import name`` counts as importing ``pkg.name`` when that is a
module, else ``pkg`` itself (its ``__init__``): so a module that takes a name from
its own package's ``__init__`` while that ``__init__`` imports it is a cycle.
Importing ``a.b.c`` runs the package ``__init__``s on the way, so those count too,
except the ones the importing module is itself inside (imported before it).
"""

from __future__ import annotations

import ast
from pathlib import Path

import layerfs

PACKAGE = Path(layerfs.__file__).parent


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST):
    """Every Import/ImportFrom node that runs, skipping ``if TYPE_CHECKING:`` bodies."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                yield from _imports_of(child)
            continue
        yield from _imports_of(node)


def _imports_of(node: ast.AST):
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        yield node
    else:
        yield from _imports(node)


def _targets(name: str, path: Path, node: ast.Import | ast.ImportFrom,
             modules: dict[str, Path]) -> set[str]:
    if isinstance(node, ast.Import):
        bases = [alias.name for alias in node.names]
        names: list[str] = []
    else:
        if node.level:
            package = name if path.name == "__init__.py" else name.rpartition(".")[0]
            for _ in range(node.level - 1):
                package = package.rpartition(".")[0]
            base = f"{package}.{node.module}" if node.module else package
        else:
            base = node.module or ""
        bases = [base]
        names = [alias.name for alias in node.names]
    targets = set()
    for base in bases:
        if not (base == "layerfs" or base.startswith("layerfs.")):
            continue
        chosen = [f"{base}.{n}" for n in names if f"{base}.{n}" in modules]
        if len(chosen) < len(names) or not names:
            chosen.append(base)
        for module in chosen:
            targets.add(module)
            # importing a.b.c runs a/__init__ and a/b/__init__ first, unless this
            # module is inside them (then they are imported already)
            parts = module.split(".")
            for end in range(1, len(parts)):
                ancestor = ".".join(parts[:end])
                if not name.startswith(ancestor + "."):
                    targets.add(ancestor)
    return {t for t in targets if t in modules and t != name}


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        edges: set[str] = set()
        for node in _imports(tree):
            edges |= _targets(name, path, node, modules)
        graph[name] = edges
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan)."""
    edges = graph
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = [0]

    def visit(start: str) -> None:
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = counter[0]
        counter[0] += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter[0]
                    counter[0] += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        components.append(sorted(component))

    for module in sorted(edges):
        if module not in index:
            visit(module)
    return [_one_cycle(component, edges) for component in components]


def _one_cycle(component: list[str], edges: dict[str, set[str]]) -> list[str]:
    """A shortest cycle through the component's first module, for the message."""
    members = set(component)
    start = component[0]
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for child in sorted(edges[node] & members):
            if child == start:
                return paths[node] + [start]
            if child not in paths:
                paths[child] = paths[node] + [child]
                queue.append(child)
    return component


def test_the_graph_sees_function_level_imports():
    graph = import_graph()
    # layerfs.cli imports the rootless commands inside a function, mount.py at the top
    assert "layerfs.mount" in graph["layerfs.cli"]
    assert "layerfs.rootless_cli" in graph["layerfs.cli"]


def test_no_import_cycles():
    cycles = find_cycles(import_graph())
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_a_cycle_is_found_and_named():
    graph = {"layerfs.a": {"layerfs.b"}, "layerfs.b": {"layerfs.c"},
             "layerfs.c": {"layerfs.a"}, "layerfs.d": {"layerfs.a"}}
    assert find_cycles(graph) == [["layerfs.a", "layerfs.b", "layerfs.c", "layerfs.a"]]


def test_images_read_local_forms_only():
    """The registry is chosen above both (layerfs/mountplan.py), never from images/."""
    graph = import_graph()
    for module, targets in graph.items():
        if module == "layerfs.images" or module.startswith("layerfs.images."):
            reached = sorted(t for t in targets if t.startswith("layerfs.registry"))
            assert not reached, f"{module} imports {', '.join(reached)}"
