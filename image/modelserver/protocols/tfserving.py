"""TF Serving's REST API (https://www.tensorflow.org/tfx/serving/api_rest), same JSON shapes.

GET  /v1/models/{m}[/versions/{v}|/labels/{l}]            model status
GET  /v1/models/{m}[/versions/{v}|/labels/{l}]/metadata   signature defs
POST /v1/models/{m}[/versions/{v}|/labels/{l}]:predict    row ("instances") or columnar ("inputs")
POST ...:classify / ...:regress                           tf.Example signatures
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from modelserver import errors
from modelserver.asgi import Response
from modelserver.inference import ModelService
from modelserver.protocols import tensors
from modelserver.protocols.json import dumps, loads_object
from modelserver.runtime import LoadedModel, Signature


def model_status(service: ModelService, name: str, version: str | None, label: str | None) -> dict[str, Any]:
    entry = service.registry.entry(name)
    if entry is None or (not entry.statuses and entry.load_error is None and entry.served is None):
        raise errors.not_found(f"Could not find any versions of model {name}")
    if not entry.statuses:
        raise errors.not_found(f"Could not find any versions of model {name}: {entry.load_error}")
    statuses = sorted(entry.statuses.values(), key=lambda s: s.version)
    if label is not None:
        version = service.resolve(name, None, label).version_text
    if version is not None:
        statuses = [s for s in statuses if s.version == int(version)]
        if not statuses:
            raise errors.not_found(f"Could not find version {version} of model {name}")
    return {"model_version_status": [s.as_tfserving() for s in statuses]}


def model_metadata(model: LoadedModel) -> dict[str, Any]:
    return {
        "model_spec": {"name": model.name, "signature_name": "", "version": model.version_text},
        "metadata": {"signature_def": {"signature_def": dict(model.signature_defs_json)}},
    }


# ---------------------------------------------------------------------------- predict


def row_inputs(instances: Any, signature: Signature) -> dict[str, np.ndarray]:
    """Row format: a list with one entry per example; entries are objects when several inputs."""
    if not isinstance(instances, list) or not instances:
        raise errors.invalid_argument("'instances' must be a non-empty list (one entry per example)")
    specs = signature.inputs
    named = all(isinstance(item, dict) and set(item) != {"b64"} for item in instances)
    if named:
        first_keys = set(instances[0])
        for item in instances:
            if set(item) != first_keys:
                raise errors.invalid_argument("every instance must name the same inputs")
        values = tensors.named_inputs(instances[0], specs, "instances")
        columns = {key: [item[key] for item in instances] for key in values}
    elif len(specs) == 1:
        columns = {next(iter(specs)): instances}
    else:
        raise errors.invalid_argument(
            f"the signature has {len(specs)} inputs ({', '.join(sorted(specs))}): "
            "each instance must be an object keyed by input name"
        )
    arrays = {key: tensors.to_array(value, specs[key]) for key, value in columns.items()}
    return arrays


def columnar_inputs(inputs: Any, signature: Signature) -> dict[str, np.ndarray]:
    specs = signature.inputs
    if isinstance(inputs, dict) and set(inputs) != {"b64"}:
        values = tensors.named_inputs(inputs, specs, "inputs")
    elif len(specs) == 1:
        values = {next(iter(specs)): inputs}
    else:
        raise errors.invalid_argument(
            f"the signature has {len(specs)} inputs ({', '.join(sorted(specs))}): "
            "'inputs' must be an object keyed by input name"
        )
    return {key: tensors.to_array(value, specs[key]) for key, value in values.items()}


def encode_output(name: str, array: np.ndarray) -> Any:
    return tensors.jsonable(array, binary=name.endswith("_bytes"))


UNEQUAL_BATCH_SIZES = (
    "outputs have different batch sizes; use the columnar format ('inputs') for this signature"
)


def row_predictions(outputs: Mapping[str, np.ndarray]) -> Any:
    if len(outputs) == 1:
        name, array = next(iter(outputs.items()))
        return encode_output(name, array)
    rows: int | None = None
    columns = []
    for name, array in outputs.items():
        size = array.shape[0] if array.ndim else None
        if size is None or (rows is not None and size != rows):
            raise errors.invalid_argument(UNEQUAL_BATCH_SIZES)
        rows = size
        columns.append((name, encode_output(name, array)))
    if rows is None:
        raise errors.invalid_argument(UNEQUAL_BATCH_SIZES)
    if rows == 1:  # one instance per request: the common case
        return [{name: column[0] for name, column in columns}]
    return [{name: column[index] for name, column in columns} for index in range(rows)]


def columnar_outputs(outputs: Mapping[str, np.ndarray]) -> Any:
    if len(outputs) == 1:
        name, array = next(iter(outputs.items()))
        return encode_output(name, array)
    return {name: encode_output(name, array) for name, array in outputs.items()}


# ---------------------------------------------------------------------------- classify / regress


def example_signature(model: LoadedModel, signature: Signature, verb: str) -> str:
    """The single DT_STRING input of a tf.Example signature, or a 400 saying why not."""
    inputs = list(signature.inputs.values())
    if len(inputs) != 1 or not inputs[0].is_string:
        raise errors.invalid_argument(
            f"Signature {signature.name} of {model.name} cannot {verb}: it needs exactly one DT_STRING input "
            f"(serialized tf.Example), it has {', '.join(f'{s.key} {s.dtype_name}' for s in inputs)}"
        )
    wanted = {"regress": ("outputs",), "classify": ("scores",)}[verb]
    if not all(name in signature.outputs for name in wanted):
        raise errors.invalid_argument(
            f"Signature {signature.name} of {model.name} cannot {verb}: "
            f"it needs output(s) {', '.join(wanted)}, "
            f"it has {', '.join(sorted(signature.outputs))}"
        )
    return inputs[0].key


def feature(name: str, value: Any) -> Any:
    """A JSON feature value as a tf.train.Feature.

    All integers -> int64_list, numbers -> float_list, text or {"b64"} -> bytes_list (TF Serving's rule).
    """
    from tensorflow.core.example import feature_pb2

    values = value if isinstance(value, list) else [value]
    where = f"feature '{name}'"
    if values and all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return feature_pb2.Feature(int64_list=feature_pb2.Int64List(value=values))
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return feature_pb2.Feature(float_list=feature_pb2.FloatList(value=values))
    if all(isinstance(v, (str, dict)) for v in values):
        return feature_pb2.Feature(
            bytes_list=feature_pb2.BytesList(value=[tensors.decode_string(v, where) for v in values])
        )
    raise errors.invalid_argument(f"{where}: values must be all numbers or all strings")


def serialized_examples(document: Mapping[str, Any]) -> np.ndarray:
    from tensorflow.core.example import example_pb2

    examples = document.get("examples")
    context = document.get("context", {})
    if not isinstance(examples, list) or not examples or not all(isinstance(e, dict) for e in examples):
        raise errors.invalid_argument(
            "'examples' must be a non-empty list of objects (feature name -> value)"
        )
    if not isinstance(context, dict):
        raise errors.invalid_argument("'context' must be an object (feature name -> value)")
    serialized = np.empty(len(examples), dtype=object)
    for index, features in enumerate(examples):
        clash = sorted(set(features) & set(context))
        if clash:
            raise errors.invalid_argument(
                f"feature(s) {', '.join(clash)} appear in both context and an example"
            )
        example = example_pb2.Example()
        for name, value in (*context.items(), *features.items()):
            example.features.feature[name].CopyFrom(feature(name, value))
        serialized[index] = example.SerializeToString()
    return serialized


def regress_result(outputs: Mapping[str, np.ndarray], count: int) -> Any:
    values = outputs["outputs"].reshape(count, -1)
    if values.shape[1] != 1:
        raise errors.invalid_argument("regression output must have one value per example")
    return tensors.jsonable(np.ascontiguousarray(values[:, 0]))


def classify_result(outputs: Mapping[str, np.ndarray], count: int) -> list[list[list[Any]]]:
    scores = outputs["scores"].reshape(count, -1)
    if "classes" in outputs:
        labels = [
            [tensors.encode_string(c, False) for c in row] for row in outputs["classes"].reshape(count, -1)
        ]
    else:
        labels = [[""] * scores.shape[1] for _ in range(count)]
    return [
        [[label, score] for label, score in zip(label_row, score_row, strict=True)]
        for label_row, score_row in zip(labels, scores, strict=True)
    ]


# ---------------------------------------------------------------------------- handlers


def predict_inputs(signature: Signature, document: Mapping[str, Any]) -> tuple[dict[str, np.ndarray], bool]:
    """A predict request's input arrays, and whether it used the row format ("instances")."""
    has_rows, has_columns = "instances" in document, "inputs" in document
    if has_rows == has_columns:
        raise errors.invalid_argument(
            "Missing 'instances' key"
            if not has_rows
            else "Request has both 'instances' and 'inputs'; use one"
        )
    if not has_rows:
        return columnar_inputs(document["inputs"], signature), False
    inputs = row_inputs(document["instances"], signature)
    rows = {array.shape[0] for array in inputs.values()}
    if len(rows) != 1:
        raise errors.invalid_argument("all inputs of an instance must share dimension 0")
    return inputs, True


class TFServingAPI:
    def __init__(self, service: ModelService) -> None:
        self.service = service

    async def status(self, params: Mapping[str, str | None], body: bytes) -> Response:
        name = params["model"] or ""
        status = model_status(self.service, name, params.get("version"), params.get("label"))
        versions = status["model_version_status"]
        return Response(dumps(status), model_version=versions[-1]["version"] if len(versions) == 1 else None)

    async def metadata(self, params: Mapping[str, str | None], body: bytes) -> Response:
        model = self.service.resolve(params["model"] or "", params.get("version"), params.get("label"))
        return Response(dumps(model_metadata(model)), model_version=model.version_text)

    async def post(self, params: Mapping[str, str | None], body: bytes) -> Response:
        model = self.service.resolve(params["model"] or "", params.get("version"), params.get("label"))
        try:
            document = loads_object(body)
            signature_name = document.get("signature_name")
            if signature_name is not None and not isinstance(signature_name, str):
                raise errors.invalid_argument("'signature_name' must be a string")
            signature = self.service.signature(model, signature_name)
            verb = params["verb"]
            if verb == "predict":
                inputs, as_rows = predict_inputs(signature, document)
                outputs = await self.service.infer(model, signature, inputs)
                payload = (
                    {"predictions": row_predictions(outputs)}
                    if as_rows
                    else {"outputs": columnar_outputs(outputs)}
                )
            else:
                payload = await self.examples(model, signature, document, verb or "")
        except errors.ServingError as error:
            error.model_version = model.version_text
            raise
        return Response(dumps(payload), model_version=model.version_text)

    async def examples(
        self, model: LoadedModel, signature: Signature, document: Mapping[str, Any], verb: str
    ) -> dict[str, Any]:
        input_key = example_signature(model, signature, verb)
        serialized = serialized_examples(document)
        outputs = await self.service.infer(model, signature, {input_key: serialized})
        count = len(serialized)
        result = regress_result(outputs, count) if verb == "regress" else classify_result(outputs, count)
        return {"result": result}
