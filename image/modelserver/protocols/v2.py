"""Open Inference Protocol (KServe V2) over HTTP/JSON.

    GET  /v2                                    server metadata
    GET  /v2/health/live, /v2/health/ready      (health.py)
    GET  /v2/models/{m}[/versions/{v}]          model metadata (the default signature)
    GET  /v2/models/{m}[/versions/{v}]/ready
    POST /v2/models/{m}[/versions/{v}]/infer

An input may be sent in any V2 datatype whose values the model's dtype holds exactly
(e.g. INT32 or BOOL for an FP32 input); FP64 is accepted for FP32 inputs because JSON
numbers carry no more precision than their decimal text. Anything else is a 400.
`parameters.signature_name` picks a signature other than serving_default.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from modelserver import SERVER_NAME, __version__, errors
from modelserver.asgi import Response
from modelserver.inference import ModelService
from modelserver.protocols import tensors
from modelserver.protocols.json import dumps, loads_object
from modelserver.runtime import DEFAULT_SIGNATURE, LoadedModel, Signature, TensorSpec

PLATFORM = "tensorflow_savedmodel"
DATATYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(object),
}
DATATYPE_OF = {dtype: name for name, dtype in DATATYPES.items()}


def datatype_of(dtype: np.dtype[Any]) -> str:
    return DATATYPE_OF.get(dtype, "BYTES" if dtype.kind == "O" else dtype.name.upper())


def server_metadata() -> dict[str, Any]:
    return {"name": SERVER_NAME, "version": __version__, "extensions": []}


def default_signature(model: LoadedModel) -> Signature:
    if DEFAULT_SIGNATURE in model.signatures:
        return model.signatures[DEFAULT_SIGNATURE]
    return model.signatures[sorted(model.signatures)[0]]


def tensor_metadata(spec: TensorSpec) -> dict[str, Any]:
    return {"name": spec.key, "datatype": datatype_of(spec.dtype), "shape": list(spec.shape or [-1])}


def model_metadata(model: LoadedModel) -> dict[str, Any]:
    signature = default_signature(model)
    return {
        "name": model.name,
        "versions": [model.version_text],
        "platform": PLATFORM,
        "inputs": [tensor_metadata(spec) for spec in signature.inputs.values()],
        "outputs": [tensor_metadata(spec) for spec in signature.outputs.values()],
    }


def declared_shape(entry: Mapping[str, Any], where: str) -> tuple[int, ...]:
    shape = entry.get("shape")
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise errors.invalid_argument(f"{where}: 'shape' must be a list of non-negative integers")
    return tuple(shape)


def decode_input(entry: Any, specs: Mapping[str, TensorSpec]) -> tuple[str, np.ndarray]:
    """One V2 request input -> (signature input key, array in the model's dtype)."""
    if not isinstance(entry, dict):
        raise errors.invalid_argument("each entry of 'inputs' must be an object")
    name = entry.get("name")
    if not isinstance(name, str) or name not in specs:
        raise errors.invalid_argument(
            f"input name {name!r} is not an input of the signature (inputs: {', '.join(sorted(specs))})"
        )
    spec = specs[name]
    where = f"input '{name}'"
    datatype = entry.get("datatype")
    if datatype not in DATATYPES:
        raise errors.invalid_argument(
            f"{where}: unknown datatype {datatype!r} (one of {', '.join(DATATYPES)})"
        )
    shape = declared_shape(entry, where)
    if "data" not in entry:
        raise errors.invalid_argument(f"{where}: missing 'data'")
    if spec.is_string != (datatype == "BYTES"):
        raise errors.invalid_argument(
            f"{where}: datatype {datatype} cannot be converted to the model's {spec.dtype_name}"
        )
    if spec.is_string:
        flat = tensors.strings_to_array(entry["data"], where).reshape(-1)
    else:
        raw = tensors.parse_numbers(entry["data"], where).reshape(-1)
        declared = tensors.cast_checked(raw, DATATYPES[datatype], f"{where} as {datatype}")
        flat = tensors.cast_checked(declared, spec.dtype, f"{where}: {datatype} -> model {spec.dtype_name}")
    if flat.size != math.prod(shape):
        raise errors.invalid_argument(
            f"{where}: shape {list(shape)} needs {math.prod(shape)} values, 'data' has {flat.size}"
        )
    array = flat.reshape(shape)
    tensors.check_shape(array, spec, where)
    return name, array


def decode_request(document: Mapping[str, Any], signature: Signature) -> dict[str, np.ndarray]:
    entries = document.get("inputs")
    if not isinstance(entries, list) or not entries:
        raise errors.invalid_argument("'inputs' must be a non-empty list")
    inputs: dict[str, np.ndarray] = {}
    for entry in entries:
        name, array = decode_input(entry, signature.inputs)
        if name in inputs:
            raise errors.invalid_argument(f"input '{name}' given twice")
        inputs[name] = array
    missing = sorted(set(signature.inputs) - set(inputs))
    if missing:
        raise errors.invalid_argument(f"missing input(s) {', '.join(missing)}")
    return inputs


def requested_outputs(document: Mapping[str, Any], signature: Signature) -> list[str]:
    entries = document.get("outputs")
    if entries is None:
        return list(signature.outputs)
    if not isinstance(entries, list) or not all(
        isinstance(e, dict) and isinstance(e.get("name"), str) for e in entries
    ):
        raise errors.invalid_argument("'outputs' must be a list of objects with a 'name'")
    names = [entry["name"] for entry in entries]
    unknown = sorted(set(names) - set(signature.outputs))
    if unknown:
        raise errors.invalid_argument(
            f"unknown output(s) {', '.join(unknown)} (outputs: {', '.join(sorted(signature.outputs))})"
        )
    return names


def encode_output(name: str, array: np.ndarray) -> dict[str, Any]:
    return {
        "name": name,
        "datatype": datatype_of(array.dtype),
        "shape": list(array.shape),
        "data": tensors.jsonable(array.reshape(-1)),
    }


class V2API:
    def __init__(self, service: ModelService) -> None:
        self.service = service

    async def server_metadata(self, params: Mapping[str, str | None], body: bytes) -> Response:
        return Response(dumps(server_metadata()))

    async def model_metadata(self, params: Mapping[str, str | None], body: bytes) -> Response:
        model = self.service.resolve(params["model"] or "", params.get("version"))
        return Response(dumps(model_metadata(model)), model_version=model.version_text)

    async def model_ready(self, params: Mapping[str, str | None], body: bytes) -> Response:
        try:
            model = self.service.resolve(params["model"] or "", params.get("version"))
        except errors.ServingError as error:
            if error.status == 404:
                raise
            return Response(dumps({"name": params["model"], "ready": False}), status=503)
        return Response(dumps({"name": model.name, "ready": True}), model_version=model.version_text)

    async def infer(self, params: Mapping[str, str | None], body: bytes) -> Response:
        model = self.service.resolve(params["model"] or "", params.get("version"))
        try:
            document = loads_object(body)
            request_id = document.get("id")
            if request_id is not None and not isinstance(request_id, str):
                raise errors.invalid_argument("'id' must be a string")
            parameters = document.get("parameters") or {}
            if not isinstance(parameters, dict):
                raise errors.invalid_argument("'parameters' must be an object")
            signature_name = parameters.get("signature_name")
            if signature_name is not None and not isinstance(signature_name, str):
                raise errors.invalid_argument("parameters.signature_name must be a string")
            signature = self.service.signature(model, signature_name)
            inputs = decode_request(document, signature)
            names = requested_outputs(document, signature)
            outputs = await self.service.infer(model, signature, inputs)
        except errors.ServingError as error:
            error.model_version = model.version_text
            raise
        payload: dict[str, Any] = {"model_name": model.name, "model_version": model.version_text}
        if request_id is not None:
            payload["id"] = request_id
        payload["outputs"] = [encode_output(name, outputs[name]) for name in names]
        return Response(dumps(payload), model_version=model.version_text)
