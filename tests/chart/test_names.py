"""helm create's naming: fullname, nameOverride, fullnameOverride and the 63-character cut."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from chart.render import CHART_DIR, helm, template

NAMED_KINDS = ["ConfigMap", "Deployment", "Service", "ServiceAccount"]


def names(rendered) -> set[str]:
    return {rendered.one(kind)["metadata"]["name"] for kind in NAMED_KINDS}


def render_release(release: str, values: dict | None = None) -> list[dict]:
    command = [str(helm()), "template", release, str(CHART_DIR)]
    for key, value in (values or {}).items():
        command += ["--set", f"{key}={value}"]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return [doc for doc in yaml.safe_load_all(output) if doc]


def test_fullname_is_release_dash_chart():
    assert names(template()) == {"demo-tf-model-server"}


def test_release_containing_the_chart_name_is_used_as_is():
    docs = render_release("tf-model-server-canary")
    assert {d["metadata"]["name"] for d in docs if d["kind"] == "Deployment"} == {"tf-model-server-canary"}


def test_name_override_changes_fullname_and_name_label():
    rendered = template({"nameOverride": "scorer"})
    assert names(rendered) == {"demo-scorer"}
    assert rendered.deployment["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] == "scorer"


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("anomaly-api", "anomaly-api"),
        ("x" * 70, "x" * 63),
        ("a" * 62 + "-b", "a" * 62),  # cut at 63 leaves a trailing "-", which is trimmed
    ],
    ids=["short", "cut-to-63", "trailing-dash-trimmed"],
)
def test_fullname_override_is_cut_to_63_characters(override, expected):
    rendered = template({"fullnameOverride": override})
    assert names(rendered) == {expected}
    assert rendered.test_pod["metadata"]["name"].endswith("-test-predict")
    assert len(rendered.test_pod["metadata"]["name"]) <= 63


def test_long_release_names_are_cut_to_63_characters():
    release = "r" * 53  # the longest release name helm accepts
    docs = render_release(release)
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    assert deployment["metadata"]["name"] == f"{release}-tf-model"
    for doc in docs:
        assert len(doc["metadata"]["name"]) <= 63, doc["metadata"]["name"]


def test_name_override_is_cut_too():
    rendered = template({"fullnameOverride": "", "nameOverride": "n" * 63})
    assert rendered.deployment["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] == "n" * 63
    assert all(len(name) <= 63 for name in names(rendered))
