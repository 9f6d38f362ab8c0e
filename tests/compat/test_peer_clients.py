"""The Open Inference Protocol (and KServe's V1) as Triton's and KServe's own clients speak it.

Over HTTP and over gRPC (GRPCInferenceService: ServerLive, ServerReady, ModelReady,
ServerMetadata, ModelMetadata, ModelInfer with raw_input_contents/raw_output_contents from
tritonclient.grpc and typed contents from KServe's InferenceGRPCClient).
tritonclient[http,grpc] 2.73.0 and kserve 0.21.0 run in their own venv (compat/clients/); each
test runs one scenario of compat/clients/drive.py against the real server and asserts
on what the client got back. The expected values come from the server's TF Serving JSON
API on the same model (a different code path) or from the model's arithmetic.
"""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from bench.venvs import ensure_requirements_venv, venv_key
from demo_models.anomaly import FEATURES
from ops.paths import cache_root
from unit.server_process import ServerProcess

CLIENTS_DIR = Path(__file__).resolve().parent / "clients"
FLOWS = [[1.2, 20000, 2000, 30, 20, 1, 0.05, 0], [0.1, 60, 3000, 1, 50, 200, 0.95, 40]]


@pytest.fixture(scope="session")
def clients_python() -> Path:
    target = cache_root() / "compat" / f"clients-{venv_key(CLIENTS_DIR)}"
    return ensure_requirements_venv(CLIENTS_DIR, target, "compat peer clients") / "bin" / "python"


