"""The ASGI application: every part of the server wired together explicitly, in one place.

HTTP requests come in through ASGI (below); gRPC calls through grpc_api, on the same event
loop, started at the lifespan's startup and sharing the model service, batcher,
admission, request timeout and metrics built here.

Per request: route -> (POST) admission (429 when the server holds too many requests or
bytes) -> bounded, decompressed body read -> handler under the request timeout -> JSON
response with X-Model-Version / X-Served-By -> metrics. Errors in two layers: the ones
the server means (ServingError, the timeout's 504) become their response in `respond`;
anything else is a bug and becomes a 500 in `handle`. Nothing escapes to uvicorn.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

from modelserver import errors
from modelserver.admission import Admission, Ticket
from modelserver.asgi import Receive, Response, Scope, Send, read_body, send_response
from modelserver.deadlines import RequestDeadlines
from modelserver.grpc_api.calls import Calls
from modelserver.grpc_api.server import GrpcServer
from modelserver.health import Faults, Health, ServerState
from modelserver.inference import ModelService
from modelserver.metrics import UNKNOWN_MODEL, Metrics
from modelserver.model_config import server_config
from modelserver.protocols.tfserving import TFServingAPI
from modelserver.protocols.v2 import V2API
from modelserver.repository import ModelRegistry
from modelserver.router import Headers, Params, Route, Router, exact, regex
from modelserver.settings import Settings
from modelserver.versions import VersionManager
from modelserver.watchdog import InferenceWatch

log = logging.getLogger(__name__)

TFSERVING = "tfserving"
V2 = "v2"
OTHER = "other"
_V1_MODEL = r"/v1/models/(?P<model>[^/:]+)(?:/versions/(?P<version>\d+)|/labels/(?P<label>[^/:]+))?"
_V2_MODEL = r"/v2/models/(?P<model>[^/]+)(?:/versions/(?P<version>\d+))?"


def prediction_paths(model: str) -> tuple[str, ...]:
    """The paths that carry a model's predictions (resolved by the router up front)."""
    return (f"/v1/models/{model}:predict", f"/v2/models/{model}/infer")


def served_by() -> str:
    """The pod name (Kubernetes downward API sets POD_NAME), else the host name."""
    return os.environ.get("POD_NAME") or socket.gethostname()


class Exchange:
    """What `handle` needs to know about a request once it is answered."""

    __slots__ = ("model", "protocol", "ticket")

    def __init__(self) -> None:
        self.protocol = OTHER
        self.model = ""
        self.ticket: Ticket | None = None


