"""The image's package metadata and Dockerfile keep the promises the chart relies on."""

from __future__ import annotations

import os
import re
import tomllib

import pytest
from modelserver.__main__ import configure_logging

from unit.server_process import IMAGE_DIR


def test_package_pins_are_the_runtime_requirements():
    requirements = {
        line.strip()
        for line in (IMAGE_DIR / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    project = tomllib.loads((IMAGE_DIR / "pyproject.toml").read_text())["project"]
    assert set(project["dependencies"]) == requirements


def test_dockerfile_contract():
    dockerfile = (IMAGE_DIR / "Dockerfile").read_text()
    assert re.search(r"^ARG BASE_IMAGE=python:3\.11-slim$", dockerfile, re.M)
    assert re.search(r"^FROM \$\{BASE_IMAGE\}", dockerfile, re.M)
    assert re.search(r"^USER 10001:10001$", dockerfile, re.M)
    assert 'ENTRYPOINT ["python", "-m", "modelserver"]' in dockerfile
    assert "ARG DEMO_MODEL_VERSIONS" in dockerfile and "ARG TF_PACKAGE" in dockerfile
    assert "--mount=type=secret,id=ca-bundle" in dockerfile
    instructions = [line for line in dockerfile.splitlines() if line and not line.lstrip().startswith("#")]
    assert not [
        line
        for line in instructions
        if "ca-certificates.crt" in line or ("ca-bundle" in line and "COPY" in line)
    ]
    assert "HOME=/tmp" in dockerfile and "TMPDIR=/tmp" in dockerfile


def runtime_stage(dockerfile: str) -> str:
    return dockerfile[dockerfile.rindex("\nFROM ") :]


def test_the_image_leaves_tensorflows_log_level_to_the_server():
    # An ENV TF_CPP_MIN_LOG_LEVEL would make TFMS_LOG_LEVEL's mapping (modelserver.__main__) dead.
    runtime = runtime_stage((IMAGE_DIR / "Dockerfile").read_text())
    instructions = [line for line in runtime.splitlines() if not line.lstrip().startswith("#")]
    assert not [line for line in instructions if "TF_CPP_MIN_LOG_LEVEL" in line]


@pytest.mark.parametrize(
    ("level", "tf_level"), [("debug", "0"), ("info", "1"), ("warning", "2"), ("error", "3")]
)
def test_tensorflows_log_level_follows_the_servers(level, tf_level, monkeypatch):
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    configure_logging(level)
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == tf_level
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "3")
    configure_logging(level)
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "3", "an explicit TF_CPP_MIN_LOG_LEVEL must win"
