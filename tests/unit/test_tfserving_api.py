"""TF Serving REST API over real HTTP against the demo models."""

from __future__ import annotations

import pytest

from unit.conftest import FLOW_NORMAL, FLOW_PORT_SCAN

EXAMPLE_NORMAL = dict(
    zip(
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
    )
)


def test_model_status_has_tf_serving_shape(client):
    response = client.get("/v1/models/anomaly")
    assert response.status_code == 200
    assert response.json() == {
        "model_version_status": [
            {"version": "2", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
        ]
    }
    assert client.get("/v1/models/anomaly/versions/2").json() == response.json()
    # No implicit labels (TF Serving has none): a label exists only in the model config.
    unlabelled = client.get("/v1/models/anomaly/labels/stable")
    assert unlabelled.status_code == 400
    assert unlabelled.json() == {"error": "Unrecognized servable version label: stable"}


def test_metadata_has_tf_serving_shape(client):
    response = client.get("/v1/models/anomaly/metadata")
    assert response.status_code == 200
    body = response.json()
    assert body["model_spec"] == {"name": "anomaly", "signature_name": "", "version": "2"}
    signature_defs = body["metadata"]["signature_def"]["signature_def"]
    assert {"serving_default", "regress", "classify"} <= set(signature_defs)
    default = signature_defs["serving_default"]
    assert default["method_name"] == "tensorflow/serving/predict"
    assert default["inputs"]["features"] == {
        "dtype": "DT_FLOAT",
        "tensor_shape": {
            "dim": [{"size": "-1", "name": ""}, {"size": "8", "name": ""}],
            "unknown_rank": False,
        },
        "name": "serving_default_features:0",
    }
    assert default["outputs"]["anomaly_score"]["dtype"] == "DT_FLOAT"
    assert default["outputs"]["is_anomaly"]["dtype"] == "DT_BOOL"
    assert signature_defs["regress"]["inputs"]["inputs"]["dtype"] == "DT_STRING"
    assert client.get("/v1/models/anomaly/versions/2/metadata").json() == body


def test_predict_row_format_returns_one_object_per_instance(client):
    response = client.post("/v1/models/anomaly:predict", json={"instances": [FLOW_NORMAL, FLOW_PORT_SCAN]})
    assert response.status_code == 200
    predictions = response.json()["predictions"]
    assert [set(p) for p in predictions] == [{"anomaly_score", "is_anomaly"}] * 2
    normal, scan = predictions
    assert 0 <= normal["anomaly_score"] < 0.5 and normal["is_anomaly"] is False
    assert scan["anomaly_score"] > 0.9 and scan["is_anomaly"] is True
    assert response.headers["x-model-version"] == "2"
    assert response.headers["x-served-by"] == "unit-main"
    assert response.headers["content-type"] == "application/json"


def test_predict_columnar_format_returns_named_outputs(client):
    rows = client.post("/v1/models/anomaly:predict", json={"instances": [FLOW_NORMAL, FLOW_PORT_SCAN]}).json()
    response = client.post(
        "/v1/models/anomaly:predict", json={"inputs": {"features": [FLOW_NORMAL, FLOW_PORT_SCAN]}}
    )
    assert response.status_code == 200
    outputs = response.json()["outputs"]
    assert outputs["anomaly_score"] == [p["anomaly_score"] for p in rows["predictions"]]
    assert outputs["is_anomaly"] == [False, True]
    unnamed = client.post("/v1/models/anomaly:predict", json={"inputs": [FLOW_NORMAL, FLOW_PORT_SCAN]})
    assert unnamed.json() == response.json()


def test_named_instances_and_explicit_version(client):
    response = client.post(
        "/v1/models/anomaly/versions/2:predict",
        json={"signature_name": "serving_default", "instances": [{"features": FLOW_NORMAL}]},
    )
    assert response.status_code == 200
    latest = client.post("/v1/models/anomaly:predict", json={"instances": [{"features": FLOW_NORMAL}]})
    assert latest.json() == response.json()


def test_single_output_signature_returns_plain_list(client):
    response = client.post("/v1/models/heavy:predict", json={"instances": [[0.01] * 512, [0.02] * 512]})
    assert response.status_code == 200
    predictions = response.json()["predictions"]
    assert len(predictions) == 2 and all(len(row) == 16 for row in predictions)
    assert all(isinstance(value, float) for value in predictions[0])
    columnar = client.post("/v1/models/heavy:predict", json={"inputs": [[0.01] * 512]}).json()["outputs"]
    # Batch size changes the matmul kernel, so compare with a float32 tolerance.
    assert columnar[0] == pytest.approx(predictions[0], rel=1e-4, abs=1e-6)
    assert response.headers["x-model-version"] == "1"


def test_regress_on_the_tf_example_signature(client):
    predicted = client.post("/v1/models/anomaly:predict", json={"instances": [FLOW_NORMAL]}).json()
    response = client.post(
        "/v1/models/anomaly:regress", json={"signature_name": "regress", "examples": [EXAMPLE_NORMAL]}
    )
    assert response.status_code == 200
    assert response.json() == {"results": [predicted["predictions"][0]["anomaly_score"]]}
    assert response.headers["x-model-version"] == "2"


def test_regress_with_context_features(client):
    context = {name: value for name, value in EXAMPLE_NORMAL.items() if name != "bytes_in"}
    response = client.post(
        "/v1/models/anomaly:regress",
        json={
            "signature_name": "regress",
            "context": context,
            "examples": [{"bytes_in": 20000.0}, {"bytes_in": 1e9}],
        },
    )
    assert response.status_code == 200
    low, high = response.json()["results"]
    assert high > low


def test_classify_returns_label_score_pairs(client):
    response = client.post(
        "/v1/models/anomaly:classify", json={"signature_name": "classify", "examples": [EXAMPLE_NORMAL]}
    )
    assert response.status_code == 200
    [[normal, anomalous]] = response.json()["results"]
    assert normal[0] == "normal" and anomalous[0] == "anomalous"
    assert normal[1] == pytest.approx(1 - anomalous[1], abs=1e-6)


def test_classify_and_regress_refused_on_a_predict_signature(client):
    for verb in ("classify", "regress"):
        response = client.post(f"/v1/models/anomaly:{verb}", json={"examples": [EXAMPLE_NORMAL]})
        assert response.status_code == 400
        assert "cannot" in response.json()["error"] and "DT_STRING" in response.json()["error"]


def test_regress_type_mismatch_is_a_400_naming_the_feature(client):
    example = dict(EXAMPLE_NORMAL, failed_connections=0)  # an int -> int64_list, the model wants float
    response = client.post(
        "/v1/models/anomaly:regress", json={"signature_name": "regress", "examples": [example]}
    )
    assert response.status_code == 400
    assert "failed_connections" in response.json()["error"]


def test_pinned_version_one_answers_differently(client, v1_unbatched_server):
    with v1_unbatched_server.client() as v1:
        status = v1.get("/v1/models/anomaly").json()["model_version_status"]
        assert [s["version"] for s in status] == ["1"]
        one = v1.post("/v1/models/anomaly:predict", json={"instances": [FLOW_NORMAL, FLOW_PORT_SCAN]})
    two = client.post("/v1/models/anomaly:predict", json={"instances": [FLOW_NORMAL, FLOW_PORT_SCAN]})
    assert one.headers["x-model-version"] == "1" and two.headers["x-model-version"] == "2"
    scores_one = [p["anomaly_score"] for p in one.json()["predictions"]]
    scores_two = [p["anomaly_score"] for p in two.json()["predictions"]]
    assert abs(scores_one[0] - scores_two[0]) > 0.01


def test_regress_integer_beyond_int64_is_a_400_naming_the_feature(client):
    # protobuf raised "ValueError: Value out of range" here, answered as a 500.
    body = b'{"signature_name": "regress", "examples": [{"bytes_in": 18446744073709551615}]}'
    response = client.post("/v1/models/anomaly:regress", content=body)
    assert response.status_code == 400, response.text
    assert "bytes_in" in response.json()["error"] and "int64" in response.json()["error"]


def test_nan_and_infinity_in_and_out(client):
    body = b'{"inputs": {"features": [[NaN, Infinity, 1, 1, 1, 1, 1, 1]]}}'
    response = client.post("/v1/models/anomaly:predict", content=body)
    assert response.status_code == 200, response.text
    assert response.content == b'{"outputs":{"anomaly_score":[NaN],"is_anomaly":[false]}}'


def test_integer_features_into_a_float_input_are_accepted_with_rounding(client):
    rounded = client.post("/v1/models/anomaly:predict", json={"instances": [[1435774380] * 8]})
    exact = client.post("/v1/models/anomaly:predict", json={"instances": [[1435774336.0] * 8]})
    assert rounded.status_code == 200, rounded.text
    assert rounded.json() == exact.json()
