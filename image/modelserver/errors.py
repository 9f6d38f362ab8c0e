"""Errors as both APIs report them: a canonical status code, an HTTP status, `{"error": "..."}`.

The HTTP mapping is TF Serving's (tensorflow_serving/model_servers/http_server.cc,
ToHTTPStatusCode); 405 and 413 are HTTP-level errors TF Serving has no code for.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import orjson

# Canonical (absl / tf.errors) code -> (name, HTTP status).
CANONICAL_CODES: dict[int, tuple[str, int]] = {
    1: ("CANCELLED", 499),
    2: ("UNKNOWN", 500),
    3: ("INVALID_ARGUMENT", 400),
    4: ("DEADLINE_EXCEEDED", 504),
    5: ("NOT_FOUND", 404),
    6: ("ALREADY_EXISTS", 409),
    7: ("PERMISSION_DENIED", 403),
    8: ("RESOURCE_EXHAUSTED", 429),
    9: ("FAILED_PRECONDITION", 400),
    10: ("ABORTED", 409),
    11: ("OUT_OF_RANGE", 400),
    12: ("UNIMPLEMENTED", 501),
    13: ("INTERNAL", 500),
    14: ("UNAVAILABLE", 503),
    15: ("DATA_LOSS", 500),
    16: ("UNAUTHENTICATED", 401),
}


@dataclass
class ServingError(Exception):
    """An error answered to the client; `model_version` is set once the model is known."""

    status: int
    message: str
    code: str = "UNKNOWN"
    model_version: str | None = None
    headers: tuple[tuple[bytes, bytes], ...] = ()

    def __str__(self) -> str:
        return self.message

    def body(self) -> bytes:
        return error_body(self.message)


def error_body(message: str) -> bytes:
    return orjson.dumps({"error": message})


def invalid_argument(message: str) -> ServingError:
    return ServingError(400, message, "INVALID_ARGUMENT")


def not_found(message: str) -> ServingError:
    return ServingError(404, message, "NOT_FOUND")


def resource_exhausted(message: str) -> ServingError:
    return ServingError(429, message, "RESOURCE_EXHAUSTED")


def deadline_exceeded(message: str) -> ServingError:
    return ServingError(504, message, "DEADLINE_EXCEEDED")


def unavailable(message: str) -> ServingError:
    return ServingError(503, message, "UNAVAILABLE")


def internal(message: str) -> ServingError:
    return ServingError(500, message, "INTERNAL")


def method_not_allowed(method: str, path: str, allowed: list[str]) -> ServingError:
    allow = ", ".join(sorted(allowed)).encode()
    return ServingError(
        405,
        f"Method {method} not allowed for {path}; use {', '.join(sorted(allowed))}",
        "UNIMPLEMENTED",
        None,
        ((b"allow", allow),),
    )


def payload_too_large(limit: int, decompressed: bool = False) -> ServingError:
    # The rest of the body is never read: close the connection rather than drain it.
    after = " once decompressed" if decompressed else ""
    return ServingError(
        413,
        f"Request body exceeds the limit of {limit} bytes{after} (TFMS_MAX_BODY_BYTES)",
        "RESOURCE_EXHAUSTED",
        None,
        ((b"connection", b"close"),),
    )


def from_canonical_code(code: int, message: str) -> ServingError:
    name, status = CANONICAL_CODES.get(code, ("UNKNOWN", 500))
    return ServingError(status, message, name)


# Lines of a TensorFlow error message that describe TF's internals, not the request.
_TF_NOISE = re.compile(r"^(Graph execution error:|Detected at node|<stack traces unavailable>)")
_TF_NODE_SUFFIX = re.compile(r"\s*\[\[\{\{node [^}]*\}\}\]\].*$", re.DOTALL)


def tensorflow_message(message: str) -> str:
    lines = [line for line in message.splitlines() if line.strip() and not _TF_NOISE.match(line.strip())]
    return _TF_NODE_SUFFIX.sub("", "\n".join(lines)).strip() or message.strip()


def from_tensorflow(error: Exception) -> ServingError:
    """Map a tf.errors.OpError (it carries a canonical `error_code`) to its HTTP status."""
    code = getattr(error, "error_code", 2)
    message = getattr(error, "message", None) or str(error)
    return from_canonical_code(int(code), tensorflow_message(message))
