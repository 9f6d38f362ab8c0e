"""JSON in and out: orjson, numpy arrays serialized natively, parse errors as 400."""

from __future__ import annotations

from typing import Any

import orjson

from modelserver import errors

DUMP_OPTIONS = orjson.OPT_SERIALIZE_NUMPY


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
        raise errors.invalid_argument(f"Malformed JSON: {error}") from None
    if not isinstance(document, dict):
        raise errors.invalid_argument(f"Request body must be a JSON object, got {type(document).__name__}")
    return document


def dumps(payload: Any) -> bytes:
    return orjson.dumps(payload, option=DUMP_OPTIONS)
