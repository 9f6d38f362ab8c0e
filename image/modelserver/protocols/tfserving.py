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
from modelserver.protocols.json import dumps, loads_object, may_hold_booleans
from modelserver.router import Headers, Params
from modelserver.runtime import LoadedModel, Signature


def model_status(service: ModelService, name: str, version: str | None, label: str | None) -> dict[str, Any]:
    """GetModelStatus (get_model_status_impl.cc): every version the server knows, newest first."""
    entry = service.registry.entry(name)
    if entry is None or not entry.versions:
        reason = f": {entry.problem}" if entry is not None and entry.problem else ""
        raise errors.not_found(f"Could not find any versions of model {name}{reason}")
    if label is not None:
        labelled = entry.labels.get(label, entry.config.labels.get(label))
        if labelled is None:
            raise errors.invalid_argument(f"Unrecognized servable version label: {label}")
        version = str(labelled)
    statuses = sorted(entry.versions.values(), key=lambda s: s.version, reverse=True)
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


def row_inputs(instances: Any, signature: Signature, booleans_possible: bool = True) -> dict[str, np.ndarray]:
    """Row format: a list with one entry per example; entries are objects when several inputs."""
    if not isinstance(instances, list) or not instances:
        raise errors.invalid_argument("'instances' must be a non-empty list (one entry per example)")
    specs = signature.inputs
    # One unnamed input, the common case, is settled by the first instance without a scan of all.
    unnamed_single = len(specs) == 1 and not isinstance(instances[0], dict)
    named = not unnamed_single and all(isinstance(item, dict) and set(item) != {"b64"} for item in instances)
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
    return {
        key: tensors.to_array(value, specs[key], booleans_possible=booleans_possible)
        for key, value in columns.items()
    }


def columnar_inputs(
    inputs: Any, signature: Signature, booleans_possible: bool = True
) -> dict[str, np.ndarray]:
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
    return {
        key: tensors.to_array(value, specs[key], booleans_possible=booleans_possible)
        for key, value in values.items()
    }


def encode_output(name: str, array: np.ndarray) -> Any:
    return tensors.jsonable(array, binary=name.endswith("_bytes"))


UNEQUAL_BATCH_SIZES = (
    "outputs have different batch sizes; use the columnar format ('inputs') for this signature"
)


def row_predictions(outputs: Mapping[str, np.ndarray]) -> Any:
    if len(outputs) == 1:
        name, array = next(iter(outputs.items()))
        if array.ndim == 0:  # TF Serving: "Tensor name: y has no shape information"
            raise errors.invalid_argument(
                f"output '{name}' is a scalar, with no batch dimension to split into rows; "
                "use the columnar format ('inputs') for this signature"
            )
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
    # TF Serving's regressor reads output "outputs"; its classifier "classes" and/or "scores".
    wanted = {"regress": ("outputs",), "classify": ("classes", "scores")}[verb]
    if not any(name in signature.outputs for name in wanted):
        raise errors.invalid_argument(
            f"Signature {signature.name} of {model.name} cannot {verb}: "
            f"it needs output {' or '.join(repr(name) for name in wanted)}, "
            f"it has {', '.join(sorted(signature.outputs))}"
        )
    return inputs[0].key


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def feature_kind(value: Any, where: str) -> str:
    """The tf.train.Feature list one JSON value of a feature goes into (TF Serving's AddValueToFeature)."""
    if isinstance(value, bool):
        return "int64_list"  # true/false become 1/0
    if isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            # orjson reads integers up to 2^64 - 1 as int (beyond, as floats): TF Serving refuses these too.
            raise errors.invalid_argument(
                f"{where}: integer {value} does not fit int64 (only int64 is supported)"
            )
        return "int64_list"
    if isinstance(value, float):
        return "float_list"
    if isinstance(value, (str, dict)):
        return "bytes_list"
    raise errors.invalid_argument(
        f"{where}: unexpected JSON {'null' if value is None else type(value).__name__}; "
        'expected numbers, booleans, strings or {"b64": ...}'
    )


