"""TF Serving's REST API as TF Serving's own docs and tests exercise it, on models exported as
its test data is (compat/saved_models.py).

Three sources, each case naming where it comes from:
- documented examples (README.md quickstart, g3doc/api_rest.md "Example"), replayed byte
  for byte: the same method, path and body, with the headers `curl -d` sends;
- tensorflow_serving/model_servers/tensorflow_model_server_test.py, its REST tests (there
  the model is served as `default`; here under its directory's name) and its TF2 exports;
- tensorflow_serving/util/json_tensor_test.cc, the JSON conversions, sent over HTTP.

The expected answers are TF Serving's, compared as JSON values (TF Serving pretty-prints).
"""

from __future__ import annotations

import json
import math
import socket

import pytest
from unit.server_process import ServerProcess


def curl_d(
    server: ServerProcess, method: str, path: str, body: bytes | None = None
) -> tuple[int, dict, bytes]:
    """The request `curl [-d BODY] [-X METHOD] URL` makes, byte for byte, over a plain socket."""
    head = f"{method} {path} HTTP/1.1\r\nHost: localhost:{server.port}\r\n"
    head += "User-Agent: curl/7.88.1\r\nAccept: */*\r\n"
    if body is not None:
        head += f"Content-Length: {len(body)}\r\nContent-Type: application/x-www-form-urlencoded\r\n"
    request = head.encode() + b"\r\n" + (body or b"")
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(request)
        received = b""
        while b"\r\n\r\n" not in received:
            received += sock.recv(65536)
        head_bytes, _, rest = received.partition(b"\r\n\r\n")
        lines = head_bytes.decode().split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        length = int(headers["content-length"])
        while len(rest) < length:
            rest += sock.recv(65536)
    return status, headers, rest


def as_json(body: bytes) -> object:
    return json.loads(body)  # the standard library reads NaN / Infinity, as TF Serving's docs advise


# ---------------------------------------------------------------------------- documented examples


def test_readme_quickstart_half_plus_two(compat_server):
    # README.md / g3doc/docker.md: curl -d '{"instances": [1.0, 2.0, 5.0]}' -X POST
    #   http://localhost:8501/v1/models/half_plus_two:predict
    # Returns => { "predictions": [2.5, 3.0, 4.5] }
    status, headers, body = curl_d(
        compat_server, "POST", "/v1/models/half_plus_two:predict", b'{"instances": [1.0, 2.0, 5.0]}'
    )
    assert status == 200, body
    assert as_json(body) == {"predictions": [2.5, 3.0, 4.5]}
    assert headers["content-type"] == "application/json"


