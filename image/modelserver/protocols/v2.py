"""Open Inference Protocol (KServe V2) over HTTP/JSON, with the binary tensor data extension.

    GET  /v2                                    server metadata
    GET  /v2/health/live, /v2/health/ready      (health.py)
    GET  /v2/models/{m}[/versions/{v}]          model metadata (the default signature)
    GET  /v2/models/{m}[/versions/{v}]/ready
    POST /v2/models/{m}[/versions/{v}]/infer

Input values in JSON follow tensors.py's one rule for the request's declared datatype;
that tensor then becomes the model's dtype only when no value changes (e.g. INT32 or
BOOL for an FP32 input; FP64 for FP32, as the JSON text carried no more precision).
Anything else is a 400. `parameters.signature_name` picks a signature other than
serving_default.

Binary tensor data (Triton's extension, which tritonclient and KServe's clients use;
server/docs/protocol/extension_binary_data.md): the body is the JSON object, whose
length the `Inference-Header-Content-Length` header gives, followed by the raw data of
every input that has `parameters.binary_data_size`, in the order of `inputs`: little
endian, row major, BOOL one byte each, BYTES elements each prefixed by its length (4
bytes, little endian). Outputs are sent the same way when the request asks for it
(`parameters.binary_data` on an output, else `parameters.binary_data_output` on the
request); the response then carries its own `Inference-Header-Content-Length`.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from modelserver import SERVER_NAME, __version__, errors
from modelserver.asgi import JSON, Response
from modelserver.inference import ModelService
from modelserver.protocols import tensors
from modelserver.protocols.json import dumps, loads_object, may_hold_booleans
from modelserver.router import Headers, Params
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


BINARY_EXTENSION = "binary_tensor_data"
HEADER_LENGTH = b"inference-header-content-length"
LENGTH_PREFIX = struct.Struct("<I")
OCTET_STREAM = b"application/octet-stream"


def server_metadata() -> dict[str, Any]:
    return {"name": SERVER_NAME, "version": __version__, "extensions": [BINARY_EXTENSION]}


def default_signature(model: LoadedModel) -> Signature:
    if DEFAULT_SIGNATURE in model.signatures:
        return model.signatures[DEFAULT_SIGNATURE]
    return model.signatures[sorted(model.signatures)[0]]


def tensor_metadata(spec: TensorSpec) -> dict[str, Any]:
    return {"name": spec.key, "datatype": datatype_of(spec.dtype), "shape": list(spec.shape or [-1])}


def model_metadata(model: LoadedModel, versions: Iterable[int]) -> dict[str, Any]:
    """`versions`: every available version (each can be named in the URL)."""
    signature = default_signature(model)
    return {
        "name": model.name,
        "versions": [str(version) for version in versions],
        "platform": PLATFORM,
        "inputs": [tensor_metadata(spec) for spec in signature.inputs.values()],
        "outputs": [tensor_metadata(spec) for spec in signature.outputs.values()],
    }


# ---------------------------------------------------------------------------- request


def split_body(body: bytes, headers: Headers) -> tuple[bytes, memoryview]:
    """(the JSON object, the binary tensor data after it) by Inference-Header-Content-Length."""
    declared = next((value for name, value in headers if name == HEADER_LENGTH), None)
    if declared is None:
        return body, memoryview(b"")
    try:
        length = int(declared)
    except ValueError:
        length = -1
    if not 0 <= length <= len(body):
        raise errors.invalid_argument(
            f"Inference-Header-Content-Length must be a number of bytes between 0 and the body's "
            f"{len(body)}, got {declared.decode(errors='replace')!r}"
        )
    return body[:length], memoryview(body)[length:]


def parameters_of(entry: Mapping[str, Any], where: str) -> Mapping[str, Any]:
    parameters = entry.get("parameters")
    if parameters is None:
        return {}
    if not isinstance(parameters, dict):
        raise errors.invalid_argument(f"{where}: 'parameters' must be an object")
    return parameters


def flag(parameters: Mapping[str, Any], name: str, where: str) -> bool | None:
    value = parameters.get(name)
    if value is not None and not isinstance(value, bool):
        raise errors.invalid_argument(f"{where}: parameters.{name} must be true or false")
    return value


def declared_shape(entry: Mapping[str, Any], where: str) -> tuple[int, ...]:
    shape = entry.get("shape")
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise errors.invalid_argument(f"{where}: 'shape' must be a list of non-negative integers")
    return tuple(shape)


def binary_size(entry: Mapping[str, Any], where: str) -> int | None:
    size = parameters_of(entry, where).get("binary_data_size")
    if size is None:
        return None
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise errors.invalid_argument(f"{where}: parameters.binary_data_size must be a non-negative integer")
    return size


def strings_from_binary(raw: memoryview, count: int, where: str) -> np.ndarray:
    """BYTES elements, each a 4-byte little-endian length and then its bytes."""
    strings = np.empty(count, dtype=object)
    offset = 0
    for index in range(count):
        if offset + LENGTH_PREFIX.size > len(raw):
            raise errors.invalid_argument(f"{where}: binary data ends inside element {index} of {count}")
        (length,) = LENGTH_PREFIX.unpack_from(raw, offset)
        offset += LENGTH_PREFIX.size
        if offset + length > len(raw):
            raise errors.invalid_argument(f"{where}: binary data ends inside element {index} of {count}")
        strings[index] = bytes(raw[offset : offset + length])
        offset += length
    if offset != len(raw):
        raise errors.invalid_argument(
            f"{where}: binary data holds {len(raw) - offset} bytes beyond its {count} elements"
        )
    return strings


def numbers_from_binary(raw: memoryview, datatype: str, count: int, where: str) -> np.ndarray:
    dtype = DATATYPES[datatype].newbyteorder("<")
    if len(raw) != count * dtype.itemsize:
        raise errors.invalid_argument(
            f"{where}: {count} {datatype} values need {count * dtype.itemsize} bytes of binary data, "
            f"binary_data_size is {len(raw)}"
        )
    array = np.frombuffer(raw, dtype=dtype)
    if datatype == "BOOL" and array.size and array.view(np.uint8).max() > 1:
        raise errors.invalid_argument(f"{where}: BOOL binary data must be bytes 0 or 1")
    return array.astype(DATATYPES[datatype], copy=False)


class BinaryData:
    """The binary section of a request body, handed out to inputs in order."""

    def __init__(self, data: memoryview) -> None:
        self.data = data
        self.offset = 0

    def take(self, size: int, where: str) -> memoryview:
        if self.offset + size > len(self.data):
            raise errors.invalid_argument(
                f"{where}: binary_data_size {size} runs past the end of the body's binary data "
                f"({len(self.data) - self.offset} bytes left; is Inference-Header-Content-Length right?)"
            )
        chunk = self.data[self.offset : self.offset + size]
        self.offset += size
        return chunk

    def check_used_up(self) -> None:
        if self.offset != len(self.data):
            raise errors.invalid_argument(
                f"the body has {len(self.data) - self.offset} bytes of binary data no input claims "
                "(parameters.binary_data_size)"
            )


def input_spec(name: Any, datatype: Any, specs: Mapping[str, TensorSpec]) -> TensorSpec:
    """The signature input a V2 input names, when its declared datatype can become the model's."""
    if not isinstance(name, str) or name not in specs:
        raise errors.invalid_argument(
            f"input name {name!r} is not an input of the signature (inputs: {', '.join(sorted(specs))})"
        )
    where = f"input '{name}'"
    if datatype not in DATATYPES:
        raise errors.invalid_argument(
            f"{where}: unknown datatype {datatype!r} (one of {', '.join(DATATYPES)})"
        )
    spec = specs[name]
    if spec.is_string != (datatype == "BYTES"):
        raise errors.invalid_argument(
            f"{where}: datatype {datatype} cannot be converted to the model's {spec.dtype_name}"
        )
    return spec


