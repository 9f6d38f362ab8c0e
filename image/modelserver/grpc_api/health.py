"""grpc.health.v1.Health (grpcio-health-checking's protos): readiness for Kubernetes' gRPC probes.

`Check` with the empty service name (what the kubelet sends by default) or the name of a
served service answers SERVING exactly when HTTP readiness (`GET /v2/health/ready`)
would answer 200, and NOT_SERVING otherwise (loading, draining, a hung inference call);
any other name is NOT_FOUND, as the health protocol asks. `Watch` sends the status now
and again whenever it changes (looked at every WATCH_PERIOD_SECONDS) until the client
leaves or the server drains.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Collection

import grpc
from grpc_health.v1 import health_pb2

from modelserver import errors
from modelserver.grpc_api.calls import MethodSpec, Outcome, parse
from modelserver.health import Health

SERVICE = "grpc.health.v1.Health"
WATCH_PERIOD_SECONDS = 1.0
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICE_UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN


class HealthService:
    def __init__(self, health: Health, services: Collection[str]) -> None:
        self.health = health
        self.services = {"", *services}

    def methods(self) -> dict[str, MethodSpec]:
        return {f"/{SERVICE}/Check": MethodSpec(self.check, admitted=False)}

    def status(self, service: str) -> int:
        if service not in self.services:
            raise errors.not_found(f"unknown service {service!r}")
        return SERVING if self.health.is_ready() else NOT_SERVING

    async def check(self, raw: bytes, outcome: Outcome) -> bytes:
        request = parse(health_pb2.HealthCheckRequest, raw)
        return health_pb2.HealthCheckResponse(status=self.status(request.service)).SerializeToString()

    async def watch(self, raw: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        """Server streaming: the status, then every change of it (not metered: it lasts)."""
        try:
            service = parse(health_pb2.HealthCheckRequest, raw).service
        except errors.ServingError as error:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, error.message)
        if service not in self.services:
            yield health_pb2.HealthCheckResponse(status=SERVICE_UNKNOWN).SerializeToString()
            return
        last: int | None = None
        while True:
            current = self.status(service)
            if current != last:
                last = current
                yield health_pb2.HealthCheckResponse(status=current).SerializeToString()
            if self.health.state.draining:
                return  # NOT_SERVING is sent: the server is going away
            await asyncio.sleep(WATCH_PERIOD_SECONDS)
