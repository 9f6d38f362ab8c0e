"""values.schema.json refuses typos, wrong types and bad enums, naming the key."""

from __future__ import annotations

import pytest

from chart.render import CHART_DIR, CI_VALUES, RENDER_ONLY_VALUES, template, template_error


def test_top_level_typo_is_refused_by_name():
    message = template_error(args=["--set", "replicaCont=3"])
    assert "Additional property replicaCont is not allowed" in message


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"image": {"tga": "v2"}}, "image: Additional property tga is not allowed"),
        (
            {"server": {"batching": {"maxBatchSze": 8}}},
            "server.batching: Additional property maxBatchSze is not allowed",
        ),
        ({"server": {"drain": {"delay": 3}}}, "server.drain: Additional property delay is not allowed"),
        ({"server": {"modelname": "x"}}, "server: Additional property modelname is not allowed"),
        ({"autoscaling": {"maxReplica": 3}}, "autoscaling: Additional property maxReplica is not allowed"),
        ({"service": {"nodeport": 30001}}, "service: Additional property nodeport is not allowed"),
        ({"model": {"pvc": {"claim": "x"}}}, "model.pvc: Additional property claim is not allowed"),
        (
            {"podDisruptionBudget": {"minAvailble": 1}},
            "podDisruptionBudget: Additional property minAvailble is not allowed",
        ),
        ({"networkPolicy": {"enable": True}}, "networkPolicy: Additional property enable is not allowed"),
        (
            {"serviceAccount": {"automountToken": True}},
            "serviceAccount: Additional property automountToken is not allowed",
        ),
        (
            {"readinessProbe": {"periodSecond": 1}},
            "readinessProbe: Additional property periodSecond is not allowed",
        ),
        ({"resources": {"limit": {"cpu": 1}}}, "resources: Additional property limit is not allowed"),
    ],
    ids=lambda v: next(iter(v)) if isinstance(v, dict) else "",
)
def test_nested_typos_are_refused_by_path(values, expected):
    assert expected in template_error(values)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"replicaCount": "three"}, "replicaCount: Invalid type. Expected: integer, given: string"),
        ({"server": {"port": "http"}}, "server.port: Invalid type. Expected: integer, given: string"),
        (
            {"autoscaling": {"enabled": "yes"}},
            "autoscaling.enabled: Invalid type. Expected: boolean, given: string",
        ),
        (
            {"server": {"batching": {"maxWaitMs": "2ms"}}},
            "server.batching.maxWaitMs: Invalid type. Expected: number",
        ),
        ({"podAnnotations": {"a": 1}}, "podAnnotations.a: Invalid type. Expected: string, given: integer"),
        ({"tolerations": {"key": "x"}}, "tolerations: Invalid type. Expected: array, given: object"),
    ],
    ids=["replicaCount", "server.port", "autoscaling.enabled", "maxWaitMs", "podAnnotations", "tolerations"],
)
def test_wrong_types_are_refused(values, expected):
    assert expected in template_error(values)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"service": {"type": "Nodeport"}}, "service.type: service.type must be one of the following"),
        (
            {"server": {"logLevel": "verbose"}},
            "server.logLevel: server.logLevel must be one of the following",
        ),
        ({"model": {"source": "s3"}}, "model.source: model.source must be one of the following"),
        (
            {"image": {"pullPolicy": "Sometimes"}},
            "image.pullPolicy: image.pullPolicy must be one of the following",
        ),
    ],
    ids=["service.type", "server.logLevel", "model.source", "image.pullPolicy"],
)
def test_bad_enums_are_refused(values, expected):
    assert expected in template_error(values)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (
            {"server": {"batching": {"maxBatchSize": 0}}},
            "server.batching.maxBatchSize: Must be greater than or equal to 1",
        ),
        ({"service": {"nodePort": 70000}}, "service.nodePort: Must be less than or equal to 32767"),
        ({"service": {"nodePort": 8080}}, "service.nodePort: Must be greater than or equal to 30000"),
        ({"replicaCount": -1}, "replicaCount: Must be greater than or equal to 0"),
        ({"server": {"modelName": "a/b"}}, "server.modelName: Does not match pattern"),
        (
            {"rollingUpdate": {"maxUnavailable": "half"}},
            "rollingUpdate.maxUnavailable: Must validate at least one schema",
        ),
    ],
    ids=["maxBatchSize", "nodePort-high", "nodePort-low", "replicaCount", "modelName", "maxUnavailable"],
)
def test_out_of_range_values_are_refused(values, expected):
    assert expected in template_error(values)


