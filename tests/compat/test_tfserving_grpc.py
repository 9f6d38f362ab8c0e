"""TF Serving's gRPC API as TF Serving's own tests call it, with its official stubs.

`tensorflow_serving.apis.prediction_service_pb2_grpc.PredictionServiceStub` and
`model_service_pb2_grpc.ModelServiceStub` (tensorflow-serving-api 2.21.0, the wheel TF
Serving's users install) over a real channel to the server's gRPC port. The requests are
built as tensorflow_model_server_test.py builds them (testGetModelStatus,
testGetModelMetadata, testClassify, testRegress, testMultiInference,
testPredictSavedModel through its VerifyPredictRequest, test_tf_saved_model_save,
test_tf_saved_model_save_multiple_signatures), there against `default`, here against
the same exports under their directory's name; the assertions are that test's. Then
the demo models the way a TF Serving user calls them (`tf.make_tensor_proto` in,
`tf.make_ndarray` out) and TF Serving's error codes.

RPCs covered: PredictionService.Predict (with and without output_filter, a version, a
version label), Classify, Regress (example_list and example_list_with_context),
MultiInference, GetModelMetadata; ModelService.GetModelStatus.
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import numpy as np
import pytest
import tensorflow as tf
from demo_models.anomaly import FEATURES
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

RPC_TIMEOUT = 5.0  # tensorflow_model_server_test.py's
FLOWS = np.asarray(
    [[1.2, 20000, 2000, 30, 20, 1, 0.05, 0], [0.1, 60, 3000, 1, 50, 200, 0.95, 40]], dtype=np.float32
)


@pytest.fixture(scope="module")
def channel(compat_server) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(compat_server.grpc_target) as opened:
        grpc.channel_ready_future(opened).result(timeout=30)
        yield opened


@pytest.fixture(scope="module")
def stub(channel) -> prediction_service_pb2_grpc.PredictionServiceStub:
    return prediction_service_pb2_grpc.PredictionServiceStub(channel)


def verify_model_spec(model_spec, name: str, signature_name: str, version: int) -> None:
    """tensorflow_model_server_test_base.py _VerifyModelSpec."""
    assert model_spec.name == name
    assert model_spec.signature_name == signature_name
    assert model_spec.version.value == version


def verify_predict_request(
    stub,
    model_name: str,
    expected_output: float,
    expected_version: int,
    specify_output: bool = True,
    signature_name: str = "serving_default",
) -> None:
    """tensorflow_model_server_test_base.py VerifyPredictRequest, as it builds and checks the call."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature_name
    request.inputs["x"].dtype = types_pb2.DT_FLOAT
    request.inputs["x"].float_val.append(2.0)
    dim = request.inputs["x"].tensor_shape.dim.add()
    dim.size = 1
    if specify_output:
        request.output_filter.append("y")
    result = stub.Predict(request, RPC_TIMEOUT)
    assert "y" in result.outputs
    assert result.outputs["y"].dtype == types_pb2.DT_FLOAT
    assert len(result.outputs["y"].float_val) == 1
    assert result.outputs["y"].float_val[0] == expected_output
    verify_model_spec(result.model_spec, model_name, signature_name, expected_version)


# ---------------------------------------------------------------------------- tensorflow_model_server_test.py


def test_get_model_status(channel):  # testGetModelStatus
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "half_plus_two"
    stub = model_service_pb2_grpc.ModelServiceStub(channel)
    result = stub.GetModelStatus(request, RPC_TIMEOUT)
    assert len(result.model_version_status) == 1
    assert result.model_version_status[0].version == 123
    assert result.model_version_status[0].status.error_code == 0  # OK
    assert result.model_version_status[0].state == get_model_status_pb2.ModelVersionStatus.AVAILABLE


def test_get_model_metadata(stub):  # testGetModelMetadata
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = "half_plus_two"
    request.metadata_field.append("signature_def")
    result = stub.GetModelMetadata(request, RPC_TIMEOUT)
    assert result.model_spec.name == "half_plus_two"
    assert result.model_spec.version.value == 123
    assert len(result.metadata) == 1
    assert "signature_def" in result.metadata
    signature_defs = get_model_metadata_pb2.SignatureDefMap()
    assert result.metadata["signature_def"].Unpack(signature_defs)
    assert {"serving_default", "classify_x_to_y", "regress_x_to_y"} <= set(signature_defs.signature_def)
    assert signature_defs.signature_def["serving_default"].inputs["x"].dtype == types_pb2.DT_FLOAT


def test_classify(stub):  # testClassify
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = "half_plus_two"
    request.model_spec.signature_name = "classify_x_to_y"
    example = request.input.example_list.examples.add()
    example.features.feature["x"].float_list.value.extend([2.0])
    result = stub.Classify(request, RPC_TIMEOUT)
    assert len(result.result.classifications) == 1
    assert len(result.result.classifications[0].classes) == 1
    assert result.result.classifications[0].classes[0].score == 3.0
    verify_model_spec(result.model_spec, "half_plus_two", "classify_x_to_y", 123)


