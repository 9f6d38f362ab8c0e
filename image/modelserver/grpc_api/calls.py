"""One gRPC call, as `app.ModelServerApp.handle` is one HTTP request: shared limits, errors, metrics.

Per call: (inference methods) admission against the server's one request and byte budget
(429 there is RESOURCE_EXHAUSTED here), then the method under the server's one request
timeout (the same sweep as HTTP's, deadlines.py), then the answer with `x-served-by`
and `x-model-version` in its trailing metadata, errors included, then the same request
metrics as HTTP with protocol="grpc" and, as `status`, the HTTP status TF Serving maps
the gRPC code to (OK 200, INVALID_ARGUMENT 400, NOT_FOUND 404, RESOURCE_EXHAUSTED 429,
UNAVAILABLE 503, DEADLINE_EXCEEDED 504; errors.py), so one query counts both transports.

Methods get the request as bytes and return the response as bytes (the handlers parse
and serialize, so admission runs before anything is parsed). Errors in two layers, as
for HTTP: a ServingError is answered with its code and message (cut to TF Serving's
1024 characters, grpc_status_util.cc); anything else is a bug, logged and answered
INTERNAL. A call the client cancels (or whose client deadline passes: gRPC cancels the
handler then) is counted with status 499, like a closed HTTP request; one cut off at
the end of the drain's grace counts as cut off, which makes the exit code 1.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import grpc
from google.protobuf.message import DecodeError

from modelserver import errors
from modelserver.admission import Admission
from modelserver.deadlines import RequestDeadlines
from modelserver.metrics import Metrics

log = logging.getLogger(__name__)

GRPC = "grpc"
SERVED_BY = "x-served-by"
MODEL_VERSION = "x-model-version"
# tensorflow_serving/model_servers/grpc_status_util.cc: kErrorMessageLimit.
ERROR_MESSAGE_LIMIT = 1024
CANCELLED_STATUS = 499


class Outcome:
    """What a method learned about its call: the model (for metrics) and the version that answered."""

    __slots__ = ("model", "version")

    def __init__(self) -> None:
        self.model = ""
        self.version: str | None = None


Method = Callable[[bytes, Outcome], Awaitable[bytes]]


class RequestCounts(Protocol):
    """The server's request counters, shared with HTTP (the app): batching reads `in_flight`."""

    in_flight: int
    cancelled_requests: int


@dataclass(frozen=True)
class MethodSpec:
    """A method and whether its calls are admitted against the request and byte budget."""

    method: Method
    admitted: bool


def parse(message_type: Any, raw: bytes) -> Any:
    """A request message from its bytes; INVALID_ARGUMENT when they are not one."""
    try:
        return message_type.FromString(raw)
    except DecodeError as error:
        raise errors.invalid_argument(f"Malformed {message_type.DESCRIPTOR.name}: {error}") from None


def truncated(message: str) -> str:
    if len(message) > ERROR_MESSAGE_LIMIT:
        return message[:ERROR_MESSAGE_LIMIT] + "...TRUNCATED"
    return message


class Calls:
    """Runs methods as gRPC calls under the server's shared admission, timeout and metrics."""

    def __init__(
        self,
        admission: Admission,
        deadlines: RequestDeadlines,
        metrics: Metrics,
        counts: RequestCounts,
        instance_name: str,
        request_timeout_seconds: float,
    ) -> None:
        self.admission = admission
        self.deadlines = deadlines
        self.metrics = metrics
        self.counts = counts
        self.served_by = (SERVED_BY, instance_name)
        self.request_timeout_seconds = request_timeout_seconds
        # Set by the server when the drain's grace for in-flight calls has run out (loop time).
        self.cut_off_after: float | None = None

    def behavior(self, spec: MethodSpec) -> Callable[[bytes, grpc.aio.ServicerContext], Awaitable[bytes]]:
        async def call(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            return await self.run(spec, request, context)

        return call

    async def run(self, spec: MethodSpec, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        started = time.perf_counter()
        counts = self.counts
        counts.in_flight += 1
        outcome = Outcome()
        status = CANCELLED_STATUS
        error: errors.ServingError | None = None
        try:
            try:
                reply = await self.answer(spec, request, outcome)
                status = 200
            except errors.ServingError as served:
                error, status = served, served.status
            except asyncio.CancelledError:
                loop_time = asyncio.get_running_loop().time()
                if self.cut_off_after is not None and loop_time >= self.cut_off_after:
                    counts.cancelled_requests += 1
                raise
            except Exception as bug:
                log.exception("unhandled error in gRPC call %s", context)
                error = errors.internal(f"Internal error: {type(bug).__name__}: {bug}")
                status = error.status
        finally:
            counts.in_flight -= 1
            self.metrics.requests.record(
                GRPC, outcome.model, outcome.version or "", status, time.perf_counter() - started
            )
        metadata: tuple[tuple[str, str], ...] = (self.served_by,)
        version = outcome.version if error is None else error.model_version or outcome.version
        if version is not None:
            metadata += ((MODEL_VERSION, version),)
        if error is None:
            context.set_trailing_metadata(metadata)
            return reply
        await context.abort(grpc.StatusCode[error.code], truncated(error.message), metadata)

    async def answer(self, spec: MethodSpec, request: bytes, outcome: Outcome) -> bytes:
        """The method's reply under admission and the request timeout (ServingError when not)."""
        ticket = None
        timed_out = False
        try:
            if spec.admitted:
                ticket = self.admission.admit()
                ticket.reserve_message(len(request))
            task = self.deadlines.start()
            try:
                return await spec.method(request, outcome)
            finally:
                timed_out = self.deadlines.finish(task)
        except asyncio.CancelledError:
            if not timed_out:
                raise
            timeout = self.request_timeout_seconds
            raise errors.deadline_exceeded(
                f"Request not answered within {timeout:g}s (TFMS_REQUEST_TIMEOUT_SECONDS)"
            ) from None
        finally:
            if ticket is not None:
                ticket.release()
