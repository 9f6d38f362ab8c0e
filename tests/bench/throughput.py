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
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench import grpc_loadgen, loadgen, procs, stages, tf_floor, thread_cpu
from bench.models import Model
from bench.servers import BASELINE, OURS, STARTUP_TIMEOUT_SECONDS, Request, Server

MEMORY_SAMPLE_SECONDS = 0.5
# A gRPC port may open a moment after the HTTP readiness answers 200.
GRPC_ANSWER_TIMEOUT_SECONDS = 30.0
GRPC_ANSWER_POLL_SECONDS = 0.2


@dataclass(frozen=True)
class LoadPlan:
    concurrency: tuple[int, ...]
    duration_s: float
    runs: int
    warmup_s: float
    profile_s: float = 0.0  # > 0: one more run per profiled server under py-spy (bench.stages)
    floor_s: float = tf_floor.FLOOR_SECONDS  # per batch size, each round (bench.tf_floor); 0 = off


@dataclass
class Running:
    """A started server and the request it is driven with: wrk for HTTP, ghz for gRPC."""

    server: Server
    process: procs.ServerProcess
    request: Request
    body_file: Path
    target: str  # the URL (HTTP), or host:port (gRPC)
    protoset_file: Path | None = None
    results: dict[int, list[dict]] = field(default_factory=dict)

    def load(self, concurrency: int, duration_s: float) -> loadgen.LoadResult:
        if self.protoset_file is None:
            return loadgen.run(self.target, self.body_file, concurrency, duration_s)
        return grpc_loadgen.run(
            self.target, self.request.path, self.protoset_file, self.body_file, concurrency, duration_s
        )

    @property
    def ok_status(self) -> str:
        return "200" if self.protoset_file is None else grpc_loadgen.OK

    def call_once(self) -> str:
        """The status of one benchmark request (`ok_status` when it succeeds)."""
        if self.protoset_file is None:
            status = procs.http_status(self.process.port, self.request.path, 30.0, "POST", self.request.body)
            return str(status)
        try:
            statuses = grpc_loadgen.call_once(
                self.target, self.request.path, self.protoset_file, self.body_file
            )
        except RuntimeError as error:
            return str(error)
        return ",".join(sorted(statuses)) or "no answer"


def running_entry(server: Server, model: Model, process: procs.ServerProcess, run_dir: Path) -> Running:
    request = server.request(model)
    body_file = run_dir / "body"
    body_file.write_bytes(request.body)
    if request.protoset is None:
        return Running(server, process, request, body_file, f"http://127.0.0.1:{process.port}{request.path}")
    protoset_file = run_dir / "service.protoset"
    protoset_file.write_bytes(request.protoset)
    return Running(server, process, request, body_file, server.grpc_target(process.port), protoset_file)


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
    deadline = time.monotonic() + GRPC_ANSWER_TIMEOUT_SECONDS
    while (status := running.call_once()) != running.ok_status:
        if not running.request.is_grpc or time.monotonic() > deadline:
            raise procs.ServerFailed(
                f"{running.server.name} answered {status} to the benchmark request on {running.target}"
            )
        time.sleep(GRPC_ANSWER_POLL_SECONDS)


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


def describe(record: dict) -> str:
    text = (
        f"c={record['concurrency']:<3d} {record['throughput_rps']:9.1f} req/s  "
        f"p50 {record['p50_ms']:8.2f} ms  p99 {record['p99_ms']:8.2f} ms  "
        f"server {record['server_cpu_fraction']:.2f} core {record['server_cpu_us_per_request']:7.1f} us/req  "
        f"load gen {record['load_cpu_fraction']:.2f} core  others {record['other_load_on_server_core']:.2f}"
    )
    batches = record.get("batches")
    if batches:
        text += f"  rows/call {batches['mean_rows_per_call']:g}"
    if record["errors"] or record["non_2xx"]:
        text += f"  errors {record['errors']} non-2xx {record['non_2xx']}"
    return text