def test_regress(stub):  # testRegress
    request = regression_pb2.RegressionRequest()
    request.model_spec.name = "half_plus_two"
    request.model_spec.signature_name = "regress_x_to_y"
    example = request.input.example_list.examples.add()
    example.features.feature["x"].float_list.value.extend([2.0])
    result = stub.Regress(request, RPC_TIMEOUT)
    assert len(result.result.regressions) == 1
    assert result.result.regressions[0].value == 3.0
    verify_model_spec(result.model_spec, "half_plus_two", "regress_x_to_y", 123)


def test_multi_inference(stub):  # testMultiInference
    request = inference_pb2.MultiInferenceRequest()
    request.tasks.add().model_spec.name = "half_plus_two"
    request.tasks[0].model_spec.signature_name = "regress_x_to_y"
    request.tasks[0].method_name = "tensorflow/serving/regress"
    request.tasks.add().model_spec.name = "half_plus_two"
    request.tasks[1].model_spec.signature_name = "classify_x_to_y"
    request.tasks[1].method_name = "tensorflow/serving/classify"
    example = request.input.example_list.examples.add()
    example.features.feature["x"].float_list.value.extend([2.0])
    result = stub.MultiInference(request, RPC_TIMEOUT)
    assert len(result.results) == 2
    assert result.results[0].regression_result.regressions[0].value == 3.0
    assert result.results[1].classification_result.classifications[0].classes[0].score == 3.0
    for i in range(2):
        verify_model_spec(
            result.results[i].model_spec, "half_plus_two", request.tasks[i].model_spec.signature_name, 123
        )


def test_predict_saved_model(stub):  # testPredictSavedModel -> VerifyPredictRequest(output_filter y)
    verify_predict_request(stub, "half_plus_two", expected_output=3.0, expected_version=123)


def test_tf_saved_model_save(stub):  # test_tf_saved_model_save: v1 * v2 * x, no output filter
    verify_predict_request(stub, "tf2_unknown_rank", 12.0, 123, specify_output=False)


def test_tf_saved_model_save_multiple_signatures(stub):
    verify_predict_request(stub, "tf2_two_signatures", 2.0, 123, signature_name="custom_signature_key")
    verify_predict_request(stub, "tf2_two_signatures", 1.0, 123)


# ---------------------------------------------------------------------- the demo models, as users call them


def predict_anomaly(stub, spec: dict, output_filter: tuple[str, ...] = ()) -> tuple[dict, object]:
    request = predict_pb2.PredictRequest(model_spec=spec, output_filter=output_filter)
    request.inputs["features"].CopyFrom(tf.make_tensor_proto(FLOWS))
    response, call = stub.Predict.with_call(request, timeout=RPC_TIMEOUT)
    return {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}, (response, call)


def test_predict_anomaly_matches_rest(stub, compat_server):
    outputs, (response, call) = predict_anomaly(stub, {"name": "anomaly"})
    with compat_server.client() as client:
        rest = client.post("/v1/models/anomaly:predict", json={"inputs": FLOWS.tolist()}).json()["outputs"]
    assert outputs["anomaly_score"].dtype == np.float32
    np.testing.assert_allclose(outputs["anomaly_score"], rest["anomaly_score"], rtol=1e-6)
    assert outputs["is_anomaly"].tolist() == rest["is_anomaly"] == [False, True]
    verify_model_spec(response.model_spec, "anomaly", "serving_default", 2)
    trailers = dict(call.trailing_metadata())
    assert trailers["x-model-version"] == "2" and trailers["x-served-by"] == "unit-compat"


def test_predict_output_filter_version_and_label(stub):
    outputs, (response, _) = predict_anomaly(
        stub, {"name": "anomaly", "version": {"value": 2}}, ("is_anomaly",)
    )
    assert set(outputs) == {"is_anomaly"} and response.model_spec.version.value == 2
    with pytest.raises(grpc.RpcError) as refused:
        predict_anomaly(stub, {"name": "anomaly", "version_label": "stable"})
    # No label is configured: server_core.cc answers InvalidArgument for an unknown label.
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "Unrecognized servable version label: stable" in refused.value.details()


def anomaly_examples(input_message) -> None:
    for flow in FLOWS:
        example = input_message.example_list.examples.add()
        for name, value in zip(FEATURES, flow.tolist(), strict=True):
            example.features.feature[name].float_list.value.append(value)


