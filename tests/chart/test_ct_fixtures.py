"""chart/ci/fixtures: what `ct install` needs in its namespace matches ct.yaml and the scenarios."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from ops import chart_testing
from ops.release import RESTRICTED_LABELS

from chart.pod_security import restricted_violations
from chart.render import CHART_DIR

FIXTURE_FILES = sorted(chart_testing.FIXTURES_DIR.glob("*.yaml"))


def documents() -> list[dict[str, Any]]:
    return [doc for path in FIXTURE_FILES for doc in yaml.safe_load_all(path.read_text()) if doc]


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for doc in documents() if doc["kind"] == kind]


def ci_values(name: str) -> dict[str, Any]:
    return yaml.safe_load((CHART_DIR / "ci" / name).read_text())


def pod_templates() -> list[tuple[str, dict[str, Any]]]:
    return [
        (doc["metadata"]["name"], doc["spec"]["template"]["spec"])
        for doc in documents()
        if doc["kind"] in ("Deployment", "Job")
    ]


def test_fixtures_exist_outside_the_values_glob():
    assert [path.name for path in FIXTURE_FILES] == ["namespace.yaml", "pvc-model.yaml", "url-model.yaml"]
    assert not list(chart_testing.FIXTURES_DIR.glob("*-values.yaml"))


def test_namespace_file_is_applied_first():
    # `kubectl apply -f chart/ci/fixtures/` takes the files in name order.
    assert [doc["kind"] for doc in yaml.safe_load_all(FIXTURE_FILES[0].read_text())] == ["Namespace"]


def test_the_namespace_is_ct_yamls_and_enforces_restricted():
    (namespace,) = of_kind("Namespace")
    assert namespace["metadata"]["name"] == chart_testing.ct_namespace()
    assert namespace["metadata"]["labels"] == dict(RESTRICTED_LABELS)
    others = [doc for doc in documents() if doc["kind"] != "Namespace"]
    assert {doc["metadata"]["namespace"] for doc in others} == {chart_testing.ct_namespace()}


@pytest.mark.parametrize(("name", "spec"), pod_templates(), ids=[name for name, _ in pod_templates()])
def test_fixture_pods_pass_restricted(name, spec):
    assert restricted_violations(spec) == [], name


def test_fixture_pods_run_the_image_the_chart_deploys():
    images = {container["image"] for _, spec in pod_templates() for container in spec["containers"]}
    assert images == {chart_testing.chart_image()}


def test_pvc_scenario_claim_is_created_and_seeded():
    claim = ci_values("pvc-model-values.yaml")["model"]["pvc"]["claimName"]
    assert claim in {doc["metadata"]["name"] for doc in of_kind("PersistentVolumeClaim")}
    (job,) = [doc for doc in of_kind("Job") if doc["metadata"]["name"] == chart_testing.SEED_JOB]
    volumes = job["spec"]["template"]["spec"]["volumes"]
    assert {"name": "seed", "persistentVolumeClaim": {"claimName": claim}} in volumes


def test_url_scenario_address_is_the_in_cluster_archive_service():
    address = urlsplit(ci_values("url-model-values.yaml")["model"]["url"]["address"])
    (service,) = of_kind("Service")
    (deployment,) = [
        doc for doc in of_kind("Deployment") if doc["metadata"]["name"] == chart_testing.ARCHIVE_DEPLOYMENT
    ]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert address.scheme == "http"
    assert address.hostname == service["metadata"]["name"]  # same namespace: the short name resolves
    assert address.port == service["spec"]["ports"][0]["port"]
    script = deployment["spec"]["template"]["spec"]["containers"][0]["command"][-1]
    assert f'"/tmp/www{address.path}"' in script


def test_scenarios_ct_runs_are_the_chart_ci_values_in_go_glob_order():
    expected = sorted(path.name for path in (CHART_DIR / "ci").glob("*-values.yaml"))
    assert [Path(path).name for path in chart_testing.scenario_files()] == expected
    assert all(path.startswith("chart/ci/") for path in chart_testing.scenario_files())