def measure_point(entry: Running, concurrency: int, duration_s: float) -> tuple[loadgen.LoadResult, dict]:
    """One load generator run, plus the CPU the server's process tree spent on it (and the
    part of it TensorFlow's own threads spent).

    Also what else ran on the server's core meanwhile (other processes on this shared
    machine): the core's busy time minus the server's own. For our server, its TensorFlow
    calls in the run (scraped from /metrics outside the timed window).
    """
    scrape = entry.server.exposes_batch_metrics
    metrics_before = stages.scrape_metrics(entry.process.port) if scrape else ""
    tree = entry.process.tree()
    cpu_before = thread_cpu.tree_thread_cpu(tree)
    core_before = procs.cpu_busy_seconds(procs.SERVER_CPU)
    result = entry.load(concurrency, duration_s)
    used = thread_cpu.tree_thread_cpu(tree) - cpu_before
    cpu = used.total_s
    foreign = procs.cpu_busy_seconds(procs.SERVER_CPU) - core_before - cpu
    record = result.to_dict() | {
        "server_cpu_fraction": round(cpu / result.duration_s, 3),
        "server_cpu_us_per_request": round(1e6 * cpu / max(result.requests, 1), 1),
        "tf_threads_cpu_us_per_request": round(1e6 * used.tensorflow_s / max(result.requests, 1), 1),
        "other_load_on_server_core": round(max(foreign, 0.0) / result.duration_s, 3),
    }
    if scrape:
        metrics_after = stages.scrape_metrics(entry.process.port)
        batches = stages.batch_stats(metrics_before, metrics_after, entry.server.max_batch_size)
        record["batches"] = batches.to_dict() if batches is not None else None
    return result, record


def summarize(records: list[dict]) -> dict:
    """Median and min-max over the runs of one point."""

    def stats(key: str) -> dict:
        values = [r[key] for r in records]
        return {"median": statistics.median(values), "min": min(values), "max": max(values)}

    return {
        "throughput_rps": stats("throughput_rps"),
        "p50_ms": stats("p50_ms"),
        "p90_ms": stats("p90_ms"),
        "p99_ms": stats("p99_ms"),
        "errors": sum(r["errors"] for r in records),
        "non_2xx": sum(r["non_2xx"] for r in records),
        "load_cpu_fraction": stats("load_cpu_fraction"),
        "server_cpu_fraction": stats("server_cpu_fraction"),
        "server_cpu_us_per_request": stats("server_cpu_us_per_request"),
        "other_load_on_server_core": stats("other_load_on_server_core"),
        "runs": records,
    }


def mean_rows_at(entry: Running | None, concurrency: int) -> float | None:
    """Rows per TensorFlow call in the server's latest run at that concurrency (None: not recorded)."""
    if entry is None or not entry.results.get(concurrency):
        return None
    batches = entry.results[concurrency][-1].get("batches")
    return batches["mean_rows_per_call"] if batches else None


def start_floor(model: Model, workdir: Path) -> tf_floor.FloorProcess | None:
    log(f"{model.name}: starting the TensorFlow floor (in-process call loop, same core and threads)")
    try:
        floor = tf_floor.FloorProcess(model, workdir / f"{model.name}-tf-floor.log")
    except tf_floor.FloorFailed as failure:
        log(f"{model.name}: TensorFlow floor FAILED: {failure}")
        return None
    log(f"{model.name}: TensorFlow floor loaded in {floor.load_s:.1f}s")
    return floor


def measure_floor_round(
    model: Model, floor: tf_floor.FloorProcess, mean_rows: list[float | None], seconds: float
) -> dict:
    measured = tf_floor.measure_round(floor, mean_rows, seconds)
    per_row = "  ".join(f"{rows} rows {point['cpu_us_per_row']:.1f}" for rows, point in measured.items())
    log(f"{model.name} TensorFlow floor, CPU us per row: {per_row}")
    return measured


