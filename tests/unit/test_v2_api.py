"""Open Inference Protocol (V2) over real HTTP against the demo models."""

from __future__ import annotations

import base64
import json
import struct

import numpy as np
import pytest
from modelserver.errors import ServingError
from modelserver.protocols import v2
from modelserver.runtime import TensorSpec

from unit.conftest import FLOW_NORMAL, FLOW_PORT_SCAN

INTEGER_FLOW = [1, 20000, 2000, 30, 20, 1, 0, 0]
DATATYPE_DATA = {
    "BOOL": [True, False, True, False, True, True, False, False],
    "UINT8": [1, 200, 20, 30, 20, 1, 0, 0],
    "UINT16": INTEGER_FLOW,
    "UINT32": INTEGER_FLOW,
    "UINT64": INTEGER_FLOW,
    "INT8": [1, 100, 20, 30, 20, 1, 0, 0],
    "INT16": INTEGER_FLOW,
    "INT32": INTEGER_FLOW,
    "INT64": INTEGER_FLOW,
    "FP16": [1.5, 20000.0, 2000.0, 30.0, 20.0, 1.0, 0.25, 0.0],
    "FP32": FLOW_NORMAL,
    "FP64": FLOW_NORMAL,
}


def infer(client, datatype, data, shape=(1, 8), **extra):
    body = {
        "inputs": [{"name": "features", "shape": list(shape), "datatype": datatype, "data": data}],
        **extra,
    }
    return client.post("/v2/models/anomaly/infer", json=body)


def test_server_metadata(client):
    assert client.get("/v2").json() == {
        "name": "tf-model-server",
        "version": "0.1.0",
        "extensions": ["binary_tensor_data"],
    }


def test_model_metadata_and_ready(client):
    response = client.get("/v2/models/anomaly")
    assert response.status_code == 200
    assert response.json() == {
        "name": "anomaly",
        "versions": ["2"],
        "platform": "tensorflow_savedmodel",
        "inputs": [{"name": "features", "datatype": "FP32", "shape": [-1, 8]}],
        "outputs": [
            {"name": "anomaly_score", "datatype": "FP32", "shape": [-1]},
            {"name": "is_anomaly", "datatype": "BOOL", "shape": [-1]},
        ],
    }
    assert client.get("/v2/models/anomaly/versions/2").json() == response.json()
    ready = client.get("/v2/models/anomaly/ready")
    assert ready.status_code == 200 and ready.json() == {"name": "anomaly", "ready": True}
    assert client.get("/v2/models/anomaly/versions/1/ready").status_code == 404
    assert client.get("/v2/models/nope/ready").status_code == 404


def test_infer_echoes_id_and_names_the_version(client):
    response = infer(client, "FP32", FLOW_NORMAL + FLOW_PORT_SCAN, shape=(2, 8), id="req-42")
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == "req-42"
    assert body["model_name"] == "anomaly" and body["model_version"] == "2"
    score, flag = body["outputs"]
    assert score["name"] == "anomaly_score" and score["datatype"] == "FP32" and score["shape"] == [2]
    assert flag == {"name": "is_anomaly", "datatype": "BOOL", "shape": [2], "data": [False, True]}
    assert response.headers["x-model-version"] == "2"
    assert response.headers["x-served-by"] == "unit-main"


def test_infer_matches_tf_serving_predict(client):
    predicted = client.post("/v1/models/anomaly:predict", json={"instances": [FLOW_NORMAL]}).json()
    body = infer(client, "FP32", FLOW_NORMAL).json()
    assert body["outputs"][0]["data"] == [predicted["predictions"][0]["anomaly_score"]]


def test_nested_data_is_accepted(client):
    flat = infer(client, "FP32", FLOW_NORMAL + FLOW_PORT_SCAN, shape=(2, 8)).json()
    nested = infer(client, "FP32", [FLOW_NORMAL, FLOW_PORT_SCAN], shape=(2, 8)).json()
    assert nested["outputs"] == flat["outputs"]


@pytest.mark.parametrize("datatype", sorted(DATATYPE_DATA))
def test_every_datatype_the_fp32_input_can_take(client, datatype):
    data = DATATYPE_DATA[datatype]
    response = infer(client, datatype, data)
    assert response.status_code == 200, response.text
    as_fp32 = infer(client, "FP32", [float(v) for v in data]).json()
    assert response.json()["outputs"] == as_fp32["outputs"]


