"""The little of ASGI the server needs: read a bounded (possibly compressed) body, send one response."""

from __future__ import annotations

import zlib
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from modelserver import errors

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

JSON = b"application/json"
# zlib window bits: 16 + 15 = gzip only, 15 = zlib, -15 = raw deflate (no header).
GZIP_WBITS = 31
ZLIB_WBITS = 15
RAW_DEFLATE_WBITS = -15
INFLATE_STEP_BYTES = 64 * 1024


@dataclass
class Response:
    body: bytes
    status: int = 200
    content_type: bytes = JSON
    model_version: str | None = None
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)


class BodyBudget(Protocol):
    """Where the bytes a body occupies are counted (admission.Ticket)."""

    def reserve_body(self, raw: int, decoded: int) -> None: ...


def header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


def body_headers(scope: Scope) -> tuple[bytes | None, bytes | None]:
    """Content-Length and Content-Encoding, in one pass over the headers."""
    length = encoding = None
    for key, value in scope["headers"]:
        if key == b"content-length":
            length = value
        elif key == b"content-encoding":
            encoding = value
    return length, encoding


def declared_length(declared: bytes | None, limit: int) -> int | None:
    """Content-Length, or None when the body is chunked; 413 when it alone exceeds `limit`.

    A compressed body's declared length is its compressed size: the limit is checked
    again on the decompressed bytes.
    """
    if declared is None:
        return None
    try:
        length = int(declared)
    except ValueError:
        raise errors.invalid_argument("Content-Length is not a number") from None
    if length < 0:
        raise errors.invalid_argument("Content-Length is negative")
    if length > limit:
        raise errors.payload_too_large(limit)
    return length


def refuse_encoding(encoding: bytes) -> errors.ServingError:
    return errors.ServingError(
        415,
        f"Content-Encoding {encoding.decode('latin-1')!r} is not supported; send gzip, deflate or identity",
        "UNIMPLEMENTED",
        None,
        ((b"connection", b"close"),),
    )


class Inflater:
    """Decompresses a gzip or deflate body step by step, never holding more than `limit` bytes of output.

    Each zlib call produces at most INFLATE_STEP_BYTES (zlib's `max_length`), so a
    zip bomb stops at the limit after inflating only that much; concatenated gzip
    members are one body (RFC 1952). "deflate" is the zlib format (RFC 9110); a raw
    deflate stream, which some clients send instead, is accepted too.
    """

    def __init__(self, encoding: bytes, limit: int) -> None:
        self.gzip = encoding in (b"gzip", b"x-gzip")
        self.limit = limit
        self.size = 0
        self.started = False
        self.inflater = zlib.decompressobj(GZIP_WBITS if self.gzip else ZLIB_WBITS)

    def feed(self, data: bytes) -> list[bytes]:
        output: list[bytes] = []
        try:
            if not self.started and not self.gzip and data:
                self.started = True
                if not looks_like_zlib(data):
                    self.inflater = zlib.decompressobj(RAW_DEFLATE_WBITS)
            while data:
                if self.inflater.eof:
                    if not self.gzip:
                        raise errors.invalid_argument(
                            "Request body has data after the end of its deflate stream"
                        )
                    self.inflater = zlib.decompressobj(GZIP_WBITS)  # the next gzip member
                chunk = self.inflater.decompress(data, INFLATE_STEP_BYTES)
                self.count(chunk, output)
                data = self.inflater.unconsumed_tail or self.inflater.unused_data
        except zlib.error as error:
            kind = "gzip" if self.gzip else "deflate"
            raise errors.invalid_argument(f"Request body is not valid {kind} data: {error}") from None
        return output

    def finish(self) -> None:
        if not self.inflater.eof:
            kind = "gzip" if self.gzip else "deflate"
            raise errors.invalid_argument(f"Request body ends inside its {kind} stream (truncated)")

    def count(self, chunk: bytes, output: list[bytes]) -> None:
        if not chunk:
            return
        self.size += len(chunk)
        if self.size > self.limit:
            raise errors.payload_too_large(self.limit, decompressed=True)
        output.append(chunk)


def looks_like_zlib(data: bytes) -> bool:
    """A zlib header: compression method 8 and a header checksum that divides by 31 (RFC 1950)."""
    return len(data) >= 2 and data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0


def inflater_for(encoding: bytes | None, limit: int) -> Inflater | None:
    if encoding is None:
        return None
    encoding = encoding.strip().lower()
    if encoding in (b"", b"identity"):
        return None
    if encoding in (b"gzip", b"x-gzip", b"deflate"):
        return Inflater(encoding, limit)
    raise refuse_encoding(encoding)


async def read_body(scope: Scope, receive: Receive, limit: int, budget: BodyBudget | None = None) -> bytes:
    """The whole request body, decompressed, refusing (413) as soon as it is known to exceed `limit`.

    A declared Content-Length over the limit is refused before reading anything; a
    chunked body is counted while it streams, and a compressed one while it inflates,
    so at most `limit` bytes of body are ever buffered. `budget` is told the bytes a
    declared length will take before anything is read, and the bytes held as they
    arrive; it may refuse either.
    """
    length_header, encoding = body_headers(scope)
    declared = declared_length(length_header, limit)
    inflater = inflater_for(encoding, limit)
    if budget is not None and declared:
        budget.reserve_body(declared, declared)
    chunks: list[bytes] = []
    raw = 0
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise errors.ServingError(499, "Client closed the request", "CANCELLED")
        chunk = message.get("body", b"")
        more = message.get("more_body", False)
        if chunk:
            raw += len(chunk)
            if inflater is None:
                if raw > limit:
                    raise errors.payload_too_large(limit)
                chunks.append(chunk)
                size = raw
            else:
                if raw > limit:  # even compressed it is over the limit
                    raise errors.payload_too_large(limit)
                for piece in inflater.feed(chunk):
                    chunks.append(piece)
                    size += len(piece)
            if budget is not None:
                budget.reserve_body(raw, size)
        if not more:
            break
    if inflater is not None:
        inflater.finish()
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def send_response(send: Send, response: Response, extra_headers: list[tuple[bytes, bytes]]) -> None:
    headers = [
        (b"content-type", response.content_type),
        (b"content-length", str(len(response.body)).encode()),
        *response.headers,
        *extra_headers,
    ]
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": response.body})
