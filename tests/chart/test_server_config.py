"""server.* values reach the server as TFMS_* environment through the ConfigMap.

The server's settings table (modelserver.settings.OPTIONS) is the one source: these tests
walk it, so a new setting is covered by adding its row and its value, nothing here.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from modelserver.settings import Option
from ops.chart_settings import chart_options

from chart.render import CHART_DIR, template, template_error

CHART_DEFAULTS = yaml.safe_load((CHART_DIR / "values.yaml").read_text())["server"]
# The settings the chart sets from values (TFMS_CPU_REQUEST_MILLICORES comes from the pod spec).
OPTIONS = chart_options()


def nested(path: str, value: object) -> dict:
    result: dict = {"server": {}}
    cursor = result["server"]
    *parents, leaf = path.split(".")
    for key in parents:
        cursor = cursor.setdefault(key, {})
    cursor[leaf] = value
    return result


def chart_default(option: Option) -> Any:
    value: Any = CHART_DEFAULTS
    for part in option.value.split("."):
        value = value[part]
    return value


def as_text(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def sample(option: Option) -> Any:
    """A valid value other than the chart's default, from the value's schema."""
    schema = option.schema
    default = chart_default(option)
    if "anyOf" in schema:
        schema = schema["anyOf"][0]
        default = None
    if "enum" in schema:
        return next(choice for choice in schema["enum"] if choice != default)
    kind = schema["type"]
    if isinstance(kind, list):  # nullable: null means "derived by the chart"; a set value wins
        kind = next(k for k in kind if k != "null")
        if default is None:
            return 1 << 30  # large enough for every bound that depends on it
    if kind == "boolean":
        return not default
    if kind == "integer":
        start = default if isinstance(default, int) else schema.get("minimum", 0)
        # +2, not +1: the gRPC port's default (8500) plus one is the HTTP port's, which the chart refuses.
        return start + 2 if start + 2 <= schema.get("maximum", start + 2) else start - 1
    if kind == "number":
        return default + 0.5
    return f"{default}x"


def parsed(option: Option, text: str) -> Any:
    return None if text == "" and option.default_text == "(empty)" else option.parse(text)


def test_the_configmap_has_one_key_per_server_setting():
    assert set(template().config) == {option.env for option in OPTIONS}


def test_settings_from_the_pod_spec_are_not_in_the_configmap():
    assert "TFMS_CPU_REQUEST_MILLICORES" not in template().config


@pytest.mark.parametrize("option", OPTIONS, ids=lambda o: o.env)
def test_the_chart_defaults_are_the_servers_defaults(option):
    documented = None if option.default_text == "(empty)" else option.parse(option.default_text)
    assert parsed(option, template().config[option.env]) == documented


@pytest.mark.parametrize("option", OPTIONS, ids=lambda o: o.env)
def test_each_server_value_sets_its_env_var(option):
    value = sample(option)
    config = template(nested(option.value, value)).config
    assert parsed(option, config[option.env]) == option.parse(as_text(value))
    assert {k: v for k, v in config.items() if k != option.env} == {
        k: v for k, v in template().config.items() if k != option.env
    }


def test_large_integers_are_not_rendered_in_float_notation():
    config = template(
        {"server": {"limits": {"maxBodyBytes": 1073741824, "maxInflightBytes": 17 * 1073741824}}}
    ).config
    assert config["TFMS_MAX_BODY_BYTES"] == "1073741824"
    assert config["TFMS_MAX_INFLIGHT_BYTES"] == str(17 * 1073741824)


@pytest.mark.parametrize(
    ("memory", "inflight", "concurrent"),
    [
        ("1Gi", 268435456, 512),
        ("2Gi", 536870912, 1024),
        ("1500M", 375000000, 715),
        (4294967296, 1073741824, 2048),
        (None, 268435456, 512),
    ],
    ids=["1Gi", "2Gi", "1500M", "plain-bytes", "no-limit"],
)
def test_memory_bounds_derive_from_the_memory_limit(memory, inflight, concurrent):
    resources = {"requests": {"cpu": "100m"}, "limits": {"memory": memory} if memory else {}}
    config = template({"resources": resources}).config
    assert config["TFMS_MAX_INFLIGHT_BYTES"] == str(inflight)
    assert config["TFMS_MAX_CONCURRENT_REQUESTS"] == str(concurrent)


def test_a_memory_limit_too_small_for_one_largest_body_fails_with_the_fix():
    error = template_error({"resources": {"limits": {"memory": "256Mi"}}})
    assert "must be at least 17x server.limits.maxBodyBytes" in error
    assert "raise the memory limit, lower maxBodyBytes, or set maxInflightBytes" in error
    # Smaller bodies fit the smaller budget.
    config = template(
        {"resources": {"limits": {"memory": "256Mi"}}, "server": {"limits": {"maxBodyBytes": 1048576}}}
    ).config
    assert config["TFMS_MAX_INFLIGHT_BYTES"] == str(64 * 1048576)


def test_the_cpu_request_reaches_the_server_through_the_downward_api():
    env = template().server_container["env"]
    assert {
        "name": "TFMS_CPU_REQUEST_MILLICORES",
        "valueFrom": {
            "resourceFieldRef": {"containerName": "server", "resource": "requests.cpu", "divisor": "1m"}
        },
    } in env


def test_a_fraction_is_rendered_as_given():
    assert template({"server": {"batching": {"maxWaitMs": 0.25}}}).config["TFMS_BATCH_MAX_WAIT_MS"] == "0.25"


def test_a_missing_server_value_is_refused_by_name():
    message = template_error(args=["--set", "server.batching.queueSize=null"])
    assert "server.batching: queueSize is required" in message


def test_server_reads_the_configmap_and_its_pod_name():
    rendered = template()
    server = rendered.server_container
    assert server["envFrom"] == [{"configMapRef": {"name": rendered.one("ConfigMap")["metadata"]["name"]}}]
    assert {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}} in server["env"]


def test_extra_env_is_appended():
    env = template({"extraEnv": [{"name": "TF_CPP_MIN_LOG_LEVEL", "value": "2"}]}).server_container["env"]
    assert [e["name"] for e in env] == ["POD_NAME", "TFMS_CPU_REQUEST_MILLICORES", "TF_CPP_MIN_LOG_LEVEL"]


def checksum(values: dict) -> str:
    return template(values).deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"]


@pytest.mark.parametrize("option", OPTIONS, ids=lambda o: o.env)
def test_checksum_changes_when_a_server_value_changes(option):
    assert checksum(nested(option.value, sample(option))) != checksum({})


@pytest.mark.parametrize(
    "values",
    [
        {"replicaCount": 4},
        {"image": {"tag": "v2"}},
        {"resources": {"requests": {"cpu": "1"}}},
        {"podAnnotations": {"note": "x"}},
        {"service": {"type": "NodePort"}},
    ],
    ids=["replicaCount", "image.tag", "resources", "podAnnotations", "service.type"],
)
def test_checksum_stays_when_nothing_in_the_configmap_changes(values):
    assert checksum(values) == checksum({})
