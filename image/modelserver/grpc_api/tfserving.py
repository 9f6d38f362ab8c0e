"""TF Serving's gRPC APIs, with its own generated protos (tensorflow-serving-api).

    tensorflow.serving.PredictionService   Predict (with output_filter), Classify, Regress,
                                           MultiInference, GetModelMetadata
    tensorflow.serving.ModelService        GetModelStatus

Read from TF Serving's server (servables/tensorflow/predict_util.cc, classifier.cc,
regressor.cc, multi_inference.cc, util.cc, get_model_metadata_impl.cc) and answered the
way it answers: response `model_spec` with the name, the version that answered and (but
for metadata) the signature name, `serving_default` when the request left it empty;
Classify/Regress/MultiInference read `input.example_list` or
`input.example_list_with_context` (each example's bytes after the context's, which
protobuf merges, as TF Serving builds them) into the signature's one DT_STRING input;
MultiInference runs classify/regress tasks of one model over the same examples;
GetModelMetadata answers `signature_def` only. Model lookup, signatures, the
classify/regress checks and results, and model status are protocols/tfserving.py's, the
same code as the REST API's; tensors are protocols/tensor_proto.py's.

Importing this module imports TensorFlow (the protos live in its package): the server
does that off the event loop (grpc_api.server).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import numpy as np
from google.protobuf import json_format
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    predict_pb2,
    regression_pb2,
)

from modelserver import errors
from modelserver.grpc_api.calls import MethodSpec, Outcome, parse
from modelserver.inference import ModelService
from modelserver.metrics import UNKNOWN_MODEL
from modelserver.protocols import tensor_proto, tfserving
from modelserver.runtime import DEFAULT_SIGNATURE, LoadedModel, Signature

PREDICTION_SERVICE = "tensorflow.serving.PredictionService"
MODEL_SERVICE = "tensorflow.serving.ModelService"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"
SIGNATURE_DEF_FIELD = "signature_def"


def requested_version(spec: Any) -> tuple[str | None, str | None]:
    """ModelSpec's version choice: (version, None), (None, label) or (None, None) for the newest."""
    choice = spec.WhichOneof("version_choice")
    if choice == "version":
        return str(spec.version.value), None
    if choice == "version_label":
        return None, spec.version_label
    return None, None


def response_spec(target: Any, name: str, version: int, signature_name: str | None) -> None:
    """TF Serving's MakeModelSpec: an empty signature name answers as serving_default."""
    target.name = name
    target.version.value = version
    if signature_name is not None:
        target.signature_name = signature_name or DEFAULT_SIGNATURE


def serialized_examples(input_message: Any) -> np.ndarray:
    """The request's tf.Examples, serialized, one per row (util.cc InputToSerializedExampleTensor)."""
    kind = input_message.WhichOneof("kind")
    if kind == "example_list":
        examples = [example.SerializeToString() for example in input_message.example_list.examples]
    elif kind == "example_list_with_context":
        listed = input_message.example_list_with_context
        context = listed.context.SerializeToString()
        examples = [context + example.SerializeToString() for example in listed.examples]
    else:
        examples = []
    if not examples:
        raise errors.invalid_argument("Input is empty.")
    serialized = np.empty(len(examples), dtype=object)
    serialized[:] = examples
    return serialized


def label_text(label: Any) -> str:
    return label.decode("utf-8", "replace") if isinstance(label, bytes) else str(label)


def classification_result(target: Any, outputs: dict[str, np.ndarray], count: int) -> None:
    classes, scores, width = tfserving.classification(outputs, count)
    for row in range(count):
        classifications = target.classifications.add()
        for column in range(width):
            entry = classifications.classes.add()
            if classes is not None:
                entry.label = label_text(classes[row, column])
            if scores is not None:
                entry.score = float(scores[row, column])


def regression_result(target: Any, outputs: dict[str, np.ndarray], count: int) -> None:
    for value in tfserving.regression(outputs, count).tolist():
        target.regressions.add(value=value)