def measure_model(
    model: Model, servers: list[Server], plan: LoadPlan, workdir: Path
) -> tuple[dict, dict | None]:
    """Every server's points (and profiles) on one model; and the TensorFlow floor's, if planned."""
    report: dict[str, dict] = {}
    running: list[Running] = []
    floor: tf_floor.FloorProcess | None = None
    floor_rounds: list[dict] = []
    try:
        for server in servers:
            log(f"{model.name}: starting {server.name}")
            try:
                process = start_server(server, model, workdir)
                entry = running_entry(server, model, process, workdir / f"{model.name}-{server.name}")
                running.append(entry)
                check_answers(entry)
            except procs.ServerFailed as failure:
                log(f"{model.name}: {server.name} FAILED: {failure}")
                report[server.name] = {"error": str(failure)}
                running = [r for r in running if r.server is not server]
                continue
            log(f"{model.name}: {server.name} ready in {process.ready_after:.1f}s on port {process.port}")
        if plan.floor_s > 0:
            floor = start_floor(model, workdir)
        top = max(plan.concurrency)
        for entry in running:
            log(f"{model.name}: warming up {entry.server.name} ({plan.warmup_s:g}s at {top} connections)")
            entry.load(top, plan.warmup_s)
        batching = [entry for entry in running if entry.server.name in (OURS, BASELINE)]
        sampler = MemorySampler([entry.process for entry in running])
        sampler.start()
        for run_index in range(plan.runs):
            # Rotate the order each round so no server always follows the same neighbour.
            order = (
                running[run_index % len(running) :] + running[: run_index % len(running)] if running else []
            )
            for entry in order:
                for concurrency in plan.concurrency:
                    _, record = measure_point(entry, concurrency, plan.duration_s)
                    entry.results.setdefault(concurrency, []).append(record)
                    progress = f"{model.name} run {run_index + 1}/{plan.runs}"
                    log(f"{progress} {entry.server.name:13s} {describe(record)}")
            if floor is not None:
                try:
                    mean_rows = [mean_rows_at(entry, top) for entry in batching]
                    floor_rounds.append(measure_floor_round(model, floor, mean_rows, plan.floor_s))
                except tf_floor.FloorFailed as failure:
                    log(f"{model.name}: TensorFlow floor FAILED: {failure}")
                    floor.stop()
                    floor = None
        sampler.stop()
        profiles = profile_servers(model, running, plan, workdir) if plan.profile_s > 0 else {}
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
            if entry.server.name in profiles:
                report[entry.server.name]["profile"] = profiles[entry.server.name]
    finally:
        for entry in running:
            entry.process.stop()
        if floor is not None:
            floor.stop()
    if not floor_rounds:
        return report, None
    return report, {"rounds": floor_rounds, "summary": tf_floor.summarize(floor_rounds)}


def profile_servers(model: Model, running: list[Running], plan: LoadPlan, workdir: Path) -> dict[str, dict]:
    """One py-spy run per profiled HTTP server at the highest concurrency (after the measured runs)."""
    top = max(plan.concurrency)
    profiles: dict[str, dict] = {}
    for entry in running:
        if entry.server.name not in stages.PROFILED_SERVERS or entry.protoset_file is not None:
            continue
        log(f"{model.name}: profiling {entry.server.name} ({plan.profile_s:g}s at {top} connections, py-spy)")
        out_file = workdir / f"{model.name}-{entry.server.name}" / "py-spy.raw"
        try:
            profiles[entry.server.name] = stages.profile(
                entry.process,
                entry.target,
                entry.body_file,
                top,
                plan.profile_s,
                entry.server.max_batch_size,
                out_file,
            )
        except RuntimeError as error:
            log(f"{model.name}: profiling {entry.server.name} FAILED: {error}")
            profiles[entry.server.name] = {"error": str(error)}
    return profiles


def request_descriptions(model: Model, servers: list[Server]) -> dict:
    described = {}
    for server in servers:
        request = server.request(model)
        described[server.name] = {
            "path": request.path,
            "protocol": request.protocol,
            "transport": "grpc" if request.is_grpc else "http",
            "body_bytes": len(request.body),
            "body": request.text(),
        }
    return described
