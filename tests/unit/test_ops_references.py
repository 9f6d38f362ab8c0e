"""Every `ops.<module>.<name>` the tests and benchmarks use exists.

The benchmarks and soak runs are not part of `make test` (they take minutes), so when a
name moved inside scripts/ops (as `image.image_exists` did, to `image_base`) nothing
failed until `make bench` did. This reads each file under tests/ with `ast`, finds
`from ops import <module>` and every `<module>.<name>` attribute read on it, and checks
the name is defined in that module.
"""

from __future__ import annotations

import ast
import importlib
from collections.abc import Iterator
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parents[1]


def ops_references(path: Path) -> Iterator[tuple[str, str, int]]:
    """(ops module, attribute, line) for each attribute read on a module bound by `from ops import`."""
    tree = ast.parse(path.read_text(), filename=str(path))
    bound: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "ops" and node.level == 0:
            for alias in node.names:
                bound[alias.asname or alias.name] = f"ops.{alias.name}"
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in bound:
            yield bound[node.value.id], node.attr, node.lineno


FILES = sorted(p for p in TESTS_DIR.rglob("*.py") if "from ops import" in p.read_text())


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(TESTS_DIR)) for p in FILES])
def test_every_ops_name_used_exists(path: Path) -> None:
    missing = []
    for module_name, attribute, line in ops_references(path):
        module = importlib.import_module(module_name)
        if not hasattr(module, attribute):
            missing.append(f"{path.relative_to(TESTS_DIR)}:{line}: {module_name}.{attribute}")
    assert not missing, "names used from scripts/ops that do not exist:\n" + "\n".join(missing)
