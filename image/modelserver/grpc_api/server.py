"""The gRPC port: a grpc.aio server on the event loop HTTP runs on, started and drained with it.

Services (each method a `calls.MethodSpec`, run by `calls.Calls`):

- `inference.GRPCInferenceService` (grpc_api/v2.py) and `grpc.health.v1.Health`
  (grpc_api/health.py): registered when the port opens, at the application's startup;
- `tensorflow.serving.PredictionService` and `.ModelService` (grpc_api/tfserving.py):
  registered once that module is imported, on a thread, since TF Serving's protos
  import TensorFlow (about 3 s) and HTTP liveness must answer meanwhile. Until then
  their calls get UNAVAILABLE and readiness, on both transports, is false
  (`ServerState.grpc_pending`).

Connections: TFMS_GRPC_MAX_CONNECTION_AGE_SECONDS makes gRPC send a GOAWAY to a
connection of that age (gRPC adds up to 10 % jitter), so a client's one long-lived channel
reconnects, through a Service's kube-proxy rules, to any ready pod: new pods of a
rollout or a scale-up get their share. RPCs in flight on it get the grace to finish.
Messages are bounded both ways by TFMS_GRPC_MAX_MESSAGE_BYTES (by default HTTP's
TFMS_MAX_BODY_BYTES; gRPC refuses a larger request with RESOURCE_EXHAUSTED before the
server reads it).

Drain (lifecycle.py): through the drain delay gRPC serves as usual (readiness already
says NOT_SERVING); then, when HTTP stops accepting, `stop_accepting` closes the
listener and sends every connection a GOAWAY, so clients move to other pods while the
RPCs in flight finish, for at most what is left of the drain timeout; whatever is still
running then is cancelled and counts as cut off.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import threading
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any, TypeVar

import grpc

from modelserver import errors
from modelserver.grpc_api.calls import Calls, MethodSpec, Outcome
from modelserver.grpc_api.health import SERVICE as HEALTH_SERVICE
from modelserver.grpc_api.health import HealthService
from modelserver.grpc_api.v2 import SERVICE as V2_SERVICE
from modelserver.grpc_api.v2 import InferenceService
from modelserver.health import Health
from modelserver.inference import ModelService
from modelserver.settings import Settings

log = logging.getLogger(__name__)

# Imported on a thread (module docstring): the one module of the server whose import is TensorFlow's.
TFSERVING_MODULE = "modelserver.grpc_api.tfserving"
TFSERVING_SERVICES = ("tensorflow.serving.PredictionService", "tensorflow.serving.ModelService")
T = TypeVar("T")


def import_tfserving_services() -> ModuleType:
    """grpc_api.tfserving, once TensorFlow itself is imported.

    `import tensorflow` first waits for an import of it under way on another thread
    (__main__ starts one); importing the protos' TensorFlow submodules beside it instead
    breaks TensorFlow's own import (a NameError in tensorflow/python/training).
    """
    importlib.import_module("tensorflow")
    return importlib.import_module(TFSERVING_MODULE)


def in_daemon_thread(work: Callable[[], T]) -> asyncio.Future[T]:
    """`work()` on a daemon thread, as a future of the running loop.

    Not the loop's default executor: asyncio.run joins its threads on the way out, so a
    SIGTERM during TensorFlow's import (seconds) would wait for it instead of exiting.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def run() -> None:
        result: T | None = None
        error: BaseException | None = None
        try:
            result = work()
        except BaseException as failed:
            error = failed
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody waits
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=run, name=getattr(work, "__name__", "work"), daemon=True).start()
    return future


def server_options(settings: Settings) -> list[tuple[str, Any]]:
    options: list[tuple[str, Any]] = [
        ("grpc.max_receive_message_length", settings.grpc_message_limit_bytes),
        ("grpc.max_send_message_length", settings.grpc_message_limit_bytes),
        # gRPC sets SO_REUSEPORT by default: a second server on a taken port would share it
        # silently; without it the bind fails and the server does not start.
        ("grpc.so_reuseport", 0),
    ]
    if settings.grpc_max_connection_age_seconds > 0:
        options += [
            ("grpc.max_connection_age_ms", round(settings.grpc_max_connection_age_seconds * 1000)),
            ("grpc.max_connection_age_grace_ms", round(settings.grpc_connection_age_grace_seconds * 1000)),
        ]
    return options


