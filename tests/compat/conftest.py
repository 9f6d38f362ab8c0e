"""The compatibility suite's model repository and server (the unit suite's process helper)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from unit.server_process import ServerProcess, python_env, start_server

TF1_MODELS = ("half_plus_two", "saved_model_half_plus_three", "half_plus_two_partly_broken", "strings")
TF2_MODELS = ("tf2_unknown_rank", "tf2_two_signatures")
DEMO_MODELS = ("anomaly", "heavy")
ALL_MODELS = (*DEMO_MODELS, *TF1_MODELS, *TF2_MODELS)


def build_repository(out: Path) -> None:
    """The demo models (versions 1 and 2) and the exports of compat.saved_models, in one process."""
    script = (
        "import sys; from pathlib import Path; "
        "from demo_models.build import build_into; from compat.saved_models import export_all; "
        "out = Path(sys.argv[1]); build_into(out, [1, 2], ['anomaly', 'heavy']); export_all(out)"
    )
    subprocess.run([sys.executable, "-c", script, str(out)], check=True, env=python_env(), timeout=300)


@pytest.fixture(scope="session")
def compat_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("compat") / "models"
    build_repository(out)
    return out


@pytest.fixture(scope="session")
def compat_server(compat_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Every model of the repository, server defaults (batching on)."""
    server = start_server(
        compat_repo,
        tmp_path_factory.mktemp("compat-logs"),
        "compat",
        model_name=",".join(ALL_MODELS),
        drain_delay_seconds="0",
    )
    server.wait_ready()
    yield server
    server.stop()
