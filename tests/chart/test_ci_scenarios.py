"""chart/ci scenarios (what `ct install` deploys) exist, differ as named, and fit a 2-core node."""

from __future__ import annotations

import pytest

from chart.render import CI_VALUES, template

REQUIRED = {
    "default-values.yaml",
    "autoscaling-values.yaml",
    "pdb-values.yaml",
    "ingress-networkpolicy-values.yaml",
    "pvc-model-values.yaml",
    "url-model-values.yaml",
}
# A one-node, two-core cluster runs its control plane, CoreDNS and metrics-server too.
CPU_BUDGET_MILLICORES = 800
MEMORY_BUDGET_MIB = 4096


def millicores(quantity: str | int | float) -> int:
    text = str(quantity)
    return int(text[:-1]) if text.endswith("m") else int(float(text) * 1000)


def mebibytes(quantity: str) -> int:
    units = {"Mi": 1, "Gi": 1024}
    return int(quantity[:-2]) * units[quantity[-2:]]


def test_the_scenarios_ct_installs():
    assert {path.name for path in CI_VALUES} >= REQUIRED


def test_gpu_is_render_only():
    assert not any("gpu" in path.name for path in CI_VALUES)


@pytest.mark.parametrize("values_file", CI_VALUES, ids=lambda p: p.name)
def test_scenario_fits_a_two_core_node_during_a_rollout(values_file):
    rendered = template(files=[values_file])
    spec = rendered.deployment["spec"]
    hpa = rendered.of_kind("HorizontalPodAutoscaler")
    replicas = hpa[0]["spec"]["minReplicas"] if hpa else spec["replicas"]
    pods = replicas + spec["strategy"]["rollingUpdate"]["maxSurge"]
    requests = rendered.server_container["resources"]["requests"]
    assert pods * millicores(requests["cpu"]) <= CPU_BUDGET_MILLICORES
    assert pods * mebibytes(requests["memory"]) <= MEMORY_BUDGET_MIB


def test_scenarios_exercise_what_their_names_say():
    by_name = {path.name: template(files=[path]) for path in CI_VALUES}
    assert by_name["autoscaling-values.yaml"].has("HorizontalPodAutoscaler")
    assert by_name["pdb-values.yaml"].has("PodDisruptionBudget")
    assert by_name["pdb-values.yaml"].server_container["readinessProbe"]["grpc"] == {"port": 8500}
    assert by_name["ingress-networkpolicy-values.yaml"].has("Ingress")
    assert by_name["ingress-networkpolicy-values.yaml"].has("NetworkPolicy")
    assert by_name["pvc-model-values.yaml"].config["TFMS_MODEL_BASE_PATH"] == "/models"
    assert "persistentVolumeClaim" in str(by_name["pvc-model-values.yaml"].pod_spec["volumes"])
    assert by_name["url-model-values.yaml"].pod_spec["initContainers"][0]["name"] == "fetch-model"