class PredictionService:
    """PredictionService's and ModelService's methods over the shared model service."""

    def __init__(self, service: ModelService) -> None:
        self.service = service

    def methods(self) -> dict[str, MethodSpec]:
        prediction = f"/{PREDICTION_SERVICE}/"
        return {
            prediction + "Predict": MethodSpec(self.predict, admitted=True),
            prediction + "Classify": MethodSpec(self.classify, admitted=True),
            prediction + "Regress": MethodSpec(self.regress, admitted=True),
            prediction + "MultiInference": MethodSpec(self.multi_inference, admitted=True),
            prediction + "GetModelMetadata": MethodSpec(self.get_model_metadata, admitted=False),
            f"/{MODEL_SERVICE}/GetModelStatus": MethodSpec(self.get_model_status, admitted=False),
        }

    def resolve(self, spec: Any, outcome: Outcome) -> LoadedModel:
        outcome.model = spec.name if spec.name in self.service.registry.names else UNKNOWN_MODEL
        model = self.service.resolve(spec.name, *requested_version(spec))
        outcome.version = model.version_text
        return model

    def signature(self, model: LoadedModel, spec: Any) -> Signature:
        return self.service.signature(model, spec.signature_name or None)

    async def predict(self, raw: bytes, outcome: Outcome) -> bytes:
        request = parse(predict_pb2.PredictRequest, raw)
        model = self.resolve(request.model_spec, outcome)
        try:
            signature = self.signature(model, request.model_spec)
            aliases = self.output_aliases(request.output_filter, signature)
            inputs = tensor_proto.signature_inputs(request.inputs, signature)
            outputs = await self.service.infer(model, signature, inputs)
        except errors.ServingError as error:
            error.model_version = model.version_text
            raise
        response = predict_pb2.PredictResponse()
        response_spec(response.model_spec, model.name, model.version, signature.name)
        for alias in aliases:
            tensor_proto.fill(response.outputs[alias], outputs[alias])
        return response.SerializeToString()

    @staticmethod
    def output_aliases(output_filter: Sequence[str], signature: Signature) -> list[str]:
        """predict_util.cc PreProcessPrediction: the filtered outputs, each once, or all of them."""
        if not output_filter:
            return list(signature.outputs)
        seen: list[str] = []
        for alias in output_filter:
            if alias not in signature.outputs:
                raise errors.invalid_argument(
                    f"output tensor alias not found in signature: {alias} Outputs expected to be in the set "
                    f"{{{','.join(sorted(signature.outputs))}}}."
                )
            if alias in seen:
                raise errors.invalid_argument(f"duplicate output tensor alias: {alias}")
            seen.append(alias)
        return seen

    async def run_examples(
        self, model: LoadedModel, signature: Signature, verb: str, examples: np.ndarray
    ) -> dict[str, np.ndarray]:
        key = tfserving.example_signature(model, signature, verb)
        return await self.service.infer(model, signature, {key: examples})

    async def classify(self, raw: bytes, outcome: Outcome) -> bytes:
        request = parse(classification_pb2.ClassificationRequest, raw)
        return await self.examples_call(
            request, outcome, "classify", classification_pb2.ClassificationResponse()
        )

    async def regress(self, raw: bytes, outcome: Outcome) -> bytes:
        request = parse(regression_pb2.RegressionRequest, raw)
        return await self.examples_call(request, outcome, "regress", regression_pb2.RegressionResponse())

    async def examples_call(self, request: Any, outcome: Outcome, verb: str, response: Any) -> bytes:
        model = self.resolve(request.model_spec, outcome)
        try:
            signature = self.signature(model, request.model_spec)
            examples = serialized_examples(request.input)
            outputs = await self.run_examples(model, signature, verb, examples)
            fill = classification_result if verb == "classify" else regression_result
            fill(response.result, outputs, len(examples))
        except errors.ServingError as error:
            error.model_version = model.version_text
            raise
        response_spec(response.model_spec, model.name, model.version, request.model_spec.signature_name)
        return response.SerializeToString()

    async def multi_inference(self, raw: bytes, outcome: Outcome) -> bytes:
        """multi_inference.cc: classify/regress tasks of one model, each its own signature, one input."""
        request = parse(inference_pb2.MultiInferenceRequest, raw)
        if not request.tasks:
            raise errors.invalid_argument("MultiInferenceRequest has no tasks")
        names = {task.model_spec.name for task in request.tasks}
        if "" in names:
            raise errors.invalid_argument("Found ModelSpec with an empty model name.")
        if len(names) > 1:
            raise errors.invalid_argument(
                "All ModelSpecs in a MultiInferenceRequest must access the same model name."
            )
        model = self.resolve(request.tasks[0].model_spec, outcome)
        try:
            seen: set[str] = set()
            plans: list[tuple[Any, Signature, str]] = []
            for task in request.tasks:
                signature = self.signature(model, task.model_spec)
                if signature.name in seen:
                    raise errors.invalid_argument(f"Duplicate evaluation of signature: {signature.name}")
                seen.add(signature.name)
                verbs = {CLASSIFY_METHOD: "classify", REGRESS_METHOD: "regress"}
                if task.method_name not in verbs:
                    raise errors.ServingError(
                        501, f"Unsupported signature method_name: {task.method_name}", "UNIMPLEMENTED"
                    )
                plans.append((task, signature, verbs[task.method_name]))
            examples = serialized_examples(request.input)
            results = await asyncio.gather(
                *(self.run_examples(model, signature, verb, examples) for _, signature, verb in plans)
            )
            response = inference_pb2.MultiInferenceResponse()
            for (task, _, verb), outputs in zip(plans, results, strict=True):
                result = response.results.add()
                if verb == "classify":
                    classification_result(result.classification_result, outputs, len(examples))
                else:
                    regression_result(result.regression_result, outputs, len(examples))
                response_spec(result.model_spec, model.name, model.version, task.model_spec.signature_name)
        except errors.ServingError as error:
            error.model_version = model.version_text
            raise
        return response.SerializeToString()

    async def get_model_metadata(self, raw: bytes, outcome: Outcome) -> bytes:
        request = parse(get_model_metadata_pb2.GetModelMetadataRequest, raw)
        if not request.HasField("model_spec"):
            raise errors.invalid_argument("Missing ModelSpec")
        if not request.metadata_field:
            raise errors.invalid_argument("GetModelMetadataRequest must specify at least one metadata_field")
        for field in request.metadata_field:
            if field != SIGNATURE_DEF_FIELD:
                raise errors.invalid_argument(f"Metadata field {field} is not supported")
        model = self.resolve(request.model_spec, outcome)
        signature_defs = get_model_metadata_pb2.SignatureDefMap()
        for name, definition in model.signature_defs_json.items():
            json_format.ParseDict(definition, signature_defs.signature_def[name], ignore_unknown_fields=False)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response_spec(response.model_spec, model.name, model.version, None)
        response.metadata[SIGNATURE_DEF_FIELD].Pack(signature_defs)
        return response.SerializeToString()

    async def get_model_status(self, raw: bytes, outcome: Outcome) -> bytes:
        """get_model_status_impl.cc, through the REST API's model_status (the same versions and states)."""
        request = parse(get_model_status_pb2.GetModelStatusRequest, raw)
        spec = request.model_spec
        outcome.model = spec.name if spec.name in self.service.registry.names else UNKNOWN_MODEL
        status = tfserving.model_status(self.service, spec.name, *requested_version(spec))
        response = get_model_status_pb2.GetModelStatusResponse()
        for entry in status["model_version_status"]:
            response.model_version_status.add(
                version=int(entry["version"]),
                state=entry["state"],
                status={
                    "error_code": entry["status"]["error_code"],
                    "error_message": entry["status"]["error_message"],
                },
            )
        return response.SerializeToString()