def drive(python: Path, server: ServerProcess, scenario: str, argument: str = "") -> dict:
    address = server.grpc_target if "-grpc" in scenario else server.url
    result = subprocess.run(
        [str(python), str(CLIENTS_DIR / "drive.py"), scenario, address, argument],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"{scenario} failed:\n{result.stdout}\n{result.stderr[-3000:]}"
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def expected_anomaly(compat_server) -> dict:
    """The same flows through the TF Serving REST API (JSON in, JSON out)."""
    with compat_server.client() as client:
        predictions = client.post("/v1/models/anomaly:predict", json={"instances": FLOWS}).json()[
            "predictions"
        ]
    return {
        "anomaly_score": [p["anomaly_score"] for p in predictions],
        "is_anomaly": [p["is_anomaly"] for p in predictions],
    }


def assert_anomaly_outputs(outputs: dict, expected: dict) -> None:
    score, flag = outputs["anomaly_score"], outputs["is_anomaly"]
    assert score["dtype"] == "float32" and score["shape"] == [2]
    assert score["values"] == pytest.approx(expected["anomaly_score"], rel=1e-6)
    assert flag["dtype"] == "bool" and flag["values"] == expected["is_anomaly"] == [False, True]


# ---------------------------------------------------------------------------- tritonclient.http


def test_triton_health_and_metadata(clients_python, compat_server):
    result = drive(clients_python, compat_server, "triton-metadata")
    assert result["live"] is result["ready"] is result["model_ready"] is True
    assert "binary_tensor_data" in result["server"]["extensions"]
    assert result["model"]["inputs"] == [{"name": "features", "datatype": "FP32", "shape": [-1, 8]}]


def test_triton_infer_at_its_defaults_uses_binary_data_both_ways(
    clients_python, compat_server, expected_anomaly
):
    result = drive(clients_python, compat_server, "triton-defaults")
    assert_anomaly_outputs(result, expected_anomaly)
    # The response's JSON part: binary_data_size per output, no "data" (binary out, as asked).
    assert [o["parameters"] for o in result["outputs"]] == [{"binary_data_size": 8}, {"binary_data_size": 2}]
    assert all("data" not in o for o in result["outputs"])
    assert result["model_version"] == "2"


def test_triton_infer_json_only(clients_python, compat_server, expected_anomaly):
    result = drive(clients_python, compat_server, "triton-json-only")
    assert_anomaly_outputs(result, expected_anomaly)
    assert result["response"]["id"] == "json-1"
    assert all("data" in o for o in result["response"]["outputs"])


def test_triton_infer_on_the_tf1_quickstart_model(clients_python, compat_server):
    result = drive(clients_python, compat_server, "triton-half-plus-two")
    assert result == {
        "y": {"dtype": "float32", "shape": [3], "values": [2.5, 3.0, 4.5]},
        "model_version": "123",
    }


def test_triton_bytes_tensors_are_length_prefixed_both_ways(clients_python, compat_server):
    result = drive(clients_python, compat_server, "triton-bytes")
    assert result["length"] == {"dtype": "int32", "shape": [3], "values": [5, 0, 8]}
    assert [base64.b64decode(v) for v in result["echo_bytes"]] == [b"hello", b"", b"\xff\x00binary"]


def serialized_flows() -> str:
    """The flows as serialized tf.Examples, base64, comma-separated (drive.py's argument)."""
    from tensorflow.core.example import example_pb2, feature_pb2

    serialized = []
    for flow in FLOWS:
        example = example_pb2.Example()
        for name, value in zip(FEATURES, flow, strict=True):
            example.features.feature[name].CopyFrom(
                feature_pb2.Feature(float_list=feature_pb2.FloatList(value=[value]))
            )
        serialized.append(base64.b64encode(example.SerializeToString()).decode())
    return ",".join(serialized)


def rest_regression(server: ServerProcess) -> list[float]:
    with server.client() as client:
        examples = [dict(zip(FEATURES, map(float, flow), strict=True)) for flow in FLOWS]
        regress = client.post(
            "/v1/models/anomaly:regress", json={"signature_name": "regress", "examples": examples}
        )
    return regress.json()["results"]


@pytest.mark.parametrize("scenario", ["triton-regress", "triton-grpc-regress"])
def test_triton_serialized_examples_to_a_named_signature(clients_python, compat_server, scenario):
    result = drive(clients_python, compat_server, scenario, serialized_flows())
    assert result["outputs"]["values"] == pytest.approx(rest_regression(compat_server), rel=1e-6)


def test_triton_client_sees_our_error(clients_python, compat_server):
    result = drive(clients_python, compat_server, "triton-error")
    assert result["status"] == "400"
    assert "'nope' is not an input" in result["message"]


# ---------------------------------------------------------------------------- kserve.InferenceRESTClient


@pytest.mark.parametrize("scenario", ["kserve-v2-json", "kserve-v2-binary"])
def test_kserve_rest_client_v2(clients_python, compat_server, expected_anomaly, scenario):
    result = drive(clients_python, compat_server, scenario)
    assert result["live"] is result["ready"] is result["model_ready"] is True
    assert (
        result["id"] == "kserve-1" and result["x_model_version"] == "2"
    )  # its InferResponse drops model_version
    assert_anomaly_outputs(result["outputs"], expected_anomaly)


def test_kserve_rest_client_v1_is_tf_serving_predict(clients_python, compat_server):
    result = drive(clients_python, compat_server, "kserve-v1")
    assert result == {"predictions": [[2.5], [3.0], [4.5]]}
    assert np.asarray(result["predictions"]).shape == (3, 1)


# ---------------------------------------------------------------------------- tritonclient.grpc, kserve gRPC


def test_triton_grpc_health_and_metadata(clients_python, compat_server):
    result = drive(clients_python, compat_server, "triton-grpc-metadata")
    assert result["live"] is result["ready"] is result["model_ready"] is result["version_ready"] is True
    assert result["server"]["name"] == "tf-model-server"
    assert result["model"]["inputs"] == [{"name": "features", "datatype": "FP32", "shape": ["-1", "8"]}]
    assert result["model"]["versions"] == ["2"] and result["model"]["platform"] == "tensorflow_savedmodel"


def test_triton_grpc_infer_at_its_defaults_is_raw_both_ways(clients_python, compat_server, expected_anomaly):
    result = drive(clients_python, compat_server, "triton-grpc-defaults")
    assert_anomaly_outputs(result, expected_anomaly)
    assert result["raw_outputs"] == 2 and all("contents" not in o for o in result["outputs"])
    assert result["id"] == "grpc-1" and result["model_version"] == "2"


def test_triton_grpc_infer_on_the_tf1_quickstart_model(clients_python, compat_server):
    result = drive(clients_python, compat_server, "triton-grpc-half-plus-two")
    assert result == {
        "y": {"dtype": "float32", "shape": [3], "values": [2.5, 3.0, 4.5]},
        "model_version": "123",
    }


def test_triton_grpc_bytes_tensors_are_length_prefixed_both_ways(clients_python, compat_server):
    result = drive(clients_python, compat_server, "triton-grpc-bytes")
    assert result["length"] == {"dtype": "int32", "shape": [3], "values": [5, 0, 8]}
    assert [base64.b64decode(v) for v in result["echo_bytes"]] == [b"hello", b"", b"\xff\x00binary"]


def test_triton_grpc_client_sees_our_error(clients_python, compat_server):
    result = drive(clients_python, compat_server, "triton-grpc-error")
    assert result["status"] == "StatusCode.INVALID_ARGUMENT"
    assert "'nope' is not an input" in result["message"]


def test_kserve_grpc_client_with_typed_contents(clients_python, compat_server, expected_anomaly):
    result = drive(clients_python, compat_server, "kserve-grpc")
    assert result["live"] is result["ready"] is result["model_ready"] is True
    assert result["id"] == "kserve-grpc-1"
    assert_anomaly_outputs(result["outputs"], expected_anomaly)
