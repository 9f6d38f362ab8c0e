"""Settings: env vars, flags, defaults, validation, and the documentation generated from them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from modelserver.settings import OPTIONS, Settings, SettingsError, load_settings, markdown_table

from unit.server_process import REPO_ROOT, python_env

SHARED_INTERFACE = {
    "TFMS_HOST": "0.0.0.0",
    "TFMS_PORT": "8501",
    "TFMS_GRPC_PORT": "8500",
    "TFMS_GRPC_MAX_MESSAGE_BYTES": "0",
    "TFMS_GRPC_MAX_CONNECTION_AGE_SECONDS": "60",
    "TFMS_GRPC_MAX_CONNECTION_AGE_GRACE_SECONDS": "0",
    "TFMS_MODEL_BASE_PATH": "/models",
    "TFMS_MODEL_NAME": "anomaly",
    "TFMS_MODEL_VERSION": "(empty)",
    "TFMS_MODEL_CONFIG_FILE": "(empty)",
    "TFMS_FILE_SYSTEM_POLL_WAIT_SECONDS": "1",
    "TFMS_MODEL_CONFIG_FILE_POLL_WAIT_SECONDS": "10",
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
    "TFMS_CPU_REQUEST_MILLICORES": "0",
    "TFMS_FAULT_INJECTION": "false",
}


def test_every_shared_setting_exists_with_its_agreed_default():
    assert {option.env: option.default_text for option in OPTIONS} == SHARED_INTERFACE


def test_defaults_match_the_documented_defaults():
    settings = load_settings([], {})
    assert settings == Settings()
    for option in OPTIONS:
        documented = None if option.default_text == "(empty)" else option.parse(option.default_text)
        assert getattr(settings, option.field) == documented, option.env


def test_environment_is_read_and_flags_win():
    environ = {
        "TFMS_PORT": "9000",
        "TFMS_MODEL_NAME": "anomaly, heavy",
        "TFMS_MODEL_VERSION": "1",
        "TFMS_BATCH_ENABLED": "false",
        "TFMS_BATCH_MAX_WAIT_MS": "0.5",
        "TFMS_MODEL_BASE_PATH": "/srv/models",
    }
    settings = load_settings(["--port", "9100", "--batch-enabled", "yes"], environ)
    assert settings.port == 9100
    assert settings.batch_enabled is True
    assert settings.model_names == ("anomaly", "heavy")
    assert settings.model_version == 1
    assert settings.batch_max_wait_ms == 0.5
    assert settings.model_base_path == Path("/srv/models")
    assert load_settings([], {"TFMS_MODEL_NAME": ""}).model_names == ()


@pytest.mark.parametrize(
    ("argv", "environ", "named"),
    [
        ([], {"TFMS_PORT": "70000"}, "TFMS_PORT"),
        ([], {"TFMS_BATCH_ENABLED": "maybe"}, "TFMS_BATCH_ENABLED"),
        ([], {"TFMS_BATCH_MAX_SIZE": "0"}, "TFMS_BATCH_MAX_SIZE"),
        (["--log-level", "loud"], {}, "--log-level"),
        ([], {"TFMS_MODEL_NAME": "../etc"}, "TFMS_MODEL_NAME"),
        ([], {"TFMS_MODEL_VERSION": "latest"}, "TFMS_MODEL_VERSION"),
        ([], {"TFMS_DRAIN_DELAY_SECONDS": "30"}, "TFMS_DRAIN_TIMEOUT_SECONDS"),
    ],
)
def test_bad_values_name_the_setting(argv, environ, named):
    with pytest.raises(SettingsError, match=named):
        load_settings(argv, environ)


def test_bad_value_exits_2_with_a_clear_message():
    env = python_env({"TFMS_PORT": "not-a-port"})
    result = subprocess.run([sys.executable, "-m", "modelserver"], env=env, capture_output=True, text=True)
    assert result.returncode == 2
    assert "TFMS_PORT='not-a-port'" in result.stderr


def test_help_documents_every_setting():
    result = subprocess.run(
        [sys.executable, "-m", "modelserver", "--help"],
        env=python_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    for option in OPTIONS:
        assert option.flag in result.stdout and option.env in result.stdout


def test_readme_configuration_table_is_the_generated_one():
    readme = (REPO_ROOT / "README.md").read_text()
    assert markdown_table() in readme, "README's Configuration table is stale: python -m modelserver.settings"


def test_the_inflight_budget_must_hold_one_body_of_the_largest_size():
    with pytest.raises(
        SettingsError, match=r"TFMS_MAX_INFLIGHT_BYTES .* must be at least 17x TFMS_MAX_BODY_BYTES"
    ):
        load_settings([], {"TFMS_MAX_BODY_BYTES": "1048576", "TFMS_MAX_INFLIGHT_BYTES": "16777216"})
    settings = load_settings([], {"TFMS_MAX_BODY_BYTES": "1048576", "TFMS_MAX_INFLIGHT_BYTES": "17825792"})
    assert settings.max_inflight_bytes == 17 * 1048576


def test_a_hung_call_is_defined_beyond_the_request_timeout():
    assert load_settings([], {}).hung_inference_limit_seconds == 120
    assert load_settings([], {"TFMS_REQUEST_TIMEOUT_SECONDS": "5"}).hung_inference_limit_seconds == 20
    assert load_settings([], {"TFMS_HUNG_INFERENCE_SECONDS": "45"}).hung_inference_limit_seconds == 45
    with pytest.raises(SettingsError, match=r"TFMS_HUNG_INFERENCE_SECONDS .* must be more than"):
        load_settings([], {"TFMS_HUNG_INFERENCE_SECONDS": "10", "TFMS_REQUEST_TIMEOUT_SECONDS": "10"})


def test_the_inflight_budget_must_hold_one_grpc_message_of_the_largest_size():
    small = {"TFMS_MAX_BODY_BYTES": "1048576", "TFMS_MAX_INFLIGHT_BYTES": "17825792"}
    # By default a gRPC message is bounded as an HTTP body is, so the body rule covers it.
    assert load_settings([], small).grpc_message_limit_bytes == 1048576
    too_big = {**small, "TFMS_GRPC_MAX_MESSAGE_BYTES": str(8 * 1048576)}
    with pytest.raises(SettingsError, match=r"must be at least 3x TFMS_GRPC_MAX_MESSAGE_BYTES \(25165824\)"):
        load_settings([], too_big)
    assert load_settings([], {**too_big, "TFMS_GRPC_PORT": "0"}).grpc_port == 0


def test_the_grpc_port_must_differ_from_the_http_port():
    with pytest.raises(SettingsError, match="TFMS_GRPC_PORT and TFMS_PORT are both 9000"):
        load_settings([], {"TFMS_PORT": "9000", "TFMS_GRPC_PORT": "9000"})
