"""Liveness and readiness, and the state both read.

Liveness says "this process still serves": it never looks at models (a model that fails
to load must make the pod unready, not restart it in a loop), only at the inference
thread: a TensorFlow call running far beyond the request timeout means every request
of this process will time out, and only a restart ends it (watchdog.py). Readiness is
true only while every configured model is loaded and warmed up, the server is not
draining and the inference thread is not hung.
"""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import Executor
from dataclasses import dataclass

from modelserver.asgi import Response
from modelserver.metrics import Metrics
from modelserver.protocols.json import dumps
from modelserver.repository import ModelRegistry
from modelserver.router import Headers, Params
from modelserver.watchdog import InferenceWatch

# How often the watch is read when no probe asks (so a hang is logged without a kubelet).
WATCH_PERIOD_SECONDS = 1.0
# Left between closing the batch queues and the drain deadline, for the process to exit.
EXIT_MARGIN_SECONDS = 1.0


@dataclass
class ServerState:
    draining: bool = False
    liveness_fault: bool = False
    # True while the gRPC port is not serving every service yet (grpc_api.server): not ready.
    grpc_pending: bool = False
    drain_started: float | None = None  # time.monotonic() of the SIGTERM / SIGINT

    def close_budget_seconds(self, drain_timeout_seconds: float) -> float:
        """Time left for the batch queues to finish: the drain timeout counts from the signal."""
        if self.drain_started is None:
            return max(0.0, drain_timeout_seconds - EXIT_MARGIN_SECONDS)
        deadline = self.drain_started + drain_timeout_seconds - EXIT_MARGIN_SECONDS
        return max(0.0, deadline - time.monotonic())


class Health:
    def __init__(
        self, state: ServerState, registry: ModelRegistry, metrics: Metrics, watch: InferenceWatch
    ) -> None:
        self.state = state
        self.registry = registry
        self.watch = watch
        metrics.ready.set_function(lambda: 1.0 if self.is_ready() else 0.0)

    def hang_reason(self) -> str | None:
        hung = self.watch.hung_call()
        if hung is None:
            return None
        call, running_for = hung
        return (
            f"inference call {call.what} running for {running_for:.0f}s "
            f"(limit {self.watch.hung_after_seconds:g}s, TFMS_HUNG_INFERENCE_SECONDS)"
        )

    def is_ready(self) -> bool:
        state = self.state
        return (
            not state.draining
            and not state.grpc_pending
            and self.registry.all_ready()
            and self.watch.hung_call() is None
        )

    def not_live_reason(self) -> str | None:
        """Why liveness fails, or None while the process serves (both transports ask this)."""
        if self.state.liveness_fault:
            return "fault injected"
        return self.hang_reason()

    def not_ready_reason(self) -> str:
        """Why readiness fails (only asked when `is_ready` is false)."""
        if self.state.draining:
            return "draining"
        hang = self.hang_reason()
        if hang is not None:
            return hang
        if not self.registry.all_ready():
            return "models not loaded" if self.registry.names else "no models"
        return "gRPC services still starting"

    async def live(self, params: Params, body: bytes, headers: Headers) -> Response:
        reason = self.not_live_reason()
        if reason is not None:
            return Response(dumps({"live": False, "reason": reason}), status=503)
        return Response(dumps({"live": True}))

    async def ready(self, params: Params, body: bytes, headers: Headers) -> Response:
        if self.is_ready():
            return Response(dumps({"ready": True}))
        return Response(dumps({"ready": False, "reason": self.not_ready_reason()}), status=503)

    async def watch_forever(self) -> None:
        """Read the watch periodically, so a hung call is logged (with its stack) even unprobed."""
        while True:
            await asyncio.sleep(WATCH_PERIOD_SECONDS)
            self.watch.hung_call()


class Faults:
    """Tests only (TFMS_FAULT_INJECTION=true): make this process fail the way real ones do."""

    def __init__(self, state: ServerState, executor: Executor, watch: InferenceWatch) -> None:
        self.state = state
        self.executor = executor
        self.watch = watch
        self.never = threading.Event()  # never set: the injected hang lasts until the process ends

    async def liveness(self, params: Params, body: bytes, headers: Headers) -> Response:
        """Liveness answers 503 from now on."""
        self.state.liveness_fault = True
        return Response(dumps({"liveness": "failing"}))

    async def hang_inference(self, params: Params, body: bytes, headers: Headers) -> Response:
        """The inference thread blocks for good, as a deadlocked TensorFlow op would."""
        self.executor.submit(self.watch.run, "fault: injected hang", self.never.wait)
        return Response(dumps({"inference": "hung"}))