def test_node_ports_at_the_ends_of_the_range_are_accepted():
    for port in (30000, 32767):
        service = template({"service": {"type": "NodePort", "nodePort": port}}).one("Service")
        assert service["spec"]["ports"][0]["nodePort"] == port


@pytest.mark.parametrize(
    "rolling",
    [{"maxSurge": 0}, {"maxSurge": 0, "maxUnavailable": 0}, {"maxSurge": "0%", "maxUnavailable": "0%"}],
    ids=["surge-0-default-unavailable-0", "both-0", "both-0-percent"],
)
def test_a_rolling_update_that_could_replace_no_pod_is_refused(rolling):
    message = template_error({"rollingUpdate": rolling})
    assert 'rollingUpdate: Must validate "then" as "if" was valid' in message
    assert "rollingUpdate.maxUnavailable" in message


@pytest.mark.parametrize(
    "rolling",
    [{"maxSurge": 0, "maxUnavailable": 1}, {"maxSurge": "0%", "maxUnavailable": "25%"}, {"maxSurge": 2}],
    ids=["surge-0-unavailable-1", "percentages", "surge-2"],
)
def test_rolling_updates_that_can_progress_are_accepted(rolling):
    strategy = template({"rollingUpdate": rolling}).deployment["spec"]["strategy"]["rollingUpdate"]
    assert strategy["maxSurge"] == rolling["maxSurge"]


def test_free_form_maps_stay_open():
    rendered = template(
        {
            "podAnnotations": {"prometheus.io/scrape": "true"},
            "podLabels": {"team": "fraud"},
            "nodeSelector": {"cloud.google.com/gke-accelerator": "nvidia-l4"},
            "resources": {"limits": {"nvidia.com/gpu": 1, "memory": "2Gi"}},
            "affinity": {"podAntiAffinity": {}},
            "serviceAccount": {"annotations": {"iam.gke.io/gcp-service-account": "x@y"}},
            "autoscaling": {"enabled": True, "behavior": {"scaleUp": {"selectPolicy": "Disabled"}}},
        }
    )
    assert rendered.server_container["resources"]["limits"]["nvidia.com/gpu"] == 1


@pytest.mark.parametrize("values_file", [*CI_VALUES, *RENDER_ONLY_VALUES], ids=lambda p: p.name)
def test_every_scenario_file_satisfies_the_schema(values_file):
    assert template(files=[values_file]).has("Deployment")


def test_model_url_must_be_a_url_the_fetcher_speaks():
    message = template_error({"model": {"source": "url", "url": {"address": "s3://bucket/models.tar.gz"}}})
    assert "model.url.address: Does not match pattern" in message
    assert template({"model": {"source": "url", "url": {"address": "file:///mnt/models.tar.gz"}}}).has(
        "Deployment"
    )


E2E_VALUES = sorted((CHART_DIR.parent / "tests" / "e2e" / "values").glob("*.yaml"))


def test_the_e2e_values_are_where_this_module_looks():
    assert any(path.name == "base.yaml" for path in E2E_VALUES)


@pytest.mark.parametrize("values_file", E2E_VALUES, ids=lambda p: p.name)
def test_the_e2e_suites_values_satisfy_the_schema(values_file):
    base = values_file.parent / "base.yaml"
    assert template(files=[base, values_file]).has("Deployment")
