"""Pod Security "restricted" on every pod the chart creates, in every scenario."""

from __future__ import annotations

import pytest

from chart.pod_security import restricted_violations
from chart.render import CI_VALUES, RENDER_ONLY_VALUES, container, pod_specs, template

SCENARIOS = [pytest.param(path, id=path.name) for path in [*CI_VALUES, *RENDER_ONLY_VALUES]]


def test_defaults_pass_restricted_on_server_and_test_pod():
    for name, spec in pod_specs(template()).items():
        assert restricted_violations(spec) == [], name


@pytest.mark.parametrize("values_file", SCENARIOS)
def test_every_scenario_passes_restricted(values_file):
    rendered = template(files=[values_file])
    for name, spec in pod_specs(rendered).items():
        assert restricted_violations(spec) == [], f"{values_file.name}: {name}"


def test_url_model_init_container_passes_restricted():
    rendered = template(
        {"model": {"source": "url", "url": {"address": "https://models.example/anomaly.tar.gz"}}}
    )
    assert restricted_violations(rendered.pod_spec) == []
    assert container(rendered.pod_spec, "fetch-model")["securityContext"]["allowPrivilegeEscalation"] is False


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"securityContext": {"allowPrivilegeEscalation": True}}, "allowPrivilegeEscalation must be false"),
        ({"securityContext": {"capabilities": {"drop": []}}}, "capabilities must drop ALL"),
        (
            {"podSecurityContext": {"runAsNonRoot": None}, "securityContext": {"runAsNonRoot": None}},
            "runAsNonRoot must be true",
        ),
        (
            {
                "podSecurityContext": {"seccompProfile": {"type": "Unconfined"}},
                "securityContext": {"seccompProfile": None},
            },
            "seccompProfile",
        ),
        ({"volumes": [{"name": "host", "hostPath": {"path": "/"}}]}, "volume host"),
    ],
    ids=["privilege-escalation", "capabilities", "run-as-non-root", "seccomp", "host-path"],
)
def test_the_check_catches_a_weakened_pod(values, expected):
    violations = restricted_violations(template(values).pod_spec)
    assert any(expected in violation for violation in violations), violations


def test_server_pod_defaults_exactly():
    rendered = template()
    pod = rendered.pod_spec
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "runAsGroup": 10001,
        "fsGroup": 10001,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    context = rendered.server_container["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["runAsUser"] == 10001


@pytest.mark.parametrize("which", ["deployment", "helm-test"])
def test_writable_tmp_is_an_emptydir_on_a_read_only_root(which):
    spec = pod_specs(template())[which]
    tmp_volumes = {v["name"] for v in spec["volumes"] if "emptyDir" in v}
    for each in spec["containers"]:
        assert each["securityContext"]["readOnlyRootFilesystem"] is True
        mounts = {m["mountPath"]: m["name"] for m in each["volumeMounts"]}
        assert mounts.get("/tmp") in tmp_volumes, f"{each['name']} has no emptyDir at /tmp"


@pytest.mark.parametrize("which", ["deployment", "helm-test"])
def test_no_service_account_token_or_service_links(which):
    spec = pod_specs(template())[which]
    assert spec["automountServiceAccountToken"] is False
    assert spec["enableServiceLinks"] is False


def test_service_account_token_follows_automount_value():
    rendered = template({"serviceAccount": {"automount": True}})
    assert rendered.pod_spec["automountServiceAccountToken"] is True
    assert rendered.one("ServiceAccount")["automountServiceAccountToken"] is True
