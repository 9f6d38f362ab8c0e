"""JSON values <-> numpy arrays, checked against a signature's declared dtype and shape.

Both protocols use these. Conversions are strict where a silent one would change the
client's data: strings are never parsed as numbers, floats never truncated to integers,
integers must fit the target type.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

import numpy as np

from modelserver import errors
from modelserver.runtime import TensorSpec

NUMBER_KINDS = "iuf"
INTEGER_KINDS = "iu"


def describe(spec: TensorSpec) -> str:
    return f"input '{spec.key}' ({spec.dtype_name}, shape {spec.shape_text()})"


def decode_string(value: Any, where: str) -> bytes:
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, dict) and set(value) == {"b64"} and isinstance(value["b64"], str):
        try:
            return base64.b64decode(value["b64"], validate=True)
        except (binascii.Error, ValueError):
            raise errors.invalid_argument(f"{where}: invalid base64 in {{'b64': ...}}") from None
    raise errors.invalid_argument(f'{where}: expected a string or {{"b64": ...}}, got {type(value).__name__}')


def strings_to_array(value: Any, where: str) -> np.ndarray:
    try:
        raw = np.asarray(value, dtype=object)
    except ValueError as error:
        raise errors.invalid_argument(f"{where}: not a rectangular nested list ({error})") from None
    result = np.empty(raw.shape, dtype=object)
    for index, element in np.ndenumerate(raw):
        result[index] = decode_string(element, where)
    return result


def parse_numbers(value: Any, where: str) -> np.ndarray:
    """A nested JSON list of numbers or booleans as an array of numpy's natural dtype."""
    if isinstance(value, dict):
        raise errors.invalid_argument(f"{where}: expected a number or a (nested) list, got an object")
    try:
        raw = np.asarray(value)
    except (ValueError, TypeError, RecursionError) as error:
        raise errors.invalid_argument(
            f"{where}: not a rectangular nested list of numbers ({error})"
        ) from None
    if raw.dtype.kind not in "biuf":
        raise errors.invalid_argument(f"{where}: expected numbers or booleans, got {kind_name(raw)}")
    return raw


def kind_name(array: np.ndarray) -> str:
    kind = array.dtype.kind
    if kind == "b":
        return "booleans"
    if kind in INTEGER_KINDS:
        return "integers"
    if kind == "f":
        return "floating-point numbers"
    if kind in "US":
        return "strings"
    return "mixed or nested values of different lengths"


def fits_integer(array: np.ndarray, dtype: np.dtype[Any]) -> bool:
    if array.size == 0:
        return True
    limits = np.iinfo(dtype)
    return bool(array.min() >= limits.min and array.max() <= limits.max)


def cast_checked(array: np.ndarray, target: np.dtype[Any], where: str) -> np.ndarray:
    """Cast to `target` only when no value changes (beyond float rounding between float types)."""
    source = array.dtype
    if source == target:
        return array
    if target.kind == "b":
        if source.kind != "b":
            raise errors.invalid_argument(f"{where}: expects booleans, got {kind_name(array)}")
        return array.astype(target)
    if target.kind in INTEGER_KINDS:
        if source.kind == "f":
            raise errors.invalid_argument(f"{where}: expects integers, got floating-point numbers")
        if source.kind == "b":
            return array.astype(target)
        if not fits_integer(array, target):
            raise errors.invalid_argument(f"{where}: values do not fit {target.name}")
        return array.astype(target)
    # Target is floating point.
    if source.kind == "f":
        converted = array.astype(target)
        if np.any(np.isinf(converted) & ~np.isinf(array)):
            raise errors.invalid_argument(f"{where}: values overflow {target.name}")
        return converted
    converted = array.astype(target)
    if source.kind in INTEGER_KINDS and not np.array_equal(converted.astype(source), array):
        raise errors.invalid_argument(
            f"{where}: integers too large to be represented exactly as {target.name}"
        )
    return converted


def check_shape(array: np.ndarray, spec: TensorSpec, where: str) -> None:
    if spec.shape is None:
        return
    if array.ndim != len(spec.shape) or any(
        expected >= 0 and actual != expected for actual, expected in zip(array.shape, spec.shape, strict=True)
    ):
        raise errors.invalid_argument(
            f"{where}: expects shape {spec.shape_text()}, got [{', '.join(map(str, array.shape))}]"
        )


def to_array(value: Any, spec: TensorSpec, where: str | None = None) -> np.ndarray:
    """A JSON value (nested lists, TF Serving style) as the array `spec` asks for."""
    where = where or describe(spec)
    if spec.is_string:
        array = strings_to_array(value, where)
    else:
        array = cast_checked(parse_numbers(value, where), spec.dtype, where)
    check_shape(array, spec, where)
    return array


def jsonable(array: np.ndarray, binary: bool = False) -> Any:
    """An output array in a form orjson serializes (numpy arrays natively, strings decoded).

    Strings are returned as text when they are UTF-8, else as {"b64": ...}; `binary`
    forces {"b64": ...} (TF Serving does so for outputs named *_bytes).
    """
    dtype = array.dtype
    kind = dtype.kind
    if kind == "O":
        return np.vectorize(lambda item: encode_string(item, binary), otypes=[object])(array).tolist()
    if kind not in "biuf" or dtype.itemsize > 8:
        return array.tolist()
    if kind == "f" and dtype.itemsize < 4:
        array = array.astype(np.float32)
    return np.ascontiguousarray(array)


def encode_string(item: Any, binary: bool) -> Any:
    if isinstance(item, bytes):
        if not binary:
            try:
                return item.decode()
            except UnicodeDecodeError:
                pass
        return {"b64": base64.b64encode(item).decode()}
    return item


def named_inputs(value: Mapping[str, Any], specs: Mapping[str, TensorSpec], where: str) -> dict[str, Any]:
    """Match a {name: tensor} object to the signature's inputs (none missing, none unknown)."""
    unknown = sorted(set(value) - set(specs))
    missing = sorted(set(specs) - set(value))
    if unknown:
        raise errors.invalid_argument(
            f"{where}: unknown input(s) {', '.join(unknown)}; the signature takes {', '.join(sorted(specs))}"
        )
    if missing:
        raise errors.invalid_argument(f"{where}: missing input(s) {', '.join(missing)}")
    return dict(value)
