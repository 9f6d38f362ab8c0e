"""Session fixtures: the models are built once; servers start once per scope that needs them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from unit import hypothesis_budget
from unit.server_process import ServerProcess, build_models, start_server

FLOW_NORMAL = [1.2, 20000.0, 2000.0, 30.0, 20.0, 1.0, 0.05, 0.0]
FLOW_PORT_SCAN = [0.1, 60.0, 3000.0, 1.0, 50.0, 200.0, 0.95, 40.0]


@pytest.fixture(scope="session")
def model_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("repo") / "models"
    build_models(out)
    return out


@pytest.fixture(scope="session")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("server-logs")


@pytest.fixture(scope="session")
def main_server(model_repo: Path, log_dir: Path) -> Iterator[ServerProcess]:
    """anomaly (newest = 2) and heavy, batching on, a 1 MiB body limit."""
    server = start_server(
        model_repo,
        log_dir,
        "main",
        model_name="anomaly,heavy",
        max_body_bytes=str(1024 * 1024),
        batch_max_wait_ms="20",
        drain_delay_seconds="0",
    )
    server.wait_ready()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def v1_unbatched_server(model_repo: Path, log_dir: Path) -> Iterator[ServerProcess]:
    """anomaly pinned to version 1, batching off."""
    server = start_server(
        model_repo, log_dir, "v1-unbatched", model_name="anomaly", model_version="1", batch_enabled="false"
    )
    server.wait_ready()
    yield server
    server.stop()


@pytest.fixture
def client(main_server: ServerProcess) -> Iterator[object]:
    with main_server.client() as http:
        yield http


def pytest_report_header(config: pytest.Config) -> str:
    return (
        f"hypothesis: seed {hypothesis_budget.SEED} (TFMS_HYPOTHESIS_SEED), "
        f"{hypothesis_budget.EXAMPLES} examples per property (TFMS_HYPOTHESIS_EXAMPLES)"
    )
