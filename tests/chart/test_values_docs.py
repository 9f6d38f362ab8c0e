"""Every values key carries a one-line `# --` comment (helm-docs builds chart/README.md from them)."""

from __future__ import annotations

import yaml

from chart.render import CHART_DIR

VALUES = CHART_DIR / "values.yaml"


def undocumented_keys() -> list[str]:
    """Keys with no `# --` line right above them, except groups whose children are all documented.

    A documented key is documented as a whole (helm-docs lists it as one row with its
    default), so its children need no comment of their own.
    """
    lines = VALUES.read_text().splitlines()
    missing: list[str] = []

    def walk(node: yaml.MappingNode, prefix: str) -> None:
        for key_node, value_node in node.value:
            path = f"{prefix}{key_node.value}"
            line = key_node.start_mark.line
            documented = line > 0 and lines[line - 1].strip().startswith("# -- ")
            if documented:
                continue
            if isinstance(value_node, yaml.MappingNode) and value_node.value:
                walk(value_node, f"{path}.")
            else:
                missing.append(path)

    root = yaml.compose(VALUES.read_text())
    assert isinstance(root, yaml.MappingNode)
    walk(root, "")
    return missing


def test_every_values_key_is_documented():
    assert undocumented_keys() == []


def test_the_check_notices_a_missing_comment(tmp_path, monkeypatch):
    broken = tmp_path / "values.yaml"
    broken.write_text(VALUES.read_text().replace("# -- Server pods when", "# Server pods when"))
    monkeypatch.setattr("chart.test_values_docs.VALUES", broken)
    assert undocumented_keys() == ["replicaCount"]


def test_the_readme_lists_every_documented_leaf():
    readme = (CHART_DIR / "README.md").read_text()
    for key in (
        "replicaCount",
        "server.batching.maxBatchSize",
        "model.url.address",
        "termination.marginSeconds",
    ):
        assert f"| {key} |" in readme
