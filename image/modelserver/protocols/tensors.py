"""JSON values <-> numpy arrays, checked against a signature's declared dtype and shape.

Both protocols use these, with one rule for JSON values, TF Serving's
(tensorflow_serving/util/json_tensor.cc, AddValueToTensor):

- a floating-point tensor takes any JSON number, integers included, rounded to the
  nearest value of its type (TF Serving accepts `1435774380` into DT_FLOAT as
  1435774336, deliberately; see its api_rest.md, "Floating Point Precision"), and
  NaN / Infinity / -Infinity;
- an integer tensor takes JSON integers that fit it: never a decimal (`1.0`, `1e3`),
  never a value outside its range (TF Serving wraps those for DT_INT8/16/UINT8; we refuse);
- a bool tensor takes `true` / `false` only, and no number tensor takes them;
- a string tensor takes strings and `{"b64": "..."}` objects only.

Converting a tensor of one type into another (a V2 request's declared datatype into
the model's) is a separate step and must keep every value (`cast_tensor`).
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
    """A nested JSON list of numbers or booleans as an array of numpy's natural dtype.

    Integers beyond int64/uint64 (or mixed with decimals beyond float64's exact range)
    come back as an object array; `to_dtype` reads those element by element.
    """
    if isinstance(value, dict):
        raise errors.invalid_argument(f"{where}: expected a number or a (nested) list, got an object")
    try:
        raw = np.asarray(value)
    except (ValueError, TypeError, RecursionError) as error:
        raise errors.invalid_argument(
            f"{where}: not a rectangular nested list of numbers ({error})"
        ) from None
    if raw.dtype.kind == "O":
        if not all(is_json_number(element) for element in raw.reshape(-1)):
            raise errors.invalid_argument(f"{where}: expected numbers or booleans, got {kind_name(raw)}")
    elif raw.dtype.kind not in "biuf":
        raise errors.invalid_argument(f"{where}: expected numbers or booleans, got {kind_name(raw)}")
    return raw


def is_json_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def holds_booleans(value: Any) -> bool:
    """Whether a nested list holds a JSON boolean (numpy would silently read it as 0/1)."""
    if isinstance(value, bool):
        return True
    if isinstance(value, list):
        return any(holds_booleans(item) for item in value)
    return False


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
    return bool(int(array.min()) >= limits.min and int(array.max()) <= limits.max)


def to_dtype(array: np.ndarray, target: np.dtype[Any], where: str) -> np.ndarray:
    """JSON values (as `parse_numbers` read them, booleans already ruled out or in) -> `target`."""
    source = array.dtype
    if target.kind == "b":
        if source.kind != "b":
            raise errors.invalid_argument(f"{where}: expects booleans (true/false), got {kind_name(array)}")
        return array if source == target else array.astype(target)
    if source.kind == "b":
        raise errors.invalid_argument(f"{where}: expects numbers, got booleans")
    if target.kind == "f":
        # Any JSON number, rounded to the nearest value of the type (TF Serving's rule).
        return array if source == target else array.astype(target)
    # Target is an integer type: JSON integers that fit.
    if source.kind == "f" or (source.kind == "O" and any(isinstance(e, float) for e in array.reshape(-1))):
        raise errors.invalid_argument(f"{where}: expects integers, got floating-point numbers")
    if not fits_integer(array, target):
        raise errors.invalid_argument(f"{where}: values do not fit {target.name}")
    return array if source == target else array.astype(target)


def cast_tensor(array: np.ndarray, target: np.dtype[Any], where: str) -> np.ndarray:
    """A tensor of one numeric type as another, only when every value stays the same."""
    source = array.dtype
    if source == target:
        return array
    if source.kind == "b":
        return array.astype(target)  # false/true are 0/1 in every numeric type
    if target.kind == "b":
        raise errors.invalid_argument(f"{where}: {source.name} values cannot become {target.name}")
    if target.kind in INTEGER_KINDS:
        if source.kind == "f":
            raise errors.invalid_argument(f"{where}: floating-point values cannot become {target.name}")
        if not fits_integer(array, target):
            raise errors.invalid_argument(f"{where}: values do not fit {target.name}")
        return array.astype(target)
    converted = array.astype(target)
    if source.kind == "f":
        if np.any(np.isinf(converted) & ~np.isinf(array)):
            raise errors.invalid_argument(f"{where}: values overflow {target.name}")
        return converted
    if not np.array_equal(converted.astype(source), array):
        raise errors.invalid_argument(
            f"{where}: integers too large to be represented exactly as {target.name}"
        )
    return converted


def numbers_to_array(value: Any, target: np.dtype[Any], where: str, booleans_possible: bool) -> np.ndarray:
    """JSON numbers (or booleans) as an array of `target`, by the module's one rule.

    `booleans_possible` is False when the request body holds no `true`/`false` token
    (`json.may_hold_booleans`): then no element can be a bool and the element-wise look
    for one is skipped.
    """
    array = parse_numbers(value, where)
    if booleans_possible and target.kind != "b" and array.dtype.kind != "b" and holds_booleans(value):
        raise errors.invalid_argument(f"{where}: expects numbers, got booleans")
    return to_dtype(array, target, where)


def check_shape(array: np.ndarray, spec: TensorSpec, where: str) -> None:
    if spec.shape is None or not spec.shape_checked:
        return
    shape = array.shape
    tail = spec.fixed_tail
    fits_fixed = tail is not None and shape[1:] == tail and len(shape) == len(spec.shape)
    if fits_fixed and (spec.shape[0] < 0 or shape[0] == spec.shape[0]):
        return
    if array.ndim != len(spec.shape) or any(
        expected >= 0 and actual != expected for actual, expected in zip(array.shape, spec.shape, strict=True)
    ):
        raise errors.invalid_argument(
            f"{where}: expects shape {spec.shape_text()}, got [{', '.join(map(str, array.shape))}]"
        )


def to_array(
    value: Any, spec: TensorSpec, where: str | None = None, booleans_possible: bool = True
) -> np.ndarray:
    """A JSON value (nested lists, TF Serving style) as the array `spec` asks for."""
    where = where or spec.description
    if spec.is_string:
        array = strings_to_array(value, where)
    else:
        array = numbers_to_array(value, spec.dtype, where, booleans_possible)
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
    if array.ndim == 0:  # a scalar output: orjson writes numpy scalars, not 0-d arrays
        return array[()]
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