def feature(name: str, value: Any) -> Any:
    """A JSON feature value (one value or a flat list) as a tf.train.Feature.

    Integers and booleans -> int64_list, decimals -> float_list, strings and {"b64"} ->
    bytes_list; every value of one feature must be of the same kind (TF Serving's rule:
    write 0.0, not 0, for a float feature).
    """
    from tensorflow.core.example import feature_pb2

    values = value if isinstance(value, list) else [value]
    where = f"feature '{name}'"
    if not values:
        return feature_pb2.Feature()
    kinds = {feature_kind(v, where) for v in values}
    if len(kinds) > 1:
        raise errors.invalid_argument(
            f"{where}: values of one feature must be all integers, all decimals or all strings "
            f"(got {', '.join(sorted(k.removesuffix('_list') for k in kinds))})"
        )
    kind = kinds.pop()
    if kind == "int64_list":
        return feature_pb2.Feature(int64_list=feature_pb2.Int64List(value=[int(v) for v in values]))
    if kind == "float_list":
        return feature_pb2.Feature(float_list=feature_pb2.FloatList(value=values))
    return feature_pb2.Feature(
        bytes_list=feature_pb2.BytesList(value=[tensors.decode_string(v, where) for v in values])
    )


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


def regression(outputs: Mapping[str, np.ndarray], count: int) -> np.ndarray:
    """One value per example from the signature's "outputs" (TF Serving's regressor)."""
    values = outputs["outputs"].reshape(count, -1)
    if values.shape[1] != 1:
        raise errors.invalid_argument("regression output must have one value per example")
    return np.ascontiguousarray(values[:, 0])


def regress_result(outputs: Mapping[str, np.ndarray], count: int) -> Any:
    return tensors.jsonable(regression(outputs, count))


def classification(
    outputs: Mapping[str, np.ndarray], count: int
) -> tuple[np.ndarray | None, np.ndarray | None, int]:
    """(classes, scores, classes per example) of a classify call, each [count, width] when present."""
    classes = outputs["classes"].reshape(count, -1) if "classes" in outputs else None
    scores = outputs["scores"].reshape(count, -1) if "scores" in outputs else None
    if classes is not None and scores is not None and classes.shape != scores.shape:
        raise errors.invalid_argument(
            f"classify: outputs 'classes' {list(classes.shape)} and 'scores' {list(scores.shape)} disagree"
        )
    width = (classes if classes is not None else scores).shape[1]  # type: ignore[union-attr]
    return classes, scores, width


def classify_result(outputs: Mapping[str, np.ndarray], count: int) -> list[list[list[Any]]]:
    """[[label, score], ...] per example; a missing label is "" and a missing score 0.0, as in TF Serving."""
    classes, scores, width = classification(outputs, count)
    if scores is None:
        scores = np.zeros((count, width), dtype=np.float32)
    if classes is None:
        labels = [[""] * width for _ in range(count)]
    else:
        labels = [[tensors.encode_string(c, False) for c in row] for row in classes]
    return [
        [[label, score] for label, score in zip(label_row, score_row, strict=True)]
        for label_row, score_row in zip(labels, scores, strict=True)
    ]


# ---------------------------------------------------------------------------- handlers


def predict_inputs(
    signature: Signature, document: Mapping[str, Any], booleans_possible: bool = True
) -> tuple[dict[str, np.ndarray], bool]:
    """A predict request's input arrays, and whether it used the row format ("instances")."""
    has_rows, has_columns = "instances" in document, "inputs" in document
    if has_rows == has_columns:
        raise errors.invalid_argument(
            "Missing 'instances' key"
            if not has_rows
            else "Request has both 'instances' and 'inputs'; use one"
        )
    if not has_rows:
        return columnar_inputs(document["inputs"], signature, booleans_possible), False
    inputs = row_inputs(document["instances"], signature, booleans_possible)
    if len(inputs) > 1 and len({array.shape[0] for array in inputs.values()}) != 1:
        raise errors.invalid_argument("all inputs of an instance must share dimension 0")
    return inputs, True


class TFServingAPI:
    def __init__(self, service: ModelService) -> None:
        self.service = service

    async def status(self, params: Params, body: bytes, headers: Headers) -> Response:
        name = params["model"] or ""
        status = model_status(self.service, name, params.get("version"), params.get("label"))
        versions = status["model_version_status"]
        return Response(dumps(status), model_version=versions[-1]["version"] if len(versions) == 1 else None)

    async def metadata(self, params: Params, body: bytes, headers: Headers) -> Response:
        model = self.service.resolve(params["model"] or "", params.get("version"), params.get("label"))
        return Response(dumps(model_metadata(model)), model_version=model.version_text)

    async def post(self, params: Params, body: bytes, headers: Headers) -> Response:
        model = self.service.resolve(params["model"] or "", params.get("version"), params.get("label"))
        try:
            document = loads_object(body)
            signature_name = document.get("signature_name")
            if signature_name is not None and not isinstance(signature_name, str):
                raise errors.invalid_argument("'signature_name' must be a string")
            signature = self.service.signature(model, signature_name)
            verb = params["verb"]
            if verb == "predict":
                inputs, as_rows = predict_inputs(signature, document, may_hold_booleans(body))
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
        return {"results": result}