def as_model_dtype(declared: np.ndarray, datatype: str, spec: TensorSpec, where: str) -> np.ndarray:
    """Values of the request's declared datatype in the model's dtype, only when none changes."""
    return tensors.cast_tensor(declared, spec.dtype, f"{where}: {datatype} -> model {spec.dtype_name}")


def raw_input(raw: memoryview, datatype: str, count: int, spec: TensorSpec, where: str) -> np.ndarray:
    """A flat input from raw bytes (the binary extension's layout, also gRPC's raw_input_contents)."""
    if spec.is_string:
        return strings_from_binary(raw, count, where)
    return as_model_dtype(numbers_from_binary(raw, datatype, count, where), datatype, spec, where)


def shaped_input(flat: np.ndarray, shape: Sequence[int], spec: TensorSpec, where: str) -> np.ndarray:
    count = math.prod(shape)
    if flat.size != count:
        raise errors.invalid_argument(
            f"{where}: shape {list(shape)} needs {count} values, 'data' has {flat.size}"
        )
    array = flat.reshape(shape)
    tensors.check_shape(array, spec, where)
    return array


def decode_input(
    entry: Any,
    specs: Mapping[str, TensorSpec],
    binary: BinaryData | None = None,
    booleans_possible: bool = True,
) -> tuple[str, np.ndarray]:
    """One V2 request input -> (signature input key, array in the model's dtype)."""
    if not isinstance(entry, dict):
        raise errors.invalid_argument("each entry of 'inputs' must be an object")
    name = entry.get("name")
    datatype = entry.get("datatype")
    spec = input_spec(name, datatype, specs)
    where = f"input '{name}'"
    shape = declared_shape(entry, where)
    size = binary_size(entry, where)
    if size is not None and "data" in entry:
        raise errors.invalid_argument(f"{where}: has both 'data' and parameters.binary_data_size; send one")
    if size is None and "data" not in entry:
        raise errors.invalid_argument(f"{where}: missing 'data' (or parameters.binary_data_size)")
    if size is not None:
        raw = (binary or BinaryData(memoryview(b""))).take(size, where)
        flat = raw_input(raw, datatype, math.prod(shape), spec, where)
    elif spec.is_string:
        flat = tensors.strings_to_array(entry["data"], where).reshape(-1)
    else:
        declared = tensors.numbers_to_array(
            entry["data"], DATATYPES[datatype], f"{where} as {datatype}", booleans_possible
        ).reshape(-1)
        flat = as_model_dtype(declared, datatype, spec, where)
    return spec.key, shaped_input(flat, shape, spec, where)


