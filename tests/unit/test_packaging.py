"""The image's package metadata and Dockerfile keep the promises the chart relies on."""

from __future__ import annotations

import re
import tomllib

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