@pytest.mark.parametrize(
    ("datatype", "data", "reason"),
    [
        ("BYTES", ["a"] * 8, "cannot be converted"),
        ("INT8", [300, 0, 0, 0, 0, 0, 0, 0], "do not fit int8"),
        ("UINT8", [-1, 0, 0, 0, 0, 0, 0, 0], "do not fit uint8"),
        ("INT64", [16777217, 0, 0, 0, 0, 0, 0, 0], "exactly as float32"),
        ("INT32", [1.5, 0, 0, 0, 0, 0, 0, 0], "expects integers"),
        ("BOOL", [1, 0, 0, 0, 0, 0, 0, 0], "expects booleans"),
        ("FP32", ["1.0"] * 8, "expected numbers"),
        ("FP64", [1e300] + [0.0] * 7, "overflow float32"),
        ("FP17", FLOW_NORMAL, "unknown datatype"),
    ],
)
def test_lossy_or_wrong_datatypes_are_refused(client, datatype, data, reason):
    response = infer(client, datatype, data)
    assert response.status_code == 400
    assert reason in response.json()["error"]
    assert response.headers["x-model-version"] == "2"


def test_requested_outputs_only(client):
    response = infer(client, "FP32", FLOW_NORMAL, outputs=[{"name": "is_anomaly"}])
    assert [output["name"] for output in response.json()["outputs"]] == ["is_anomaly"]
    unknown = infer(client, "FP32", FLOW_NORMAL, outputs=[{"name": "nope"}])
    assert unknown.status_code == 400


def test_bytes_input_through_signature_parameter(client):
    import tensorflow as tf  # only this test needs to serialize a tf.Example

    example = tf.train.Example()
    for name, value in zip(
        [
            "duration_seconds",
            "bytes_in",
            "bytes_out",
            "packets_in",
            "packets_out",
            "distinct_dst_ports",
            "syn_ratio",
            "failed_connections",
        ],
        FLOW_NORMAL,
        strict=True,
    ):
        example.features.feature[name].float_list.value.append(value)
    encoded = base64.b64encode(example.SerializeToString()).decode()
    response = client.post(
        "/v2/models/anomaly/infer",
        json={
            "parameters": {"signature_name": "regress"},
            "inputs": [{"name": "inputs", "shape": [1], "datatype": "BYTES", "data": [{"b64": encoded}]}],
        },
    )
    assert response.status_code == 200, response.text
    expected = infer(client, "FP32", FLOW_NORMAL).json()["outputs"][0]["data"]
    assert response.json()["outputs"] == [
        {"name": "outputs", "datatype": "FP32", "shape": [1], "data": expected}
    ]


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        ({"name": "features", "shape": [2, 8], "datatype": "FP32", "data": FLOW_NORMAL}, "needs 16 values"),
        ({"name": "features", "shape": [1, 7], "datatype": "FP32", "data": FLOW_NORMAL[:7]}, "expects shape"),
        ({"name": "x", "shape": [1, 8], "datatype": "FP32", "data": FLOW_NORMAL}, "not an input"),
        ({"name": "features", "shape": [1, -8], "datatype": "FP32", "data": FLOW_NORMAL}, "non-negative"),
        ({"name": "features", "shape": [1, 8], "datatype": "FP32"}, "missing 'data'"),
    ],
)
def test_malformed_v2_inputs_are_refused(client, entry, reason):
    response = client.post("/v2/models/anomaly/infer", json={"inputs": [entry]})
    assert response.status_code == 400
    assert reason in response.json()["error"]


# ---- binary tensor data extension, byte level (tritonclient drives it in tests/compat)


def binary_request(inputs_json, data, outputs=None, parameters=None):
    document = {"inputs": inputs_json}
    if outputs is not None:
        document["outputs"] = outputs
    if parameters is not None:
        document["parameters"] = parameters
    header = json.dumps(document).encode()
    return header + data, {"Inference-Header-Content-Length": str(len(header))}


def split_response(response):
    length = int(response.headers["inference-header-content-length"])
    return json.loads(response.content[:length]), response.content[length:]