def test_api_rest_example_model_status(compat_server):
    # api_rest.md: curl http://localhost:8501/v1/models/saved_model_half_plus_three
    status, _, body = curl_d(compat_server, "GET", "/v1/models/saved_model_half_plus_three")
    assert status == 200
    assert as_json(body) == {
        "model_version_status": [
            {"version": "123", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
        ]
    }


def test_api_rest_example_predict(compat_server):
    # api_rest.md: curl -d '{"instances": [1.0,2.0,5.0]}' -X POST .../saved_model_half_plus_three:predict
    status, _, body = curl_d(
        compat_server,
        "POST",
        "/v1/models/saved_model_half_plus_three:predict",
        b'{"instances": [1.0,2.0,5.0]}',
    )
    assert status == 200, body
    assert as_json(body) == {"predictions": [3.5, 4.0, 5.5]}


def test_api_rest_example_regress(compat_server):
    # api_rest.md: curl -d '{"signature_name": "tensorflow/serving/regress",
    #   "examples": [{"x": 1.0}, {"x": 2.0}]}' -X POST .../saved_model_half_plus_three:regress
    #   => { "results": [3.5, 4.0] }
    body = b'{"signature_name": "tensorflow/serving/regress", "examples": [{"x": 1.0}, {"x": 2.0}]}'
    status, _, answer = curl_d(compat_server, "POST", "/v1/models/saved_model_half_plus_three:regress", body)
    assert status == 200, answer
    assert as_json(answer) == {"results": [3.5, 4.0]}


def test_api_rest_example_unknown_model_is_404(compat_server):
    # api_rest.md: curl -i -d '{"instances": [1.0,5.0]}' -X POST http://localhost:8501/v1/models/half:predict
    #   HTTP/1.1 404 Not Found ... { "error": "Servable not found for request: Latest(half)" }
    status, headers, body = curl_d(
        compat_server, "POST", "/v1/models/half:predict", b'{"instances": [1.0,5.0]}'
    )
    assert status == 404
    assert headers["content-type"] == "application/json"
    assert as_json(body) == {"error": "Servable not found for request: Latest(half)"}


# ---------------------------------------------------------------------------- tensorflow_model_server_test.py


def test_predict_rest(compat_server):  # testPredictREST
    with compat_server.client() as client:
        response = client.post("/v1/models/half_plus_two:predict", json={"instances": [2.0, 3.0, 4.0]})
    assert response.json() == {"predictions": [3.0, 3.5, 4.0]}


def test_predict_columnar_rest(compat_server):  # testPredictColumnarREST
    with compat_server.client() as client:
        response = client.post("/v1/models/half_plus_two:predict", json={"inputs": [2.0, 3.0, 4.0]})
    assert response.json() == {"outputs": [3.0, 3.5, 4.0]}


def test_classify_rest(compat_server):  # testClassifyREST
    with compat_server.client() as client:
        response = client.post(
            "/v1/models/half_plus_two:classify",
            json={"signature_name": "classify_x_to_y", "examples": [{"x": 2.0}]},
        )
    assert response.json() == {"results": [[["", 3.0]]]}


def test_regress_rest(compat_server):  # testRegressREST
    with compat_server.client() as client:
        response = client.post(
            "/v1/models/half_plus_two:regress",
            json={"signature_name": "regress_x_to_y", "examples": [{"x": 2.0}]},
        )
    assert response.json() == {"results": [3.0]}


def test_get_status_rest(compat_server):  # testGetStatusREST: the version directory is 00000123
    with compat_server.client() as client:
        response = client.get("/v1/models/half_plus_two")
        pinned = client.get("/v1/models/half_plus_two/versions/123")
    expected = {
        "model_version_status": [
            {"version": "123", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
        ]
    }
    assert response.json() == expected and pinned.json() == expected
    assert response.headers["x-model-version"] == "123"


def test_get_model_metadata_rest(
    compat_server,
):  # testGetModelMetadataREST (half_plus_two_model_metadata.json's shape)
    with compat_server.client() as client:
        metadata = client.get("/v1/models/half_plus_two/metadata").json()
    assert metadata["model_spec"] == {"name": "half_plus_two", "signature_name": "", "version": "123"}
    signature_defs = metadata["metadata"]["signature_def"]["signature_def"]
    assert set(signature_defs) == {
        "serving_default",
        "regress_x_to_y",
        "regress_x_to_y2",
        "regress_x2_to_y3",
        "classify_x_to_y",
    }
    column = {"dim": [{"size": "-1", "name": ""}, {"size": "1", "name": ""}], "unknown_rank": False}
    assert signature_defs["serving_default"] == {
        "inputs": {"x": {"dtype": "DT_FLOAT", "tensor_shape": column, "name": "x:0"}},
        "outputs": {"y": {"dtype": "DT_FLOAT", "tensor_shape": column, "name": "y:0"}},
        "method_name": "tensorflow/serving/predict",
        "defaults": {},
    }
    assert signature_defs["regress_x2_to_y3"]["method_name"] == "tensorflow/serving/regress"
    tf_example = signature_defs["classify_x_to_y"]["inputs"]["inputs"]
    assert tf_example["dtype"] == "DT_STRING" and tf_example["tensor_shape"]["unknown_rank"] is True


def test_tf_saved_model_save(compat_server):  # test_tf_saved_model_save: v1 * v2 * x, x of unknown rank
    with compat_server.client() as client:
        response = client.post("/v1/models/tf2_unknown_rank:predict", json={"instances": [2.0]})
        status = client.get("/v1/models/tf2_unknown_rank").json()
    assert response.json() == {"predictions": [12.0]}
    assert status["model_version_status"][0]["version"] == "123"


def test_tf_saved_model_save_multiple_signatures(compat_server):  # test_..._multiple_signatures
    with compat_server.client() as client:
        custom = client.post(
            "/v1/models/tf2_two_signatures:predict",
            json={"signature_name": "custom_signature_key", "inputs": [2.0]},
        )
        default = client.post("/v1/models/tf2_two_signatures:predict", json={"inputs": [2.0]})
        rows = client.post("/v1/models/tf2_two_signatures:predict", json={"instances": [2.0]})
    assert custom.json() == {"outputs": 2.0}
    assert default.json() == {"outputs": 1.0}
    # A scalar output has no batch dimension: TF Serving's row writer refuses it too.
    assert rows.status_code == 400 and "columnar" in rows.json()["error"]


# ---------------------------------------------------------------------------- json_tensor_test.cc


def predict_half_plus_two(server: ServerProcess, body: bytes) -> tuple[int, object]:
    with server.client() as client:
        response = client.post("/v1/models/half_plus_two:predict", content=body)
    return response.status_code, as_json(response.content)


def test_mixed_input_for_float_tensor(compat_server):  # MixedInputForFloatTensor
    status, answer = predict_half_plus_two(compat_server, b'{"instances": [1, 2.0, 3, 4, 5.003, 0.007, 0.0]}')
    assert status == 200
    assert answer["predictions"] == pytest.approx([2.5, 3.0, 3.5, 4.0, 4.5015, 2.0035, 2.0], rel=1e-6)


def test_float_tensor_with_precision_loss(compat_server):  # FloatTensorWithPrecisionLoss (b/181409782)
    whole = predict_half_plus_two(compat_server, b'{"instances": [1435774380]}')
    decimal = predict_half_plus_two(compat_server, b'{"instances": [1435774380.0]}')
    assert whole == decimal == (200, {"predictions": [0.5 * 1435774336 + 2]})


def test_float_tensor_that_exceeds_max_returns_inf(compat_server):  # FloatTensorThatExceedsMaxReturnsInf
    status, answer = predict_half_plus_two(
        compat_server, b'{"instances": [1.7976931348623157e+308, -1.7976931348623157e+308]}'
    )
    assert status == 200 and answer == {"predictions": [math.inf, -math.inf]}


def test_float_tensor_that_exceeds_min_returns_zero(compat_server):  # FloatTensorThatExceedsMinReturnsZero
    status, answer = predict_half_plus_two(compat_server, b'{"instances": [2.2250738585072014e-308]}')
    assert status == 200 and answer == {"predictions": [2.0]}


def test_nan_and_infinity_in_and_out(compat_server):  # the NaN/Infinity case; api_rest.md "JSON conformance"
    with compat_server.client() as client:
        response = client.post(
            "/v1/models/half_plus_two:predict", content=b'{"inputs": [NaN, Infinity, -Infinity]}'
        )
    assert response.status_code == 200
    assert response.content == b'{"outputs":[NaN,Infinity,-Infinity]}'


def test_b64_instances_and_bytes_outputs(compat_server):  # b64 cases; "_bytes" output names
    with compat_server.client() as client:
        response = client.post(
            "/v1/models/strings:predict", json={"instances": [{"b64": "aGVsbG8="}, {"b64": "d29ybGQ="}]}
        )
        plain = client.post("/v1/models/strings:predict", json={"instances": ["foo", "bar", "baz"]})
    assert response.json() == {
        "predictions": [
            {"echo_bytes": {"b64": "aGVsbG8="}, "length": 5},
            {"echo_bytes": {"b64": "d29ybGQ="}, "length": 5},
        ]
    }
    assert [p["length"] for p in plain.json()["predictions"]] == [3, 3, 3]


@pytest.mark.parametrize(
    ("body", "text"),
    [
        (b'{"signature_name": 5, "instances": [1.0]}', "'signature_name' must be a string"),
        (b'{"instances": []}', "non-empty"),
        (b'{"instances": [1.0], "inputs": [1.0]}', "both"),
        (b'{"instances": ["a"]}', "strings"),
        (b'{"instances": [true]}', "booleans"),
        (b"", "empty"),
    ],
)
def test_malformed_predict_requests_are_400(compat_server, body, text):
    status, answer = predict_half_plus_two(compat_server, body)
    assert status == 400 and text in answer["error"]


# ---------------------------------------------------------------------------- TF1 loading


def test_a_signature_the_runtime_cannot_call_leaves_the_others_serving(compat_server):
    with compat_server.client() as client:
        good = client.post("/v1/models/half_plus_two_partly_broken:predict", json={"instances": [1.0]})
        missing = client.post(
            "/v1/models/half_plus_two_partly_broken:predict",
            json={"signature_name": "missing_tensor", "instances": [1.0]},
        )
        resource = client.post(
            "/v1/models/half_plus_two_partly_broken:predict",
            json={"signature_name": "resource_input", "instances": [1.0]},
        )
        metadata = client.get("/v1/models/half_plus_two_partly_broken/metadata").json()
    assert good.json() == {"predictions": [2.5]}
    for response, name in ((missing, "missing_tensor"), (resource, "resource_input")):
        assert response.status_code == 400
        assert f'"{name}"' in response.json()["error"] and "cannot be served" in response.json()["error"]
    assert {"missing_tensor", "resource_input"} <= set(metadata["metadata"]["signature_def"]["signature_def"])
    log = compat_server.log()
    assert "signature missing_tensor cannot be served" in log and "no_such_tensor" in log
    assert "signature resource_input cannot be served" in log
