"""JSON in and out: orjson, numpy arrays serialized natively, parse errors as 400.

TF Serving's JSON is not strict RFC 8259: its parser (rapidjson with
kParseNanAndInfFlag) reads `NaN`, `Infinity` and `-Infinity`, and its writer emits them
for non-finite floats (tensorflow_serving/util/json_tensor.cc). orjson does neither, so:

- a body orjson refuses that holds one of those tokens is parsed again by the standard
  library's parser, which reads them (only such bodies pay for the slower parser);
- orjson writes a non-finite float as `null`, and nothing else in our answers is null,
  so an answer containing `null` is written again with those values as the tokens.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import orjson

from modelserver import errors

DUMP_OPTIONS = orjson.OPT_SERIALIZE_NUMPY
NON_FINITE_TOKENS = (b"NaN", b"Infinity")
NAN = orjson.Fragment(b"NaN")
POSITIVE_INFINITY = orjson.Fragment(b"Infinity")
NEGATIVE_INFINITY = orjson.Fragment(b"-Infinity")


def loads_object(body: bytes) -> dict[str, Any]:
    """A request body that must be a JSON object.

    orjson refuses nesting deeper than 1024 levels itself (a JSONDecodeError, not a
    crash), so nesting bombs end here as 400 before any Python recursion happens.
    """
    if not body:
        raise errors.invalid_argument("Request body is empty; expected a JSON object")
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        if not any(token in body for token in NON_FINITE_TOKENS):
            raise errors.invalid_argument(f"Malformed JSON: {error}") from None
        document = loads_with_non_finite(body, error)
    if not isinstance(document, dict):
        raise errors.invalid_argument(f"Request body must be a JSON object, got {type(document).__name__}")
    return document


def loads_with_non_finite(body: bytes, orjson_error: orjson.JSONDecodeError) -> Any:
    """The standard library's parser, which reads NaN, Infinity and -Infinity as floats."""
    try:
        return json.loads(body)
    except RecursionError:
        raise errors.invalid_argument(f"Malformed JSON: {orjson_error}") from None
    except ValueError as error:  # JSONDecodeError, UnicodeDecodeError, too many digits
        raise errors.invalid_argument(f"Malformed JSON: {error}") from None


def may_hold_booleans(body: bytes) -> bool:
    """False when the body has no `true`/`false` token, so no value decoded from it is a bool."""
    return b"true" in body or b"false" in body


def dumps(payload: Any) -> bytes:
    encoded = orjson.dumps(payload, option=DUMP_OPTIONS)
    if b"null" in encoded:
        return orjson.dumps(with_non_finite_tokens(payload), option=DUMP_OPTIONS)
    return encoded


def float_token(value: float) -> Any:
    if math.isnan(value):
        return NAN
    return POSITIVE_INFINITY if value > 0 else NEGATIVE_INFINITY


def with_non_finite_tokens(value: Any) -> Any:
    """`value` with every NaN/±Infinity (Python, numpy scalar or in an array) as its JSON token."""
    if isinstance(value, dict):
        return {key: with_non_finite_tokens(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [with_non_finite_tokens(item) for item in value]
    if isinstance(value, np.ndarray):
        if value.dtype.kind != "f" or bool(np.isfinite(value).all()):
            return value
        flat = value.reshape(-1)
        tokens = np.empty(flat.shape, dtype=object)
        for index, element in enumerate(flat):  # numpy scalars: float32 keeps its shortest text
            tokens[index] = float_fragment(element)
        return tokens.reshape(value.shape).tolist()
    if isinstance(value, (float, np.floating)) and not math.isfinite(value):
        return float_token(float(value))
    return value


def float_fragment(value: np.floating[Any]) -> orjson.Fragment:
    if np.isfinite(value):
        return orjson.Fragment(orjson.dumps(value, option=DUMP_OPTIONS))
    return float_token(float(value))