def test_binary_input_and_binary_outputs(client):
    features = np.asarray([FLOW_NORMAL, FLOW_PORT_SCAN], dtype="<f4")
    raw = features.tobytes()
    body, headers = binary_request(
        [
            {
                "name": "features",
                "shape": [2, 8],
                "datatype": "FP32",
                "parameters": {"binary_data_size": len(raw)},
            }
        ],
        raw,
        parameters={"binary_data_output": True},
    )
    response = client.post("/v2/models/anomaly/infer", content=body, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/octet-stream"
    header, data = split_response(response)
    score, flag = header["outputs"]
    assert score["parameters"] == {"binary_data_size": 8} and flag["parameters"] == {"binary_data_size": 2}
    assert "data" not in score
    scores = np.frombuffer(data[:8], dtype="<f4")
    assert np.frombuffer(data[8:], dtype=np.uint8).tolist() == [0, 1]
    as_json = client.post(
        "/v2/models/anomaly/infer",
        json={
            "inputs": [{"name": "features", "shape": [2, 8], "datatype": "FP32", "data": features.tolist()}]
        },
    ).json()
    assert scores.tolist() == pytest.approx(as_json["outputs"][0]["data"], rel=1e-6)


def test_binary_output_chosen_per_output_overrides_the_request_default(client):
    raw = np.asarray([FLOW_NORMAL], dtype="<f4").tobytes()
    body, headers = binary_request(
        [{"name": "features", "shape": [1, 8], "datatype": "FP32", "parameters": {"binary_data_size": 32}}],
        raw,
        outputs=[{"name": "is_anomaly", "parameters": {"binary_data": False}}, {"name": "anomaly_score"}],
        parameters={"binary_data_output": True},
    )
    header, data = split_response(client.post("/v2/models/anomaly/infer", content=body, headers=headers))
    flag, score = header["outputs"]
    assert flag["data"] == [False] and score["parameters"] == {"binary_data_size": 4} and len(data) == 4


def test_json_only_request_gets_a_json_only_answer(client):
    response = client.post(
        "/v2/models/anomaly/infer",
        json={"inputs": [{"name": "features", "shape": [1, 8], "datatype": "FP32", "data": FLOW_NORMAL}]},
    )
    assert "inference-header-content-length" not in response.headers
    assert response.headers["content-type"] == "application/json"


@pytest.mark.parametrize(
    ("size", "data", "header_length", "message"),
    [
        (32, b"\0" * 31, None, "runs past the end"),
        (32, b"\0" * 33, None, "no input claims"),
        (28, b"\0" * 28, None, "need 32 bytes"),
        (32, b"\0" * 32, "nope", "Inference-Header-Content-Length"),
        (32, b"\0" * 32, "100000", "Inference-Header-Content-Length"),
        (-1, b"", None, "binary_data_size must be"),
    ],
)
def test_malformed_binary_requests_are_400(client, size, data, header_length, message):
    body, headers = binary_request(
        [{"name": "features", "shape": [1, 8], "datatype": "FP32", "parameters": {"binary_data_size": size}}],
        data,
    )
    if header_length is not None:
        headers["Inference-Header-Content-Length"] = header_length
    response = client.post("/v2/models/anomaly/infer", content=body, headers=headers)
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]
    assert client.get("/v2/health/ready").status_code == 200


def test_bytes_elements_are_length_prefixed():
    spec = {"text": TensorSpec("text", "t:0", "DT_STRING", np.dtype(object), (-1,))}
    raw = b"".join(struct.pack("<I", len(s)) + s for s in (b"ab", b"", b"\xff\x00c"))
    entry = {"name": "text", "shape": [3], "datatype": "BYTES", "parameters": {"binary_data_size": len(raw)}}
    _, array = v2.decode_input(entry, spec, v2.BinaryData(memoryview(raw)))
    assert array.tolist() == [b"ab", b"", b"\xff\x00c"]
    assert v2.binary_of(array) == raw
    truncated = {**entry, "parameters": {"binary_data_size": len(raw) - 1}}
    with pytest.raises(ServingError, match="ends inside element 2"):
        v2.decode_input(truncated, spec, v2.BinaryData(memoryview(raw[:-1])))
