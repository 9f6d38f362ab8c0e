"""`make lint`: chart docs, helm lint --strict, ct lint, yamllint, actionlint, ruff; every step runs.

Each step prints its command and time; the exit status is non-zero if any step failed, and
the summary names which.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

from ops.paths import BIN_DIR, REPO_ROOT

CHART = "chart"
VENV_BIN = REPO_ROOT / ".venv" / "bin"
# The repository's own YAML (the chart's Chart.yaml/values.yaml are ct lint's job).
YAML_PATHS = ("ct.yaml", ".yamllint", ".github/workflows", "chart/ci", "tests/chart")


@dataclass(frozen=True)
class Step:
    name: str
    command: Sequence[str]


def values_files() -> list[str]:
    ci = sorted((REPO_ROOT / CHART / "ci").glob("*-values.yaml"))
    render_only = sorted((REPO_ROOT / "tests" / "chart" / "values").glob("*-values.yaml"))
    return [str(path.relative_to(REPO_ROOT)) for path in [*ci, *render_only]]


def steps() -> list[Step]:
    helm = str(BIN_DIR / "helm")
    python = sys.executable
    result = [
        Step("chart README up to date", [python, "-m", "ops.chart_docs", "check"]),
        Step("helm lint --strict (defaults)", [helm, "lint", "--strict", CHART]),
    ]
    result += [
        Step(f"helm lint --strict ({values})", [helm, "lint", "--strict", CHART, "--values", values])
        for values in values_files()
    ]
    result += [
        Step("ct lint --all", [str(BIN_DIR / "ct"), "lint", "--config", "ct.yaml", "--all"]),
        Step("yamllint", [str(VENV_BIN / "yamllint"), "--strict", *YAML_PATHS]),
        Step("actionlint (.github/workflows)", [str(BIN_DIR / "actionlint")]),
        Step("ruff check", [str(VENV_BIN / "ruff"), "check", "."]),
        Step("ruff format --check", [str(VENV_BIN / "ruff"), "format", "--check", "."]),
    ]
    return result


def missing_tools() -> list[str]:
    needed = ("helm", "ct", "helm-docs", "actionlint", "yamllint", "yamale")
    return [f"bin/{name}" for name in needed if not (BIN_DIR / name).exists()]


def main() -> None:
    missing = missing_tools()
    if missing:
        raise SystemExit(f"[lint] missing {', '.join(missing)}: run `make tools`")
    # ct finds helm, yamllint and yamale on PATH; ops.chart_docs imports from scripts/.
    env = dict(os.environ)
    env["PATH"] = f"{BIN_DIR}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT / "scripts"), env.get("PYTHONPATH")]))
    failed: list[str] = []
    started = time.monotonic()
    for step in steps():
        step_started = time.monotonic()
        print(f"[lint] {step.name}: {' '.join(step.command)}", flush=True)
        result = subprocess.run(step.command, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
        elapsed = time.monotonic() - step_started
        if result.returncode == 0:
            print(f"[lint]   ok ({elapsed:.1f}s)", flush=True)
        else:
            print(result.stdout + result.stderr, end="", flush=True)
            print(f"[lint]   FAILED ({elapsed:.1f}s, exit {result.returncode})", flush=True)
            failed.append(step.name)
    total = time.monotonic() - started
    if failed:
        raise SystemExit(f"[lint] {len(failed)} step(s) failed in {total:.0f}s: {'; '.join(failed)}")
    print(f"[lint] all green in {total:.1f}s")


if __name__ == "__main__":
    main()