class ModelServerApp:
    def __init__(self, settings: Settings, instance_name: str | None = None) -> None:
        self.settings = settings
        self.metrics = Metrics()
        config = server_config(settings)
        self.registry = ModelRegistry(config)
        self.state = ServerState()
        # One inference thread: TensorFlow parallelizes inside each call (intra-op threads).
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tf-inference")
        # Versions load on a thread of their own, so inference goes on meanwhile (versions.py).
        self.loader_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tf-loader")
        self.in_flight = 0
        self.metrics.in_flight.set_function(lambda: self.in_flight)
        self.watch = InferenceWatch(settings.hung_inference_limit_seconds)
        self.admission = Admission(settings.max_concurrent_requests, settings.max_inflight_bytes)
        self.service = ModelService(
            settings, self.registry, self.metrics, self.executor, lambda: self.in_flight, self.watch
        )
        self.health = Health(self.state, self.registry, self.metrics, self.watch)
        self.faults = Faults(self.state, self.executor, self.watch)
        self.router = Router(self.routes())
        self.learn_prediction_paths(self.registry.names)
        self.versions = VersionManager(
            config,
            settings,
            self.registry,
            self.service,
            self.metrics,
            self.loader_executor,
            self.learn_prediction_paths,
        )
        self.instance_name = instance_name or served_by()
        self.served_by = (b"x-served-by", self.instance_name.encode())
        self.loader: asyncio.Task[None] | None = None
        self.watcher: asyncio.Task[None] | None = None
        self.cancelled_requests = 0
        self.deadlines = RequestDeadlines(settings.request_timeout_seconds)
        self.grpc = self.grpc_server() if settings.grpc_port else None
        self.state.grpc_pending = self.grpc is not None

    def grpc_server(self) -> GrpcServer:
        """The gRPC port, under the same admission, timeout, metrics and in-flight count as HTTP."""
        calls = Calls(
            self.admission,
            self.deadlines,
            self.metrics,
            self,
            self.instance_name,
            self.settings.request_timeout_seconds,
        )
        return GrpcServer(self.settings, calls, self.service, self.health)

    def learn_prediction_paths(self, names: Iterable[str]) -> None:
        self.router.learn(path for name in names for path in prediction_paths(name))

    def routes(self) -> list[Route]:
        tfserving = TFServingAPI(self.service)
        v2 = V2API(self.service)
        routes = [
            regex(_V1_MODEL, TFSERVING, {"GET": tfserving.status}),
            regex(_V1_MODEL + "/metadata", TFSERVING, {"GET": tfserving.metadata}),
            regex(_V1_MODEL + r":(?P<verb>predict|classify|regress)", TFSERVING, {"POST": tfserving.post}),
            exact("/v2", V2, {"GET": v2.server_metadata}),
            exact("/v2/health/live", V2, {"GET": self.health.live}),
            exact("/v2/health/ready", V2, {"GET": self.health.ready}),
            regex(_V2_MODEL, V2, {"GET": v2.model_metadata}),
            regex(_V2_MODEL + "/ready", V2, {"GET": v2.model_ready}),
            regex(_V2_MODEL + "/infer", V2, {"POST": v2.infer}),
            exact("/metrics", OTHER, {"GET": self.metrics_endpoint}),
        ]
        if self.settings.fault_injection:
            routes.append(exact("/debug/fault/liveness", OTHER, {"POST": self.faults.liveness}))
            routes.append(exact("/debug/fault/hang-inference", OTHER, {"POST": self.faults.hang_inference}))
        return routes

    async def metrics_endpoint(self, params: Params, body: bytes, headers: Headers) -> Response:
        payload, content_type = self.metrics.exposition()
        return Response(payload, content_type=content_type)

    # ------------------------------------------------------------------ ASGI

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self.handle(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self.lifespan(receive, send)

    async def lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                loop = asyncio.get_running_loop()
                try:
                    if self.grpc is not None:
                        await self.grpc.start()
                except RuntimeError as error:
                    await send({"type": "lifespan.startup.failed", "message": str(error)})
                    return
                self.loader = loop.create_task(self.versions.run(), name="versions")
                self.watcher = loop.create_task(self.health.watch_forever(), name="inference-watch")
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def shutdown(self) -> None:
        if self.loader is not None and not self.loader.done():
            self.loader.cancel()
        if self.watcher is not None:
            self.watcher.cancel()
        if self.grpc is not None:
            await self.grpc.close()  # the calls in flight finish first: they are in the batch queues
        await self.service.close(self.state.close_budget_seconds(self.settings.drain_timeout_seconds))
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.loader_executor.shutdown(wait=False, cancel_futures=True)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        self.in_flight += 1
        exchange = Exchange()
        response: Response | None = None
        try:
            try:
                response = await self.respond(scope, receive, exchange)
            except Exception as error:
                log.exception("unhandled error for %s %s", scope["method"], scope["path"])
                response = self.error_response(
                    errors.internal(f"Internal error: {type(error).__name__}: {error}")
                )
            await send_response(send, response, self.response_headers(response))
        finally:
            self.in_flight -= 1
            if exchange.ticket is not None:
                exchange.ticket.release()
            if response is not None:
                elapsed = time.perf_counter() - started
                version = response.model_version or ""
                self.metrics.requests.record(
                    exchange.protocol, exchange.model, version, response.status, elapsed
                )

    async def respond(self, scope: Scope, receive: Receive, exchange: Exchange) -> Response:
        """The response to one request, errors the server means included (not bugs: see `handle`)."""
        method: str = scope["method"]
        timed_out = False
        try:
            route, params = self.router.match(method, scope["path"])
            exchange.protocol = route.protocol
            requested = params.get("model")
            if requested is not None:
                exchange.model = requested if requested in self.registry.names else UNKNOWN_MODEL
            task = self.deadlines.start()
            try:
                body = b""
                if method == "POST":
                    exchange.ticket = self.admission.admit()
                    body = await read_body(scope, receive, self.settings.max_body_bytes, exchange.ticket)
                return await route.handlers[method](params, body, scope["headers"])
            finally:
                timed_out = self.deadlines.finish(task)
        except errors.ServingError as error:
            return self.error_response(error)
        except asyncio.CancelledError:
            if not timed_out:
                self.cancelled_requests += 1
                raise
            return self.error_response(
                errors.deadline_exceeded(
                    f"Request not answered within {self.settings.request_timeout_seconds:g}s "
                    "(TFMS_REQUEST_TIMEOUT_SECONDS)"
                )
            )

    @staticmethod
    def error_response(error: errors.ServingError) -> Response:
        return Response(
            error.body(), status=error.status, model_version=error.model_version, headers=list(error.headers)
        )

    def response_headers(self, response: Response) -> list[tuple[bytes, bytes]]:
        headers = [self.served_by]
        if response.model_version is not None:
            headers.append((b"x-model-version", response.model_version.encode()))
        if self.state.draining and not any(name == b"connection" for name, _ in response.headers):
            # Make keep-alive clients reconnect (to a pod that is not going away) after this response.
            headers.append((b"connection", b"close"))
        return headers
