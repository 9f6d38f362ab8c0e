"""The Open Inference Protocol's `inference.GRPCInferenceService` (stubs: open-inference-grpc).

    ServerLive, ServerReady      health.py's liveness and readiness
    ServerMetadata               as GET /v2
    ModelReady, ModelMetadata    as GET /v2/models/{m}[/versions/{v}][/ready]
    ModelInfer                   as POST .../infer

ModelInfer takes each input either as `contents` (the repeated field of its datatype:
`fp32_contents` for FP32, `int_contents` for INT8/INT16/INT32, ...) or, for every input
at once, as `raw_input_contents` (one entry per input, in input order, laid out as the
binary tensor data extension lays out HTTP bodies: little endian, BOOL one byte, BYTES
elements 4-byte length-prefixed); FP16 has no typed field and needs the raw form. From
there on it is the REST path's decoding (protocols/v2.py: the declared datatype becomes
the model's dtype only when no value changes). Outputs come back as
`raw_output_contents` when the request sent raw inputs (what tritonclient sends, and
the only output form it reads for numbers), or when an output's datatype has no typed
field; else as typed `contents`. `parameters.signature_name` (a string parameter)
picks a signature, as over HTTP.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from open_inference.grpc import protocol as pb

from modelserver import errors
from modelserver.grpc_api.calls import MethodSpec, Outcome, parse
from modelserver.health import Health
from modelserver.inference import ModelService
from modelserver.metrics import UNKNOWN_MODEL
from modelserver.protocols import tensors, v2
from modelserver.runtime import LoadedModel, Signature

SERVICE = "inference.GRPCInferenceService"

# Datatype -> (the InferTensorContents field that holds it, that field's element dtype).
CONTENTS: dict[str, tuple[str, np.dtype[Any]]] = {
    "BOOL": ("bool_contents", np.dtype(np.bool_)),
    "INT8": ("int_contents", np.dtype(np.int32)),
    "INT16": ("int_contents", np.dtype(np.int32)),
    "INT32": ("int_contents", np.dtype(np.int32)),
    "INT64": ("int64_contents", np.dtype(np.int64)),
    "UINT8": ("uint_contents", np.dtype(np.uint32)),
    "UINT16": ("uint_contents", np.dtype(np.uint32)),
    "UINT32": ("uint_contents", np.dtype(np.uint32)),
    "UINT64": ("uint64_contents", np.dtype(np.uint64)),
    "FP32": ("fp32_contents", np.dtype(np.float32)),
    "FP64": ("fp64_contents", np.dtype(np.float64)),
    "BYTES": ("bytes_contents", np.dtype(object)),
}


def parameter(parameters: Mapping[str, Any], name: str) -> Any:
    """A request parameter's value (whichever of InferParameter's fields is set), or None."""
    if name not in parameters:
        return None
    entry = parameters[name]
    choice = entry.WhichOneof("parameter_choice")
    return None if choice is None else getattr(entry, choice)


def typed_input(entry: Any, datatype: str, count: int, spec: Any, where: str) -> np.ndarray:
    """A flat input from its typed `contents` field."""
    field = CONTENTS.get(datatype)
    if field is None:
        raise errors.invalid_argument(
            f"{where}: {datatype} has no typed contents field; send it in raw_input_contents"
        )
    name, element = field
    values = getattr(entry.contents, name)
    if spec.is_string:
        flat = np.empty(len(values), dtype=object)
        flat[:] = list(values)
        return flat
    declared = tensors.cast_tensor(np.asarray(values, dtype=element), v2.DATATYPES[datatype], where)
    return v2.as_model_dtype(declared, datatype, spec, where)


def decode_inputs(request: Any, signature: Signature) -> dict[str, np.ndarray]:
    if not request.inputs:
        raise errors.invalid_argument("'inputs' must be a non-empty list")
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise errors.invalid_argument(
            f"raw_input_contents has {len(raw)} entries for {len(request.inputs)} inputs: "
            "send every input raw (one entry each, in input order) or none"
        )
    inputs: dict[str, np.ndarray] = {}
    for index, entry in enumerate(request.inputs):
        spec = v2.input_spec(entry.name, entry.datatype, signature.inputs)
        where = f"input '{entry.name}'"
        if entry.name in inputs:
            raise errors.invalid_argument(f"{where} given twice")
        shape = [int(dim) for dim in entry.shape]
        if any(dim < 0 for dim in shape):
            raise errors.invalid_argument(f"{where}: 'shape' must be a list of non-negative integers")
        count = int(np.prod(shape, dtype=np.int64))
        if raw:
            if entry.HasField("contents"):
                raise errors.invalid_argument(
                    f"{where}: has contents while raw_input_contents is used; send one"
                )
            flat = v2.raw_input(memoryview(raw[index]), entry.datatype, count, spec, where)
        else:
            flat = typed_input(entry, entry.datatype, count, spec, where)
        inputs[spec.key] = v2.shaped_input(flat, shape, spec, where)
    missing = sorted(set(signature.inputs) - set(inputs))
    if missing:
        raise errors.invalid_argument(f"missing input(s) {', '.join(missing)}")
    return inputs


def chosen_outputs(request: Any, signature: Signature) -> list[str]:
    if not request.outputs:
        return list(signature.outputs)
    names = [output.name for output in request.outputs]
    v2.check_outputs(names, signature)
    for output in request.outputs:
        if parameter(output.parameters, "classification"):
            raise errors.invalid_argument(
                f"output '{output.name}': the classification extension is not supported"
            )
    return names


def encode_outputs(response: Any, outputs: Mapping[str, np.ndarray], names: Sequence[str], raw: bool) -> None:
    raw = raw or any(v2.datatype_of(outputs[name].dtype) not in CONTENTS for name in names)
    for name in names:
        array = outputs[name]
        datatype = v2.datatype_of(array.dtype)
        output = response.outputs.add(name=name, datatype=datatype, shape=array.shape)
        if raw:
            response.raw_output_contents.append(v2.binary_of(array))
            continue
        field, element = CONTENTS[datatype]
        flat = array.reshape(-1)
        values = getattr(output.contents, field)
        if array.dtype.kind == "O":
            values.extend(item if isinstance(item, bytes) else str(item).encode() for item in flat)
        else:
            values.extend(flat.astype(element, copy=False).tolist())


def tensor_metadata(entries: Sequence[Mapping[str, Any]]) -> list[Any]:
    return [
        pb.ModelMetadataResponse.TensorMetadata(name=e["name"], datatype=e["datatype"], shape=e["shape"])
        for e in entries
    ]


class InferenceService:
    """GRPCInferenceService's methods over the shared model service and health."""

    def __init__(self, service: ModelService, health: Health) -> None:
        self.service = service
        self.health = health

    def methods(self) -> dict[str, MethodSpec]:
        prefix = f"/{SERVICE}/"
        return {
            prefix + "ServerLive": MethodSpec(self.server_live, admitted=False),
            prefix + "ServerReady": MethodSpec(self.server_ready, admitted=False),
            prefix + "ModelReady": MethodSpec(self.model_ready, admitted=False),
            prefix + "ServerMetadata": MethodSpec(self.server_metadata, admitted=False),
            prefix + "ModelMetadata": MethodSpec(self.model_metadata, admitted=False),
            prefix + "ModelInfer": MethodSpec(self.model_infer, admitted=True),
        }

    def resolve(self, name: str, version: str, outcome: Outcome) -> LoadedModel:
        outcome.model = name if name in self.service.registry.names else UNKNOWN_MODEL
        if version and not version.isdigit():
            raise errors.invalid_argument(f"model_version must be a version number, got {version!r}")
        model = self.service.resolve(name, version or None)
        outcome.version = model.version_text
        return model

    async def server_live(self, raw: bytes, outcome: Outcome) -> bytes:
        parse(pb.ServerLiveRequest, raw)
        return pb.ServerLiveResponse(live=self.health.not_live_reason() is None).SerializeToString()

    async def server_ready(self, raw: bytes, outcome: Outcome) -> bytes:
        parse(pb.ServerReadyRequest, raw)
        return pb.ServerReadyResponse(ready=self.health.is_ready()).SerializeToString()

    async def server_metadata(self, raw: bytes, outcome: Outcome) -> bytes:
        parse(pb.ServerMetadataRequest, raw)
        return pb.ServerMetadataResponse(**v2.server_metadata()).SerializeToString()

    async def model_ready(self, raw: bytes, outcome: Outcome) -> bytes:
        """ready = the model (or the version) can serve; NOT_FOUND for a model the server does not know."""
        request = parse(pb.ModelReadyRequest, raw)
        try:
            self.resolve(request.name, request.version, outcome)
        except errors.ServingError as error:
            if error.status == 404 or error.code == "INVALID_ARGUMENT":
                raise
            return pb.ModelReadyResponse(ready=False).SerializeToString()
        return pb.ModelReadyResponse(ready=True).SerializeToString()

    async def model_metadata(self, raw: bytes, outcome: Outcome) -> bytes:
        request = parse(pb.ModelMetadataRequest, raw)
        model = self.resolve(request.name, request.version, outcome)
        entry = self.service.registry.entry(model.name)
        versions = entry.serving if entry is not None else (model.version,)
        metadata = v2.model_metadata(model, versions)
        return pb.ModelMetadataResponse(
            name=metadata["name"],
            versions=metadata["versions"],
            platform=metadata["platform"],
            inputs=tensor_metadata(metadata["inputs"]),
            outputs=tensor_metadata(metadata["outputs"]),
        ).SerializeToString()

    async def model_infer(self, raw: bytes, outcome: Outcome) -> bytes:
        request = parse(pb.ModelInferRequest, raw)
        model = self.resolve(request.model_name, request.model_version, outcome)
        try:
            signature_name = parameter(request.parameters, "signature_name")
            if signature_name is not None and not isinstance(signature_name, str):
                raise errors.invalid_argument("parameters.signature_name must be a string parameter")
            signature = self.service.signature(model, signature_name)
            inputs = decode_inputs(request, signature)
            names = chosen_outputs(request, signature)
            outputs = await self.service.infer(model, signature, inputs)
        except errors.ServingError as error:
            error.model_version = model.version_text
            raise
        response = pb.ModelInferResponse(
            model_name=model.name, model_version=model.version_text, id=request.id
        )
        encode_outputs(response, outputs, names, raw=bool(request.raw_input_contents))
        return response.SerializeToString()