def test_regress_and_classify_the_demo_model_like_rest(stub, compat_server):
    regress = regression_pb2.RegressionRequest(model_spec={"name": "anomaly", "signature_name": "regress"})
    anomaly_examples(regress.input)
    classify = classification_pb2.ClassificationRequest(
        model_spec={"name": "anomaly", "signature_name": "classify"}
    )
    anomaly_examples(classify.input)
    regressions = stub.Regress(regress, RPC_TIMEOUT).result.regressions
    classifications = stub.Classify(classify, RPC_TIMEOUT).result.classifications
    examples = [dict(zip(FEATURES, map(float, flow), strict=True)) for flow in FLOWS.tolist()]
    with compat_server.client() as client:
        rest_regress = client.post(
            "/v1/models/anomaly:regress", json={"signature_name": "regress", "examples": examples}
        ).json()["results"]
        rest_classify = client.post(
            "/v1/models/anomaly:classify", json={"signature_name": "classify", "examples": examples}
        ).json()["results"]
    assert [r.value for r in regressions] == pytest.approx(rest_regress, rel=1e-6)
    got = [[[c.label, c.score] for c in row.classes] for row in classifications]
    assert [[label for label, _ in row] for row in got] == [
        [label for label, _ in row] for row in rest_classify
    ]
    np.testing.assert_allclose(
        [[score for _, score in row] for row in got],
        [[score for _, score in row] for row in rest_classify],
        rtol=1e-6,
    )


def test_example_list_with_context_merges_the_context_into_each_example(stub):
    request = regression_pb2.RegressionRequest(
        model_spec={"name": "half_plus_two", "signature_name": "regress_x_to_y"}
    )
    listed = request.input.example_list_with_context
    listed.context.features.feature["x"].float_list.value.append(2.0)
    listed.examples.add()  # x from the context
    listed.examples.add().features.feature["x"].float_list.value.append(4.0)  # its own x wins (merge)
    assert [r.value for r in stub.Regress(request, RPC_TIMEOUT).result.regressions] == [3.0, 4.0]


# ---------------------------------------------------------------------------- TF Serving's error codes


@pytest.mark.parametrize(
    ("mutate", "code", "text"),
    [
        (
            lambda r: r.model_spec.__setattr__("name", "nope"),
            grpc.StatusCode.NOT_FOUND,
            "Servable not found for request: Latest(nope)",
        ),
        (
            lambda r: r.model_spec.version.__setattr__("value", 9),
            grpc.StatusCode.NOT_FOUND,
            "Servable not found for request: Specific(anomaly, 9)",
        ),
        (
            lambda r: r.inputs["features"].__setattr__("dtype", types_pb2.DT_DOUBLE),
            grpc.StatusCode.INVALID_ARGUMENT,
            "expects DT_FLOAT, got DT_DOUBLE",
        ),
        (
            lambda r: r.inputs["extra"].CopyFrom(tf.make_tensor_proto([1.0])),
            grpc.StatusCode.INVALID_ARGUMENT,
            "unknown input(s) extra",
        ),
        (
            lambda r: r.output_filter.append("nope"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "output tensor alias not found in signature: nope",
        ),
        (
            lambda r: r.model_spec.__setattr__("signature_name", "nope"),
            grpc.StatusCode.INVALID_ARGUMENT,
            'Serving signature name: "nope" not found',
        ),
    ],
    ids=[
        "unknown-model",
        "unknown-version",
        "wrong-dtype",
        "extra-input",
        "unknown-output",
        "unknown-signature",
    ],
)
def test_errors_carry_tf_servings_codes(stub, mutate, code, text):
    request = predict_pb2.PredictRequest(model_spec={"name": "anomaly"})
    request.inputs["features"].CopyFrom(tf.make_tensor_proto(FLOWS))
    mutate(request)
    with pytest.raises(grpc.RpcError) as refused:
        stub.Predict(request, RPC_TIMEOUT)
    assert refused.value.code() == code
    assert text in refused.value.details()


def test_a_wrong_shape_is_invalid_argument(stub):
    request = predict_pb2.PredictRequest(model_spec={"name": "anomaly"})
    request.inputs["features"].CopyFrom(tf.make_tensor_proto(np.zeros((2, 3), np.float32)))
    with pytest.raises(grpc.RpcError) as refused:
        stub.Predict(request, RPC_TIMEOUT)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "expects shape [-1, 8], got [2, 3]" in refused.value.details()


def test_a_scalar_broadcast_tensor_proto_is_read_as_tensorflow_reads_it(stub):
    # tf.make_tensor_proto(0.5, shape=[1, 8]) sends one float_val for 8 elements: TF repeats it.
    request = predict_pb2.PredictRequest(model_spec={"name": "anomaly"})
    request.inputs["features"].CopyFrom(tf.make_tensor_proto(0.5, dtype=tf.float32, shape=[1, 8]))
    assert len(request.inputs["features"].float_val) == 1
    response = stub.Predict(request, RPC_TIMEOUT)
    full = predict_pb2.PredictRequest(model_spec={"name": "anomaly"})
    full.inputs["features"].CopyFrom(tf.make_tensor_proto(np.full((1, 8), 0.5, np.float32)))
    assert tf.make_ndarray(response.outputs["anomaly_score"]) == tf.make_ndarray(
        stub.Predict(full, RPC_TIMEOUT).outputs["anomaly_score"]
    )
