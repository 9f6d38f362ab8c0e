"""The chart's generated files: chart/README.md, and the settings-derived parts of the chart.

chart/README.md comes from the pinned helm-docs over README.md.gotmpl and values.yaml;
`chart/templates/_settings.tpl` and the `server` block of values.schema.json come from the
server's settings table (ops.chart_settings). `python -m ops.chart_docs generate` rewrites
them all (`make docs`); `check` regenerates them in memory and fails naming each stale
file, with a diff for the README (run by `make lint`).
"""

from __future__ import annotations

import argparse
import difflib
import subprocess
import sys

from ops import chart_settings
from ops.paths import BIN_DIR, REPO_ROOT

CHART_DIR = REPO_ROOT / "chart"
README = CHART_DIR / "README.md"


def render() -> str:
    helm_docs = BIN_DIR / "helm-docs"
    if not helm_docs.exists():
        raise SystemExit(f"{helm_docs} is missing: run `make tools`")
    result = subprocess.run(
        [
            str(helm_docs),
            "--chart-search-root",
            str(CHART_DIR),
            "--template-files",
            "README.md.gotmpl",
            "--sort-values-order",
            "file",
            "--skip-version-footer",
            "--log-level",
            "warning",
            "--dry-run",
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return result.stdout


def generate() -> None:
    chart_settings.generate()
    README.write_text(render())
    print(f"[docs] wrote {README.relative_to(REPO_ROOT)}")


def check() -> bool:
    stale = chart_settings.stale()
    for path in stale:
        print(f"[docs] {path} is stale (generated from image/modelserver/settings.py): run `make docs`")
    return check_readme() and not stale


def check_readme() -> bool:
    expected = render()
    actual = README.read_text() if README.exists() else ""
    if actual == expected:
        print(f"[docs] {README.relative_to(REPO_ROOT)} is up to date")
        return True
    diff = difflib.unified_diff(
        actual.splitlines(keepends=True),
        expected.splitlines(keepends=True),
        fromfile=f"{README.relative_to(REPO_ROOT)} (committed)",
        tofile="regenerated",
    )
    sys.stdout.writelines(diff)
    print(f"[docs] {README.relative_to(REPO_ROOT)} is stale: run `make docs` and commit it")
    return False


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="ops.chart_docs", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["generate", "check"])
    args = parser.parse_args(argv)
    if args.command == "generate":
        generate()
    elif not check():
        raise SystemExit(1)


if __name__ == "__main__":
    main(sys.argv[1:])
