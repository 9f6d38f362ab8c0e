"""Ours and the ceiling as ASGI apps driven in this process: no sockets, no uvicorn, no wrk.

    make bench-inprocess [INPROCESS_ARGS='--model anomaly --rounds 5 --profile']

The HTTP bench's gap between ours and the ceiling is, within noise, the gap between the
two apps themselves (measured: ~105 us/request on anomaly both ways), and driving the
apps in-process measures it with a fraction of the noise: no load generator sharing the
core, no kernel socket work. Each round runs every app once, round-robin, on one pinned
core with uvloop and `--concurrency` client coroutines sending the bench's own request
body, and reads CPU per request split by thread: the event loop, the inference thread,
TensorFlow's own `tf_*` threads. Median and min-max over rounds are printed, and ours
against the ceiling.

`--profile` runs ours once more under cProfile (the event loop's thread only: where its
Python time goes, function by function) and prints the top entries by own time.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import os
import pstats
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvloop
from modelserver.app import ModelServerApp
from modelserver.settings import load_settings

from bench.models import DEFAULT_MODEL_BASE, Model, build_demo_models, load_model
from bench.peers.ceiling.app import CeilingApp, signature_for
from bench.servers import MAX_BATCH_WAIT_MS, TF_THREADS
from bench.thread_cpu import process_thread_cpu

App = Callable[
    [dict[str, Any], Callable[[], Awaitable[dict[str, Any]]], Callable[[dict[str, Any]], Awaitable[None]]],
    Awaitable[None],
]
SERVER_CPU = 1
READY_TIMEOUT_SECONDS = 180.0
WARM_UP_REQUESTS = 2000


@dataclass(frozen=True)
class RoundResult:
    app: str
    requests: int
    wall_s: float
    loop_cpu_s: float
    inference_cpu_s: float
    tensorflow_cpu_s: float

    def us_per_request(self, seconds: float) -> float:
        return 1e6 * seconds / self.requests

    @property
    def total_us(self) -> float:
        return self.us_per_request(self.loop_cpu_s + self.inference_cpu_s + self.tensorflow_cpu_s)


class Driver:
    """Sends one body to an ASGI app from `concurrency` coroutines until `requests` are answered."""

    def __init__(self, path: str, body: bytes) -> None:
        self.path = path
        self.body = body
        self.headers = [
            (b"host", b"127.0.0.1"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        self.failures = 0

    def scope(self) -> dict[str, Any]:
        return {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": self.path,
            "raw_path": self.path.encode(),
            "query_string": b"",
            "headers": self.headers,
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8501),
        }

    async def one(self, app: App) -> None:
        message = {"type": "http.request", "body": self.body, "more_body": False}
        status = 0

        async def receive() -> dict[str, Any]:
            return message

        async def send(event: dict[str, Any]) -> None:
            nonlocal status
            if event["type"] == "http.response.start":
                status = event["status"]

        await app(self.scope(), receive, send)
        if status != 200:
            self.failures += 1

    async def run(self, app: App, requests: int, concurrency: int) -> None:
        remaining = requests

        async def client() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                await self.one(app)

        await asyncio.gather(*(client() for _ in range(concurrency)))


async def start_ours(model: Model) -> ModelServerApp:
    environ = {
        "TFMS_MODEL_BASE_PATH": str(model.path.parent.parent),
        "TFMS_MODEL_NAME": model.name,
        "TFMS_GRPC_PORT": "0",
        "TFMS_BATCH_MAX_WAIT_MS": str(MAX_BATCH_WAIT_MS),
        "TFMS_INTRA_OP_THREADS": str(TF_THREADS),
        "TFMS_INTER_OP_THREADS": str(TF_THREADS),
        "TFMS_LOG_LEVEL": "warning",
    } | {key: value for key, value in os.environ.items() if key.startswith("TFMS_")}
    app = ModelServerApp(load_settings([], environ), instance_name="inprocess")
    startup: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    await startup.put({"type": "lifespan.startup"})

    async def ignore(message: dict[str, Any]) -> None:
        return None

    asyncio.get_running_loop().create_task(app({"type": "lifespan"}, startup.get, ignore))
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while app.registry.entry(model.name) is None or app.registry.entry(model.name).latest is None:  # type: ignore[union-attr]
        if time.monotonic() > deadline:
            raise SystemExit(f"{model.name} did not load within {READY_TIMEOUT_SECONDS:.0f}s")
        await asyncio.sleep(0.1)
    return app


async def inference_thread_cpu(app: ModelServerApp | None) -> float:
    if app is None:
        return 0.0
    return await asyncio.get_running_loop().run_in_executor(app.executor, time.thread_time)


async def measure(
    name: str, app: App, ours: ModelServerApp | None, driver: Driver, requests: int, concurrency: int
) -> RoundResult:
    await driver.run(app, WARM_UP_REQUESTS, concurrency)
    driver.failures = 0
    pid = os.getpid()
    tf_start, inference_start = process_thread_cpu(pid).tensorflow_s, await inference_thread_cpu(ours)
    wall_start, loop_start = time.perf_counter(), time.thread_time()
    await driver.run(app, requests, concurrency)
    wall, loop_cpu = time.perf_counter() - wall_start, time.thread_time() - loop_start
    inference = await inference_thread_cpu(ours) - inference_start
    tensorflow = process_thread_cpu(pid).tensorflow_s - tf_start
    if driver.failures:
        raise SystemExit(f"{name}: {driver.failures} of {requests} requests were not answered 200")
    return RoundResult(name, requests, wall, loop_cpu, inference, tensorflow)


def spread(values: Sequence[float]) -> str:
    return f"{statistics.median(values):7.1f} ({min(values):.1f}-{max(values):.1f})"


def report(results: list[RoundResult]) -> str:
    lines = [
        f"{'app':<10} {'total us/req':>24} {'event loop':>24} {'inference thread':>24} "
        f"{'tf_ threads':>24} {'req/s wall':>10}"
    ]
    names = list(dict.fromkeys(r.app for r in results))
    for name in names:
        mine = [r for r in results if r.app == name]
        lines.append(
            f"{name:<10} {spread([r.total_us for r in mine]):>24} "
            f"{spread([r.us_per_request(r.loop_cpu_s) for r in mine]):>24} "
            f"{spread([r.us_per_request(r.inference_cpu_s) for r in mine]):>24} "
            f"{spread([r.us_per_request(r.tensorflow_cpu_s) for r in mine]):>24} "
            f"{statistics.median(r.requests / r.wall_s for r in mine):>10.0f}"
        )
    if "ours" in names and "ceiling" in names:
        ours = [r.total_us for r in results if r.app == "ours"]
        ceiling = [r.total_us for r in results if r.app == "ceiling"]
        gaps = [o - c for o, c in zip(ours, ceiling, strict=True)]
        lines.append(f"ours - ceiling, per round (us/req): {spread(gaps)}")
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> None:
    model = load_model(args.model_base, args.model)
    driver = Driver(f"/v1/models/{model.name}:predict", model.tfserving_body())
    ours = await start_ours(model)
    ceiling = CeilingApp(signature_for(model.input_name, model.dtype, list(model.instance_shape)))
    apps: list[tuple[str, App, ModelServerApp | None]] = [("ours", ours, ours), ("ceiling", ceiling, None)]
    results: list[RoundResult] = []
    for number in range(1, args.rounds + 1):
        for name, app, served in apps:
            result = await measure(name, app, served, driver, args.requests, args.concurrency)
            results.append(result)
            print(
                f"[inprocess] round {number}/{args.rounds} {name}: {result.total_us:.1f} us/req", flush=True
            )
    print(report(results))
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        await driver.run(ours, args.requests, args.concurrency)
        profiler.disable()
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(35)
        print(out.getvalue())
    await ours.shutdown()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="anomaly")
    parser.add_argument("--model-base", type=Path, default=DEFAULT_MODEL_BASE)
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args(argv)
    build_demo_models(args.model_base, Path(sys.executable))
    os.sched_setaffinity(0, {SERVER_CPU})
    uvloop.run(main_async(args))


if __name__ == "__main__":
    main()
