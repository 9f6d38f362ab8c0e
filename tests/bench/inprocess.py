"""Ours, the bare batching server and the ceiling as ASGI apps in this process: no sockets, no wrk.

    make bench-inprocess [INPROCESS_ARGS='--model anomaly --rounds 5 --profile']

The HTTP bench's gap between ours and the ceiling is, within noise, the gap between the
two apps themselves (measured: ~105 us/request on anomaly both ways), and driving the
apps in-process measures it with a fraction of the noise: no load generator sharing the
core, no kernel socket work. Each round runs every app once, round-robin, on one pinned
core with uvloop and `--concurrency` client coroutines sending the bench's own request
body, and reads CPU per request split by thread: the event loop, the inference thread,
TensorFlow's own `tf_*` threads. Median and min-max over rounds are printed, and the gaps
per round: ours - bare is what ours' features cost, bare - ceiling what batching itself
costs on this stack (bare_batcher.py), a floor under any batching server built on it.
The bare server must answer the request with ours' very bytes, or the run stops.

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

from bench.bare_batcher import BareBatcher
from bench.models import DEFAULT_MODEL_BASE, SIGNATURE, Model, build_demo_models, load_model
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
# (above, below): the gaps printed per round; ours - ceiling last, as the bench's own ratio.
GAPS = (("ours", "bare"), ("bare", "ceiling"), ("ours", "ceiling"))


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

    async def answer(self, app: App) -> tuple[int, bytes]:
        """One request's status and body."""
        message = {"type": "http.request", "body": self.body, "more_body": False}
        status = 0
        body = b""

        async def receive() -> dict[str, Any]:
            return message

        async def send(event: dict[str, Any]) -> None:
            nonlocal status, body
            if event["type"] == "http.response.start":
                status = event["status"]
            else:
                body += event.get("body", b"")

        await app(self.scope(), receive, send)
        return status, body

    async def one(self, app: App) -> None:
        status, _ = await self.answer(app)
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
    for above, below in GAPS:
        if above in names and below in names:
            higher = [r.total_us for r in results if r.app == above]
            lower = [r.total_us for r in results if r.app == below]
            gaps = [h - low for h, low in zip(higher, lower, strict=True)]
            lines.append(f"{above} - {below}, per round (us/req): {spread(gaps)}")
    return "\n".join(lines)


def bare_batcher(ours: ModelServerApp, model: Model) -> BareBatcher:
    """The bare batching server on ours' loaded signature, inference thread and max batch."""
    entry = ours.registry.entry(model.name)
    assert entry is not None and entry.latest is not None
    signature = entry.latest.signatures[SIGNATURE]
    return BareBatcher(signature, ours.executor, ours.settings.batch_max_size, entry.latest.version_text)


async def same_answer(driver: Driver, ours: App, bare: App) -> None:
    """The bare server measures nothing unless it answers what ours answers."""
    expected, answered = await driver.answer(ours), await driver.answer(bare)
    if expected != answered:
        raise SystemExit(f"the bare batching server answered {answered!r}, ours {expected!r}")


async def main_async(args: argparse.Namespace) -> None:
    model = load_model(args.model_base, args.model)
    driver = Driver(f"/v1/models/{model.name}:predict", model.tfserving_body())
    ours = await start_ours(model)
    bare = bare_batcher(ours, model)
    await same_answer(driver, ours, bare)
    ceiling = CeilingApp(signature_for(model.input_name, model.dtype, list(model.instance_shape)))
    apps: list[tuple[str, App, ModelServerApp | None]] = [
        ("ours", ours, ours),
        ("bare", bare, ours),
        ("ceiling", ceiling, None),
    ]
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
    await bare.close()
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
