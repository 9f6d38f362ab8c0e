"""server.* values reach the server as TFMS_* environment through the ConfigMap."""

from __future__ import annotations

import pytest

from chart.render import template, template_error

# (values path under server, value, environment variable, expected text)
SETTINGS = [
    ("host", "127.0.0.1", "TFMS_HOST", "127.0.0.1"),
    ("port", 9000, "TFMS_PORT", "9000"),
    ("modelBasePath", "/srv/models", "TFMS_MODEL_BASE_PATH", "/srv/models"),
    ("modelName", "anomaly,heavy", "TFMS_MODEL_NAME", "anomaly,heavy"),
    ("modelVersion", 1, "TFMS_MODEL_VERSION", "1"),
    ("batching.enabled", False, "TFMS_BATCH_ENABLED", "false"),
    ("batching.maxBatchSize", 64, "TFMS_BATCH_MAX_SIZE", "64"),
    ("batching.maxWaitMs", 0.5, "TFMS_BATCH_MAX_WAIT_MS", "0.5"),
    ("batching.queueSize", 4096, "TFMS_BATCH_QUEUE_SIZE", "4096"),
    ("drain.delaySeconds", 8, "TFMS_DRAIN_DELAY_SECONDS", "8"),
    ("drain.timeoutSeconds", 40, "TFMS_DRAIN_TIMEOUT_SECONDS", "40"),
    ("limits.maxBodyBytes", 4194304, "TFMS_MAX_BODY_BYTES", "4194304"),
    ("limits.maxConcurrentRequests", 64, "TFMS_MAX_CONCURRENT_REQUESTS", "64"),
    ("limits.maxInflightBytes", 536870912, "TFMS_MAX_INFLIGHT_BYTES", "536870912"),
    ("limits.requestTimeoutSeconds", 12.5, "TFMS_REQUEST_TIMEOUT_SECONDS", "12.5"),
    ("limits.hungInferenceSeconds", 90, "TFMS_HUNG_INFERENCE_SECONDS", "90"),
    ("logLevel", "debug", "TFMS_LOG_LEVEL", "debug"),
    ("threads.intraOp", 2, "TFMS_INTRA_OP_THREADS", "2"),
    ("threads.interOp", 1, "TFMS_INTER_OP_THREADS", "1"),
    ("faultInjection", True, "TFMS_FAULT_INJECTION", "true"),
]
DEFAULTS = {
    "TFMS_HOST": "0.0.0.0",
    "TFMS_PORT": "8501",
    "TFMS_MODEL_BASE_PATH": "/models",
    "TFMS_MODEL_NAME": "anomaly",
    "TFMS_MODEL_VERSION": "",
    "TFMS_BATCH_ENABLED": "true",
    "TFMS_BATCH_MAX_SIZE": "32",
    "TFMS_BATCH_MAX_WAIT_MS": "2",
    "TFMS_BATCH_QUEUE_SIZE": "1024",
    "TFMS_DRAIN_DELAY_SECONDS": "5",
    "TFMS_DRAIN_TIMEOUT_SECONDS": "20",
    "TFMS_MAX_BODY_BYTES": "8388608",
    "TFMS_MAX_CONCURRENT_REQUESTS": "512",
    "TFMS_MAX_INFLIGHT_BYTES": "268435456",
    "TFMS_REQUEST_TIMEOUT_SECONDS": "30",
    "TFMS_HUNG_INFERENCE_SECONDS": "0",
    "TFMS_LOG_LEVEL": "info",
    "TFMS_INTRA_OP_THREADS": "0",
    "TFMS_INTER_OP_THREADS": "0",
    "TFMS_FAULT_INJECTION": "false",
}


def nested(path: str, value: object) -> dict:
    result: dict = {"server": {}}
    cursor = result["server"]
    *parents, leaf = path.split(".")
    for key in parents:
        cursor = cursor.setdefault(key, {})
    cursor[leaf] = value
    return result


def test_defaults_match_the_servers_documented_defaults():
    assert template().config == DEFAULTS


@pytest.mark.parametrize(("path", "value", "env", "expected"), SETTINGS, ids=[s[2] for s in SETTINGS])
def test_each_server_value_sets_its_env_var(path, value, env, expected):
    config = template(nested(path, value)).config
    assert config[env] == expected
    assert {k: v for k, v in config.items() if k != env} == {k: v for k, v in DEFAULTS.items() if k != env}


def test_every_server_setting_is_covered_here():
    assert {s[2] for s in SETTINGS} == set(DEFAULTS)


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


@pytest.mark.parametrize(("path", "value", "env", "expected"), SETTINGS, ids=[s[2] for s in SETTINGS])
def test_checksum_changes_when_a_server_value_changes(path, value, env, expected):
    assert checksum(nested(path, value)) != checksum({})


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