def decode_request(
    document: Mapping[str, Any],
    signature: Signature,
    binary: memoryview | None = None,
    booleans_possible: bool = True,
) -> dict[str, np.ndarray]:
    entries = document.get("inputs")
    if not isinstance(entries, list) or not entries:
        raise errors.invalid_argument("'inputs' must be a non-empty list")
    data = BinaryData(binary if binary is not None else memoryview(b""))
    inputs: dict[str, np.ndarray] = {}
    for entry in entries:
        name, array = decode_input(entry, signature.inputs, data, booleans_possible)
        if name in inputs:
            raise errors.invalid_argument(f"input '{name}' given twice")
        inputs[name] = array
    data.check_used_up()
    missing = sorted(set(signature.inputs) - set(inputs))
    if missing:
        raise errors.invalid_argument(f"missing input(s) {', '.join(missing)}")
    return inputs


def check_outputs(names: Sequence[str], signature: Signature) -> None:
    """Every requested output name is an output of the signature."""
    unknown = sorted(set(names) - set(signature.outputs))
    if unknown:
        raise errors.invalid_argument(
            f"unknown output(s) {', '.join(unknown)} (outputs: {', '.join(sorted(signature.outputs))})"
        )


def requested_outputs(
    document: Mapping[str, Any], signature: Signature, all_binary: bool = False
) -> list[tuple[str, bool]]:
    """(output name, send as binary data) for each output the response carries, in order."""
    entries = document.get("outputs")
    if entries is None:
        return [(name, all_binary) for name in signature.outputs]
    if not isinstance(entries, list) or not all(
        isinstance(e, dict) and isinstance(e.get("name"), str) for e in entries
    ):
        raise errors.invalid_argument("'outputs' must be a list of objects with a 'name'")
    check_outputs([entry["name"] for entry in entries], signature)
    chosen = []
    for entry in entries:
        where = f"output '{entry['name']}'"
        parameters = parameters_of(entry, where)
        if parameters.get("classification"):
            raise errors.invalid_argument(f"{where}: the classification extension is not supported")
        binary = flag(parameters, "binary_data", where)
        chosen.append((entry["name"], all_binary if binary is None else binary))
    return chosen


# ---------------------------------------------------------------------------- response


def encode_output(name: str, array: np.ndarray) -> dict[str, Any]:
    return {
        "name": name,
        "datatype": datatype_of(array.dtype),
        "shape": list(array.shape),
        "data": tensors.jsonable(array.reshape(-1)),
    }


