"""TensorFlow's TensorProto <-> numpy arrays, checked against a signature, as TF Serving reads them.

TF Serving's gRPC Predict turns each input TensorProto into a tensor with
`Tensor::FromProto` (tensorflow/core/framework/tensor.cc) and feeds it to the session,
and answers with `Tensor::AsProtoField` (predict_util.cc, its default serialization):

- the request's dtype must be the signature's (the session refuses any other with
  INVALID_ARGUMENT): nothing is converted;
- values come from `tensor_content` (raw little-endian bytes, exactly one element's
  size per element) or from the dtype's typed field (`float_val`, `int_val`, ...). With
  fewer typed values than the shape holds, the last one is repeated to fill it (none at
  all: zeros), which is how `tf.make_tensor_proto(1.0, shape=[3])` is read. TF Serving
  silently drops typed values beyond the shape; here that is an INVALID_ARGUMENT, and so
  is an int8/int16/uint8/uint16 value in `int_val` that does not fit its type (TF
  truncates it), by tensors.py's rule that no value changes on the way in;
- answers put every value in the typed field of its dtype (`float_val` for DT_FLOAT),
  never `tensor_content`, as TF Serving's default does; `tf.make_ndarray` reads both.

Shapes are checked against the signature by tensors.check_shape, as for JSON.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2

from modelserver import errors
from modelserver.protocols import tensors
from modelserver.runtime import Signature, TensorSpec

TensorProto = tensor_pb2.TensorProto

# numpy dtype -> (DataType, the TensorProto field holding its values, that field's element dtype).
FIELDS: dict[np.dtype[Any], tuple[int, str, np.dtype[Any]]] = {
    np.dtype(np.float32): (types_pb2.DT_FLOAT, "float_val", np.dtype(np.float32)),
    np.dtype(np.float64): (types_pb2.DT_DOUBLE, "double_val", np.dtype(np.float64)),
    np.dtype(np.float16): (types_pb2.DT_HALF, "half_val", np.dtype(np.int32)),
    np.dtype(np.int8): (types_pb2.DT_INT8, "int_val", np.dtype(np.int32)),
    np.dtype(np.int16): (types_pb2.DT_INT16, "int_val", np.dtype(np.int32)),
    np.dtype(np.int32): (types_pb2.DT_INT32, "int_val", np.dtype(np.int32)),
    np.dtype(np.int64): (types_pb2.DT_INT64, "int64_val", np.dtype(np.int64)),
    np.dtype(np.uint8): (types_pb2.DT_UINT8, "int_val", np.dtype(np.int32)),
    np.dtype(np.uint16): (types_pb2.DT_UINT16, "int_val", np.dtype(np.int32)),
    np.dtype(np.uint32): (types_pb2.DT_UINT32, "uint32_val", np.dtype(np.uint32)),
    np.dtype(np.uint64): (types_pb2.DT_UINT64, "uint64_val", np.dtype(np.uint64)),
    np.dtype(np.bool_): (types_pb2.DT_BOOL, "bool_val", np.dtype(np.bool_)),
    np.dtype(np.complex64): (types_pb2.DT_COMPLEX64, "scomplex_val", np.dtype(np.float32)),
    np.dtype(np.complex128): (types_pb2.DT_COMPLEX128, "dcomplex_val", np.dtype(np.float64)),
}
DTYPE_OF = {data_type: dtype for dtype, (data_type, _, _) in FIELDS.items()}


def dtype_name(data_type: int) -> str:
    try:
        return types_pb2.DataType.Name(data_type)
    except ValueError:
        return f"DataType {data_type}"


def proto_shape(proto: TensorProto, where: str) -> tuple[int, ...]:
    shape = proto.tensor_shape
    if shape.unknown_rank:
        raise errors.invalid_argument(
            f"{where}: tensor_shape has unknown rank; a request tensor needs a shape"
        )
    dims = tuple(int(dim.size) for dim in shape.dim)
    if any(size < 0 for size in dims):
        raise errors.invalid_argument(f"{where}: tensor_shape {list(dims)} has a negative dimension")
    return dims


def string_values(proto: TensorProto, count: int, where: str) -> np.ndarray:
    if proto.tensor_content:
        raise errors.invalid_argument(f"{where}: DT_STRING values go in string_val, not tensor_content")
    values = list(proto.string_val)
    flat = np.empty(count, dtype=object)
    if len(values) > count:
        raise errors.invalid_argument(f"{where}: {len(values)} values in string_val for {count} elements")
    if values:
        flat[: len(values)] = values
        flat[len(values) :] = values[-1]
    else:
        flat[:] = b""
    return flat


def numeric_values(proto: TensorProto, dtype: np.dtype[Any], count: int, where: str) -> np.ndarray:
    _, field, element = FIELDS[dtype]
    if proto.tensor_content:
        content = proto.tensor_content
        if len(content) != count * dtype.itemsize:
            raise errors.invalid_argument(
                f"{where}: tensor_content holds {len(content)} bytes, {count} {dtype.name} values need "
                f"{count * dtype.itemsize}"
            )
        return np.frombuffer(content, dtype=dtype.newbyteorder("<")).astype(dtype, copy=False)
    typed = np.asarray(getattr(proto, field), dtype=element)
    if dtype.kind == "c":
        if typed.size % 2:
            raise errors.invalid_argument(
                f"{where}: {field} holds an odd number of values (real, imag pairs)"
            )
        typed = typed.view(dtype)
    elif dtype == np.float16:
        typed = typed.astype(np.uint16).view(np.float16)  # half_val carries the bit patterns
    elif element != dtype:
        typed = tensors.cast_tensor(typed, dtype, f"{where} ({field})")
    if typed.size > count:
        raise errors.invalid_argument(f"{where}: {typed.size} values in {field} for {count} elements")
    if typed.size == count:
        return typed
    if typed.size == 0:
        return np.zeros(count, dtype=dtype)
    return np.pad(typed, (0, count - typed.size), mode="edge")  # TF repeats the last value


def to_array(proto: TensorProto, spec: TensorSpec, where: str) -> np.ndarray:
    """One request TensorProto as the array `spec` asks for (INVALID_ARGUMENT when it cannot be)."""
    expected = types_pb2.DataType.Value(spec.dtype_name)
    if proto.dtype != expected:
        raise errors.invalid_argument(
            f"{where}: expects {spec.dtype_name}, got {dtype_name(proto.dtype)} (TensorProto.dtype)"
        )
    shape = proto_shape(proto, where)
    count = math.prod(shape)
    if spec.is_string:
        flat = string_values(proto, count, where)
    else:
        flat = numeric_values(proto, spec.dtype, count, where)
    array = flat.reshape(shape)
    tensors.check_shape(array, spec, where)
    return array


def signature_inputs(inputs: Mapping[str, TensorProto], signature: Signature) -> dict[str, np.ndarray]:
    """A PredictRequest's inputs by key: every input of the signature, none other."""
    named = tensors.named_inputs(inputs, signature.inputs, "inputs")
    return {
        key: to_array(proto, signature.inputs[key], signature.inputs[key].description)
        for key, proto in named.items()
    }


def fill(proto: TensorProto, array: np.ndarray) -> None:
    """Write an output array into `proto`: dtype, shape and the dtype's typed field (AsProtoField)."""
    proto.tensor_shape.CopyFrom(
        tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in array.shape]
        )
    )
    flat = array.reshape(-1)
    if array.dtype.kind == "O":
        proto.dtype = types_pb2.DT_STRING
        proto.string_val.extend(item if isinstance(item, bytes) else str(item).encode() for item in flat)
        return
    entry = FIELDS.get(array.dtype)
    if entry is None:
        raise errors.internal(f"output of dtype {array.dtype} has no TensorProto form")
    data_type, field, element = entry
    proto.dtype = data_type
    if array.dtype == np.float16:
        values = flat.view(np.uint16).astype(np.int32)
    elif array.dtype.kind == "c":
        values = flat.view(element)
    else:
        values = flat.astype(element, copy=False)
    getattr(proto, field).extend(values.tolist())