class Router(grpc.GenericRpcHandler):
    """Method path -> handler; while the TF Serving services load, their calls get UNAVAILABLE."""

    def __init__(self, calls: Calls) -> None:
        self.calls = calls
        self.handlers: dict[str, grpc.RpcMethodHandler] = {}
        self.pending_services: set[str] = set()
        self.starting = grpc.unary_unary_rpc_method_handler(
            calls.behavior(MethodSpec(self.not_yet, admitted=False))
        )

    def add(self, methods: Mapping[str, MethodSpec]) -> None:
        for path, spec in methods.items():
            self.handlers[path] = grpc.unary_unary_rpc_method_handler(self.calls.behavior(spec))

    def add_stream(self, path: str, handler: grpc.RpcMethodHandler) -> None:
        self.handlers[path] = handler

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        method = handler_call_details.method
        handler = self.handlers.get(method)
        if handler is None and self.pending_services and method.split("/")[1] in self.pending_services:
            return self.starting
        return handler

    @staticmethod
    async def not_yet(raw: bytes, outcome: Outcome) -> bytes:
        raise errors.unavailable("gRPC service still starting (TensorFlow is importing); retry")


class GrpcServer:
    def __init__(self, settings: Settings, calls: Calls, service: ModelService, health: Health) -> None:
        self.settings = settings
        self.calls = calls
        self.service = service
        self.health = health
        self.router = Router(calls)
        self.server: grpc.aio.Server | None = None
        self.loading: asyncio.Task[None] | None = None
        self.stopping: asyncio.Task[None] | None = None

    @property
    def address(self) -> str:
        return f"{self.settings.host}:{self.settings.grpc_port}"

    async def start(self) -> None:
        """Open the port with the services that need no TensorFlow; the rest follow on a thread."""
        health = HealthService(self.health, (V2_SERVICE, *TFSERVING_SERVICES))
        self.router.add(InferenceService(self.service, self.health).methods())
        self.router.add(health.methods())
        self.router.add_stream(f"/{HEALTH_SERVICE}/Watch", grpc.unary_stream_rpc_method_handler(health.watch))
        self.router.pending_services.update(TFSERVING_SERVICES)
        server = grpc.aio.server(options=server_options(self.settings))
        server.add_generic_rpc_handlers((self.router,))
        try:
            server.add_insecure_port(self.address)
        except RuntimeError as error:
            raise RuntimeError(f"gRPC cannot listen on {self.address} (TFMS_GRPC_PORT): {error}") from None
        await server.start()
        self.server = server
        self.loading = asyncio.get_running_loop().create_task(self.add_tfserving(), name="grpc-tfserving")
        log.info(
            "gRPC on %s (max message %d bytes, max connection age %s)",
            self.address,
            self.settings.grpc_message_limit_bytes,
            f"{self.settings.grpc_max_connection_age_seconds:g}s + "
            f"{self.settings.grpc_connection_age_grace_seconds:g}s grace"
            if self.settings.grpc_max_connection_age_seconds
            else "unbounded",
        )

    async def add_tfserving(self) -> None:
        try:
            module = await in_daemon_thread(import_tfserving_services)
        except Exception:
            log.exception("TF Serving's gRPC services cannot be loaded: the server stays unready")
            return
        self.router.add(module.PredictionService(self.service).methods())
        self.router.pending_services.clear()
        self.health.state.grpc_pending = False
        log.info("gRPC: %s ready", ", ".join(TFSERVING_SERVICES))

    def stop_accepting(self, grace_seconds: float) -> None:
        """Close the listener and GOAWAY every connection; in-flight calls get `grace_seconds`."""
        if self.server is None or self.stopping is not None:
            return
        loop = asyncio.get_running_loop()
        self.calls.cut_off_after = loop.time() + grace_seconds
        log.info("gRPC: GOAWAY to every connection, %.1fs for the calls in flight", grace_seconds)
        self.stopping = loop.create_task(self.server.stop(grace_seconds), name="grpc-stop")

    async def close(self) -> None:
        """Wait for the drain started by `stop_accepting` (or stop now, if it never was)."""
        if self.loading is not None and not self.loading.done():
            self.loading.cancel()
        if self.server is None:
            return
        if self.stopping is None:
            self.stop_accepting(0.0)
        assert self.stopping is not None
        await self.stopping
