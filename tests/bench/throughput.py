"""Throughput and latency of every server on one model, measured side by side.

All servers for the model are started one after another (each alone while it loads),
verified to answer the benchmark request, warmed up, then measured round-robin: run 1
of every server at every concurrency, then run 2, ... so drift or a noisy neighbour
spreads over all servers instead of landing on one. Idle servers wait on the same core
while another is measured. Peak memory of each process tree is sampled throughout.
"""

from __future__ import annotations

import socket
import statistics
import threading
from dataclasses import dataclass, field
from pathlib import Path

from bench import loadgen, procs
from bench.models import Model
from bench.servers import STARTUP_TIMEOUT_SECONDS, Request, Server

MEMORY_SAMPLE_SECONDS = 0.5


@dataclass(frozen=True)
class LoadPlan:
    concurrency: tuple[int, ...]
    duration_s: float
    runs: int
    warmup_s: float


@dataclass
class Running:
    server: Server
    process: procs.ServerProcess
    request: Request
    body_file: Path
    url: str
    results: dict[int, list[loadgen.LoadResult]] = field(default_factory=dict)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def log(message: str) -> None:
    print(f"[bench] {message}", flush=True)


def start_server(server: Server, model: Model, workdir: Path) -> procs.ServerProcess:
    """Start one server on a free port and wait until its readiness endpoint says 200."""
    port = free_port()
    run_dir = workdir / f"{model.name}-{server.name}"
    run_dir.mkdir(parents=True, exist_ok=True)
    process = procs.start(
        name=server.name,
        argv=server.argv(model, port, run_dir),
        env=server.env(model, port, run_dir),
        cwd=server.cwd(run_dir),
        port=port,
        log_path=run_dir / "server.log",
    )
    try:
        process.wait_ready(server.ready_path(model), STARTUP_TIMEOUT_SECONDS)
    except procs.ServerFailed:
        process.stop()
        raise
    return process


def check_answers(running: Running) -> None:
    """The benchmark request must succeed before it is timed (no error pages at full speed)."""
    status = procs.http_status(running.process.port, running.request.path, 30.0, "POST", running.request.body)
    if status != 200:
        raise procs.ServerFailed(f"{running.server.name} answered {status} to the benchmark request")


class MemorySampler(threading.Thread):
    """Samples the RSS of every running server's process tree until stopped."""

    def __init__(self, processes: list[procs.ServerProcess]) -> None:
        super().__init__(daemon=True)
        self.processes = processes
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.wait(MEMORY_SAMPLE_SECONDS):
            for process in self.processes:
                process.sample_memory()

    def stop(self) -> None:
        self.halt.set()
        self.join()


def describe(result: loadgen.LoadResult) -> str:
    text = (
        f"c={result.concurrency:<3d} {result.throughput_rps:9.1f} req/s  "
        f"p50 {result.p50_ms:8.2f} ms  p99 {result.p99_ms:8.2f} ms"
    )
    if result.errors or result.non_2xx:
        text += f"  errors {result.errors} non-2xx {result.non_2xx}"
    return text


def summarize(results: list[loadgen.LoadResult]) -> dict:
    """Median and min-max over the runs of one point."""

    def stats(values: list[float]) -> dict:
        return {"median": statistics.median(values), "min": min(values), "max": max(values)}

    return {
        "throughput_rps": stats([r.throughput_rps for r in results]),
        "p50_ms": stats([r.p50_ms for r in results]),
        "p90_ms": stats([r.p90_ms for r in results]),
        "p99_ms": stats([r.p99_ms for r in results]),
        "errors": sum(r.errors for r in results),
        "non_2xx": sum(r.non_2xx for r in results),
        "load_cpu_fraction": stats([r.load_cpu_fraction for r in results]),
        "runs": [r.to_dict() for r in results],
    }


def measure_model(model: Model, servers: list[Server], plan: LoadPlan, workdir: Path) -> dict:
    report: dict[str, dict] = {}
    running: list[Running] = []
    try:
        for server in servers:
            log(f"{model.name}: starting {server.name}")
            try:
                process = start_server(server, model, workdir)
                request = server.request(model)
                body_file = workdir / f"{model.name}-{server.name}" / "body"
                body_file.write_bytes(request.body)
                entry = Running(
                    server, process, request, body_file, f"http://127.0.0.1:{process.port}{request.path}"
                )
                running.append(entry)
                check_answers(entry)
            except procs.ServerFailed as failure:
                log(f"{model.name}: {server.name} FAILED: {failure}")
                report[server.name] = {"error": str(failure)}
                running = [r for r in running if r.server is not server]
                continue
            log(f"{model.name}: {server.name} ready in {process.ready_after:.1f}s on port {process.port}")
        top = max(plan.concurrency)
        for entry in running:
            log(f"{model.name}: warming up {entry.server.name} ({plan.warmup_s:g}s at {top} connections)")
            loadgen.run(entry.url, entry.body_file, top, plan.warmup_s)
        sampler = MemorySampler([entry.process for entry in running])
        sampler.start()
        for run_index in range(plan.runs):
            # Rotate the order each round so no server always follows the same neighbour.
            order = (
                running[run_index % len(running) :] + running[: run_index % len(running)] if running else []
            )
            for entry in order:
                for concurrency in plan.concurrency:
                    result = loadgen.run(entry.url, entry.body_file, concurrency, plan.duration_s)
                    entry.results.setdefault(concurrency, []).append(result)
                    progress = f"{model.name} run {run_index + 1}/{plan.runs}"
                    log(f"{progress} {entry.server.name:13s} {describe(result)}")
        sampler.stop()
        for entry in running:
            tree = entry.process.tree()
            report[entry.server.name] = {
                "points": {str(c): summarize(results) for c, results in sorted(entry.results.items())},
                "memory": {
                    "peak_tree_rss_mib": round(entry.process.peak_rss_bytes / 2**20, 1),
                    "tree_hwm_sum_mib": round(procs.tree_hwm_bytes(tree) / 2**20, 1),
                    "tree_pss_mib_after_load": round(procs.tree_pss_bytes(tree) / 2**20, 1),
                    "processes": len(tree),
                },
                "ready_after_s": round(entry.process.ready_after or 0.0, 2),
            }
    finally:
        for entry in running:
            entry.process.stop()
    return report


def request_descriptions(model: Model, servers: list[Server]) -> dict:
    return {
        server.name: {
            "path": server.request(model).path,
            "protocol": server.request(model).protocol,
            "body_bytes": len(server.request(model).body),
            "body": server.request(model).body.decode()[:300],
        }
        for server in servers
    }
