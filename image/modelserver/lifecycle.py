"""Running the server under uvicorn, and the SIGTERM drain.

On SIGTERM: readiness answers 503 at once (so Kubernetes takes the pod out of the
Service), requests keep being served for TFMS_DRAIN_DELAY_SECONDS (endpoint removal
takes a moment to reach every node), then the listeners close (HTTP and gRPC), idle
keep-alive connections close, every gRPC connection gets a GOAWAY (clients reconnect
elsewhere), in-flight requests and calls and the batch queue finish, and the process exits
0, all before TFMS_DRAIN_TIMEOUT_SECONDS (the batch queues get what is left of it less a
second; whatever they still hold then is answered 503). SIGINT (Ctrl-C) skips the delay.

uvicorn's own signal handling is replaced, not raced: it would stop accepting at once
and re-raise the signal after shutdown (exit code 143 instead of 0).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Generator

import uvicorn

from modelserver.app import ModelServerApp
from modelserver.health import EXIT_MARGIN_SECONDS
from modelserver.settings import Settings

log = logging.getLogger(__name__)

# Longer than any client's idle timeout (httpx, Go, nginx: 5-90 s would race a 5 s server
# timeout), so the client, not the server, closes idle connections.
KEEP_ALIVE_SECONDS = 75


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, app: ModelServerApp, settings: Settings) -> None:
        super().__init__(config)
        self.app = app
        self.settings = settings

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        loop = asyncio.get_running_loop()
        handled = (signal.SIGTERM, signal.SIGINT)
        for sig in handled:
            loop.add_signal_handler(sig, self.begin_drain, sig)
        try:
            yield
        finally:
            for sig in handled:
                loop.remove_signal_handler(sig)

    def begin_drain(self, sig: signal.Signals) -> None:
        if self.app.state.draining:
            if sig == signal.SIGINT:
                self.force_exit = True
            log.info("%s received while draining: already shutting down", sig.name)
            return
        serving = self.app.registry.all_ready()
        self.app.state.draining = True
        self.app.state.drain_started = time.monotonic()
        delay = self.settings.drain_delay_seconds if sig == signal.SIGTERM and serving else 0.0
        log.info(
            "%s: readiness now 503; serving for %.1fs more, then finishing in-flight requests "
            "(exit within %.1fs)",
            sig.name,
            delay,
            self.settings.drain_timeout_seconds,
        )
        asyncio.get_running_loop().call_later(delay, self.stop_accepting)
        watchdog = threading.Timer(self.settings.drain_timeout_seconds, self.deadline_exceeded)
        watchdog.daemon = True
        watchdog.start()

    def stop_accepting(self) -> None:
        log.info("drain delay over: closing the listener and idle connections, finishing in-flight requests")
        self.should_exit = True
        if self.app.grpc is not None:
            grace = self.app.state.close_budget_seconds(self.settings.drain_timeout_seconds)
            self.app.grpc.stop_accepting(grace)

    def deadline_exceeded(self) -> None:
        log.error("drain did not finish within %.1fs: exiting now", self.settings.drain_timeout_seconds)
        flush_and_exit(1)


def flush_and_exit(code: int) -> None:
    """Exit without waiting for TensorFlow's teardown or a still-running inference thread."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def uvicorn_config(app: ModelServerApp, settings: Settings) -> uvicorn.Config:
    graceful = max(0.5, settings.drain_timeout_seconds - settings.drain_delay_seconds - EXIT_MARGIN_SECONDS)
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        ws="none",
        lifespan="on",
        log_config=None,
        access_log=settings.log_level == "debug",
        server_header=False,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        timeout_graceful_shutdown=graceful,
        backlog=2048,
    )


def run(settings: Settings, make_app: Callable[[Settings], ModelServerApp] = ModelServerApp) -> int:
    """Serve until drained; the exit code is 0 unless requests had to be cut off."""
    app = make_app(settings)
    server = DrainingServer(uvicorn_config(app, settings), app, settings)
    server.run()
    if not server.started:
        log.error("the server did not start (see above)")
        return 3
    if app.cancelled_requests:
        log.error("%d request(s) were cut off by the drain timeout", app.cancelled_requests)
        return 1
    log.info("drained cleanly")
    return 0