def binary_of(array: np.ndarray) -> bytes:
    """An output's raw data as the extension lays it out."""
    if array.dtype.kind == "O":
        parts = []
        for item in array.reshape(-1):
            value = item if isinstance(item, bytes) else str(item).encode()
            parts.append(LENGTH_PREFIX.pack(len(value)))
            parts.append(value)
        return b"".join(parts)
    if array.dtype.kind == "b":
        return np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()


def encode_binary_output(name: str, array: np.ndarray) -> tuple[dict[str, Any], bytes]:
    data = binary_of(array)
    entry = {
        "name": name,
        "datatype": datatype_of(array.dtype),
        "shape": list(array.shape),
        "parameters": {"binary_data_size": len(data)},
    }
    return entry, data


def infer_response(
    payload: dict[str, Any], outputs: Mapping[str, np.ndarray], chosen: Sequence[tuple[str, bool]]
) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """The response body and its extra headers (Inference-Header-Content-Length when binary)."""
    entries: list[dict[str, Any]] = []
    binaries: list[bytes] = []
    for name, binary in chosen:
        if binary:
            entry, data = encode_binary_output(name, outputs[name])
            entries.append(entry)
            binaries.append(data)
        else:
            entries.append(encode_output(name, outputs[name]))
    payload["outputs"] = entries
    header = dumps(payload)
    if not binaries:
        return header, []
    return b"".join([header, *binaries]), [(HEADER_LENGTH, str(len(header)).encode())]


class V2API:
    def __init__(self, service: ModelService) -> None:
        self.service = service

    async def server_metadata(self, params: Params, body: bytes, headers: Headers) -> Response:
        return Response(dumps(server_metadata()))

    async def model_metadata(self, params: Params, body: bytes, headers: Headers) -> Response:
        model = self.service.resolve(params["model"] or "", params.get("version"))
        entry = self.service.registry.entry(model.name)
        versions = entry.serving if entry is not None else (model.version,)
        return Response(dumps(model_metadata(model, versions)), model_version=model.version_text)

    async def model_ready(self, params: Params, body: bytes, headers: Headers) -> Response:
        """200 when the model (or the version) can serve; 503 with its state and error when not."""
        name, version = params["model"] or "", params.get("version")
        try:
            model = self.service.resolve(name, version)
        except errors.ServingError as error:
            if error.status == 404:
                raise
            answer: dict[str, Any] = {"name": name, "ready": False, "reason": error.message}
            entry = self.service.registry.entry(name)
            status = entry.versions.get(int(version)) if entry is not None and version is not None else None
            if status is not None:
                answer.update(version=version, state=status.state.value, error=status.error_message)
            return Response(dumps(answer), status=503)
        answer = {"name": model.name, "ready": True}
        if version is not None:
            answer.update(version=version, state="AVAILABLE")
        return Response(dumps(answer), model_version=model.version_text)

    async def infer(self, params: Params, body: bytes, headers: Headers) -> Response:
        model = self.service.resolve(params["model"] or "", params.get("version"))
        try:
            header, binary = split_body(body, headers)
            document = loads_object(header)
            request_id = document.get("id")
            if request_id is not None and not isinstance(request_id, str):
                raise errors.invalid_argument("'id' must be a string")
            parameters = parameters_of(document, "request")
            signature_name = parameters.get("signature_name")
            if signature_name is not None and not isinstance(signature_name, str):
                raise errors.invalid_argument("parameters.signature_name must be a string")
            signature = self.service.signature(model, signature_name)
            inputs = decode_request(document, signature, binary, may_hold_booleans(header))
            all_binary = bool(flag(parameters, "binary_data_output", "request"))
            chosen = requested_outputs(document, signature, all_binary)
            outputs = await self.service.infer(model, signature, inputs)
        except errors.ServingError as error:
            error.model_version = model.version_text
            raise
        payload: dict[str, Any] = {"model_name": model.name, "model_version": model.version_text}
        if request_id is not None:
            payload["id"] = request_id
        content, extra_headers = infer_response(payload, outputs, chosen)
        return Response(
            content,
            content_type=OCTET_STREAM if extra_headers else JSON,
            model_version=model.version_text,
            headers=extra_headers,
        )
