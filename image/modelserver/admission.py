"""Admission of requests with a body: a concurrency limit and a byte budget, 429 beyond either.

Memory is bounded by bytes, not by request count: a request holds a `Ticket` for the
bytes it may occupy, its body's own bytes plus DECODE_EXPANSION times its decompressed
size (what decoding JSON into Python objects and arrays peaks at). A declared
Content-Length is reserved before anything is read, so an over-budget request is
refused at once, before its body is read or decoded; a chunked or compressed body
grows its ticket as it streams in and inflates, and is refused the moment it would
exceed the budget. Tickets are released when the response has been sent.

A gRPC request (grpc_api) is admitted the same way: its message arrives whole (bounded by
TFMS_GRPC_MAX_MESSAGE_BYTES), and its ticket reserves its bytes plus
MESSAGE_DECODE_EXPANSION times them before it is parsed.

A refusal keeps the connection open: uvicorn drops the unread rest of a body whose
response is complete as it arrives (never buffering it), so the client reads its 429
and may retry on the same connection, instead of an upload cut off by a reset.

All of it runs on the event loop: plain integers, no locks.
"""

from __future__ import annotations

from modelserver import errors
from modelserver.settings import DECODE_EXPANSION, MESSAGE_DECODE_EXPANSION


class Ticket:
    __slots__ = ("admission", "held")

    def __init__(self, admission: Admission) -> None:
        self.admission = admission
        self.held = 0

    def reserve_body(self, raw: int, decoded: int) -> None:
        """Grow the reservation to cover `raw` body bytes that decode from `decoded` bytes of JSON."""
        self.reserve(raw + decoded * DECODE_EXPANSION)

    def reserve_message(self, size: int) -> None:
        """Reserve for a gRPC request message of `size` bytes, before it is parsed."""
        self.reserve(size * (1 + MESSAGE_DECODE_EXPANSION))

    def reserve(self, total: int) -> None:
        extra = total - self.held
        if extra <= 0:
            return
        admission = self.admission
        # Settings guarantee that one body of the largest size fits the budget on its own.
        if admission.bytes_in_flight + extra > admission.max_bytes:
            raise errors.ServingError(
                429,
                f"Server is busy: request bodies in flight would exceed {admission.max_bytes} bytes "
                "(TFMS_MAX_INFLIGHT_BYTES); retry later",
                "RESOURCE_EXHAUSTED",
            )
        admission.bytes_in_flight += extra
        self.held = total

    def release(self) -> None:
        admission = self.admission
        admission.bytes_in_flight -= self.held
        admission.requests_in_flight -= 1
        self.held = 0


class Admission:
    def __init__(self, max_requests: int, max_bytes: int) -> None:
        self.max_requests = max_requests
        self.max_bytes = max_bytes
        self.requests_in_flight = 0
        self.bytes_in_flight = 0

    def admit(self) -> Ticket:
        """A ticket for one request (release it when answered); 429 when the server is full.

        The ticket holds no bytes yet: the body reader reserves a declared length before
        it reads anything (asgi.read_body), and what streams in as it arrives.
        """
        if self.requests_in_flight >= self.max_requests:
            raise errors.ServingError(
                429,
                f"Server is busy: {self.max_requests} requests in flight (TFMS_MAX_CONCURRENT_REQUESTS); "
                "retry later",
                "RESOURCE_EXHAUSTED",
            )
        self.requests_in_flight += 1
        return Ticket(self)
