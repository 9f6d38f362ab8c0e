"""scripts/ops imports run one way.

pins/paths -> system -> builders -> providers -> actions -> cluster -> commands.

Read from the source with `ast` (nothing is imported): every `ops` import of every module
under scripts/ops, including any inside a function, which is itself a failure (that is
how a cycle used to hide). A module may import its own layer or a lower one, and the
graph must have no cycle.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path

OPS_DIR = Path(__file__).resolve().parents[2] / "scripts" / "ops"

# Lowest first. A module's layer is its first entry that matches its name or package.
LAYERS: tuple[tuple[str, frozenset[str]], ...] = (
    ("pins and paths", frozenset({"ops", "ops.pins", "ops.paths"})),
    (
        "system",
        frozenset(
            {
                "ops.progress",
                "ops.apt",
                "ops.oci",
                "ops.toolcache",
                "ops.kube",
                "ops.docker",
                "ops.debian",
                "ops.ct_output",
                "ops.predict",
            }
        ),
    ),
    (
        "builders",
        frozenset(
            {
                "ops.tools",
                "ops.k8s_build",
                "ops.image_base",
                "ops.image_check",
                "ops.image",
                "ops.kind_image",
                "ops.docker_caps",
            }
        ),
    ),
    ("providers", frozenset({"ops.providers", "ops.local_cluster"})),
    ("actions", frozenset({"ops.actions"})),
    ("cluster", frozenset({"ops.cluster"})),
    (
        "commands",
        frozenset(
            {
                "ops.release",
                "ops.image_load",
                "ops.quickstart",
                "ops.smoke",
                "ops.chart_testing",
                "ops.lint",
                "ops.chart_docs",
                "ops.chart_settings",
                "ops.venv",
            }
        ),
    ),
)


def module_name(path: Path) -> str:
    relative = path.relative_to(OPS_DIR.parent).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> int:
    for index, (_, members) in enumerate(LAYERS):
        candidates = {module, *(module.rsplit(".", depth)[0] for depth in range(1, module.count(".") + 1))}
        # the package's own __init__ ("ops") only matches itself, not everything below it
        if module in members or (candidates - {"ops"}) & members:
            return index
    raise AssertionError(f"{module} is in no layer of {__name__}.LAYERS: add it where it belongs")


def ops_imports(tree: ast.AST, known: set[str]) -> Iterator[tuple[str, int, bool]]:
    """(imported ops module, line, inside a function?) for every ops import in a module."""

    def visit(node: ast.AST, in_function: bool) -> Iterator[tuple[str, int, bool]]:
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            if isinstance(child, ast.Import):
                for alias in child.names:
                    if alias.name == "ops" or alias.name.startswith("ops."):
                        yield alias.name, child.lineno, nested
            elif (
                isinstance(child, ast.ImportFrom)
                and child.level == 0
                and child.module
                and (child.module == "ops" or child.module.startswith("ops."))
            ):
                for alias in child.names:
                    candidate = f"{child.module}.{alias.name}"
                    yield (candidate if candidate in known else child.module), child.lineno, nested
            yield from visit(child, nested)

    yield from visit(tree, False)


def import_graph() -> tuple[dict[str, set[str]], list[str]]:
    paths = sorted(OPS_DIR.rglob("*.py"))
    known = {module_name(path) for path in paths}
    graph: dict[str, set[str]] = {}
    hidden: list[str] = []
    for path in paths:
        module = module_name(path)
        graph[module] = set()
        for imported, line, in_function in ops_imports(ast.parse(path.read_text()), known):
            graph[module].add(imported)
            if in_function:
                hidden.append(
                    f"{path.relative_to(OPS_DIR.parent)}:{line} imports {imported} inside a function"
                )
    return graph, hidden


def find_cycle(graph: Mapping[str, set[str]]) -> list[str] | None:
    visiting: list[str] = []
    done: set[str] = set()

    def walk(module: str) -> list[str] | None:
        if module in visiting:
            return [*visiting[visiting.index(module) :], module]
        if module in done:
            return None
        visiting.append(module)
        for imported in sorted(graph.get(module, ())):
            if imported != module and (cycle := walk(imported)):
                return cycle
        visiting.pop()
        done.add(module)
        return None

    for module in sorted(graph):
        if cycle := walk(module):
            return cycle
    return None


def test_no_ops_import_hides_inside_a_function():
    _, hidden = import_graph()
    assert not hidden, (
        "imports inside functions (move them to the top; fix the layering if that cycles):\n"
        + ("\n".join(hidden))
    )


def test_ops_has_no_import_cycle():
    graph, _ = import_graph()
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle in scripts/ops: " + " -> ".join(cycle or [])


def test_ops_imports_only_its_own_layer_or_lower():
    graph, _ = import_graph()
    upward = [
        f"{module} ({LAYERS[layer_of(module)][0]}) imports {imported} ({LAYERS[layer_of(imported)][0]})"
        for module, imported_modules in sorted(graph.items())
        for imported in sorted(imported_modules)
        if layer_of(imported) > layer_of(module)
    ]
    assert not upward, "imports that run upwards:\n" + "\n".join(upward)


def test_find_cycle_reports_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
