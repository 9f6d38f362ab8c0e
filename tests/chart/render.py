"""Render the chart with the pinned `bin/helm` and index the documents by kind."""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from ops.paths import BIN_DIR, REPO_ROOT

CHART_DIR = REPO_ROOT / "chart"
CI_VALUES = sorted((CHART_DIR / "ci").glob("*-values.yaml"))
RENDER_ONLY_VALUES = sorted((Path(__file__).parent / "values").glob("*-values.yaml"))
RELEASE = "demo"
NAMESPACE = "models"


def helm() -> Path:
    binary = BIN_DIR / "helm"
    if not binary.exists():
        pytest.fail(f"{binary} is missing: run `make tools` (it installs the pinned helm)", pytrace=False)
    return binary


@dataclass(frozen=True)
class Rendered:
    """The manifests of one `helm template` run."""

    documents: tuple[dict[str, Any], ...]

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [doc for doc in self.documents if doc["kind"] == kind]

    def one(self, kind: str) -> dict[str, Any]:
        found = self.of_kind(kind)
        assert len(found) == 1, f"expected one {kind}, rendered {len(found)}: {self.kinds()}"
        return found[0]

    def has(self, kind: str) -> bool:
        return bool(self.of_kind(kind))

    def kinds(self) -> list[str]:
        return sorted(doc["kind"] for doc in self.documents)

    @property
    def deployment(self) -> dict[str, Any]:
        return self.one("Deployment")

    @property
    def pod_spec(self) -> dict[str, Any]:
        return self.deployment["spec"]["template"]["spec"]

    @property
    def server_container(self) -> dict[str, Any]:
        return container(self.pod_spec, "server")

    @property
    def test_pod(self) -> dict[str, Any]:
        pods = [
            doc for doc in self.of_kind("Pod") if doc["metadata"]["annotations"].get("helm.sh/hook") == "test"
        ]
        assert len(pods) == 1, f"expected one helm test pod, got {len(pods)}"
        return pods[0]

    @property
    def config(self) -> dict[str, str]:
        return self.one("ConfigMap")["data"]


def container(pod_spec: Mapping[str, Any], name: str) -> dict[str, Any]:
    for candidate in [*pod_spec.get("initContainers", []), *pod_spec["containers"]]:
        if candidate["name"] == name:
            return candidate
    raise AssertionError(f"no container {name!r} in the pod spec")


class HelmError(AssertionError):
    """`helm template` refused the values; the message is helm's stderr."""


def _run_template(values_json: str, files: tuple[str, ...], args: tuple[str, ...], chart: str) -> str:
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as values_file:
        values_file.write(values_json)  # JSON is YAML
        values_file.flush()
        command = [str(helm()), "template", RELEASE, chart, "--namespace", NAMESPACE]
        for path in files:
            command += ["--values", path]
        command += ["--values", values_file.name, *args]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise HelmError(result.stderr.strip())
    return result.stdout


@functools.lru_cache(maxsize=256)
def _template_cached(values_json: str, files: tuple[str, ...], args: tuple[str, ...], chart: str) -> Rendered:
    output = _run_template(values_json, files, args, chart)
    documents = tuple(doc for doc in yaml.safe_load_all(output) if doc)
    return Rendered(documents)


def template(
    values: Mapping[str, Any] | None = None,
    *,
    files: Iterable[Path | str] = (),
    args: Iterable[str] = (),
) -> Rendered:
    """`helm template` the chart with values (a nested dict), values files and extra flags."""
    return _template_cached(
        json.dumps(values or {}, sort_keys=True), tuple(map(str, files)), tuple(args), str(CHART_DIR)
    )


def template_error(
    values: Mapping[str, Any] | None = None,
    *,
    files: Iterable[Path | str] = (),
    args: Iterable[str] = (),
) -> str:
    """helm's error message for values the chart must refuse (fails the test if it renders)."""
    try:
        _run_template(json.dumps(values or {}), tuple(map(str, files)), tuple(args), str(CHART_DIR))
    except HelmError as error:
        return str(error)
    raise AssertionError(f"helm template accepted values it should refuse: {values} {list(args)}")


@functools.lru_cache(maxsize=32)
def _live_cached(values_json: str, replicas: int) -> Rendered:
    # lookup sees no cluster under `helm template`: a copy of the chart whose live-Deployment
    # helper (templates/_live.tpl, nothing else in it) answers as a running release would.
    with tempfile.TemporaryDirectory() as workdir:
        chart = Path(workdir) / "chart"
        shutil.copytree(CHART_DIR, chart)
        live = json.dumps({"spec": {"replicas": replicas}})
        (chart / "templates" / "_live.tpl").write_text(
            '{{- define "tf-model-server.liveDeployment" -}}\n' + live + "\n{{- end }}\n"
        )
        output = _run_template(values_json, (), (), str(chart))
    return Rendered(tuple(doc for doc in yaml.safe_load_all(output) if doc))


def template_with_live_deployment(values: Mapping[str, Any], replicas: int) -> Rendered:
    """`helm upgrade`'s rendering when the release's Deployment runs `replicas` pods."""
    return _live_cached(json.dumps(values, sort_keys=True), replicas)


@functools.lru_cache(maxsize=64)
def _notes_cached(values_json: str, args: tuple[str, ...]) -> str:
    # `helm template` never prints NOTES.txt and `helm install --dry-run` wants a cluster, so
    # render the unchanged NOTES.txt through a copy of the chart that exposes it in a ConfigMap.
    with tempfile.TemporaryDirectory() as workdir:
        chart = Path(workdir) / "chart"
        shutil.copytree(CHART_DIR, chart)
        notes = (chart / "templates" / "NOTES.txt").read_text()
        (chart / "templates" / "_notes_probe.tpl").write_text(
            '{{- define "notes-probe" -}}\n' + notes + "\n{{- end }}\n"
        )
        (chart / "templates" / "notes-probe.yaml").write_text(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes-probe\n"
            'data:\n  notes: {{ include "notes-probe" . | quote }}\n'
        )
        output = _run_template(values_json, (), args, str(chart))
    for doc in yaml.safe_load_all(output):
        if doc and doc["kind"] == "ConfigMap" and doc["metadata"]["name"] == "notes-probe":
            return doc["data"]["notes"]
    raise AssertionError("the NOTES probe did not render")


def notes(values: Mapping[str, Any] | None = None, *, args: Iterable[str] = ()) -> str:
    """NOTES.txt as `helm install` would print it for these values."""
    return _notes_cached(json.dumps(values or {}, sort_keys=True), tuple(args))


def pod_specs(rendered: Rendered) -> dict[str, dict[str, Any]]:
    """Every pod spec the chart creates: the Deployment's template and the helm test pod."""
    return {"deployment": rendered.pod_spec, "helm-test": rendered.test_pod["spec"]}
