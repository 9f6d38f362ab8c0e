"""Liveness and readiness, and the state both read.

Liveness says "this process still serves HTTP" and never looks at models: a model that
fails to load must make the pod unready, not restart it in a loop. Readiness is true only
while every configured model is loaded and warmed up and the server is not draining.
"""

from __future__ import annotations

from dataclasses import dataclass

from modelserver.asgi import Response
from modelserver.metrics import Metrics
from modelserver.protocols.json import dumps
from modelserver.repository import ModelRegistry
from modelserver.router import Headers, Params


@dataclass
class ServerState:
    draining: bool = False
    liveness_fault: bool = False


class Health:
    def __init__(self, state: ServerState, registry: ModelRegistry, metrics: Metrics) -> None:
        self.state = state
        self.registry = registry
        metrics.ready.set_function(lambda: 1.0 if self.is_ready() else 0.0)

    def is_ready(self) -> bool:
        return not self.state.draining and self.registry.all_ready()

    async def live(self, params: Params, body: bytes, headers: Headers) -> Response:
        if self.state.liveness_fault:
            return Response(dumps({"live": False, "reason": "fault injected"}), status=503)
        return Response(dumps({"live": True}))

    async def ready(self, params: Params, body: bytes, headers: Headers) -> Response:
        if self.is_ready():
            return Response(dumps({"ready": True}))
        reason = (
            "draining" if self.state.draining else "models not loaded" if self.registry.names else "no models"
        )
        return Response(dumps({"ready": False, "reason": reason}), status=503)

    async def inject_liveness_fault(self, params: Params, body: bytes, headers: Headers) -> Response:
        """Tests only (TFMS_FAULT_INJECTION=true): liveness answers 503 from now on."""
        self.state.liveness_fault = True
        return Response(dumps({"liveness": "failing"}))
