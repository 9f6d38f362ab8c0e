"""The gRPC load generator: ghz on the load generator's core, one channel per concurrent client.

ghz (Go, grpc-go) sends the same serialized request message on every call of a unary
method, `--concurrency` workers over `--connections` HTTP/2 connections: with both equal
to the concurrency each client is one long-lived channel, as wrk holds one keep-alive
connection per client. ghz reads the service from a protoset (a serialized
FileDescriptorSet, built here from the Python stubs' descriptors, so no .proto file or
protoc is needed) and prints a JSON report, parsed into the same LoadResult as wrk's.

Bounds: each run stops at ghz's `-z` duration (calls still in flight then are not
counted, `--duration-stop=ignore`), each call at the request timeout, the process at a
subprocess timeout. ghz v0.93.0 ignores `-n` whenever a duration is set (runner/options.go:
`if c.z > 0 { c.n = math.MaxInt32 }`), so a count bound cannot be passed with the duration;
the report keeps at most 1,000,000 per-call records (runner/requester.go `maxResult`).
Like wrk's, the CPU time ghz used is recorded, to show whether the generator was the limit.
"""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
import time
from pathlib import Path

from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import FileDescriptor
from ops.paths import tool_dir
from ops.toolcache import go_install, is_complete, mark_complete

from bench.loadgen import LOAD_CPU, REQUEST_TIMEOUT_SECONDS, LoadResult

GHZ_PACKAGE = "github.com/bojand/ghz/cmd/ghz"
GHZ_VERSION = "v0.93.0"
OK = "OK"
NANOSECONDS_PER_MS = 1e6


def log(message: str) -> None:
    print(f"[bench] {message}", flush=True)


def ensure_ghz() -> str:
    """ghz from PATH, else the cached build, else `go install` it into the cache (about a minute)."""
    found = shutil.which("ghz")
    if found:
        return found
    directory = tool_dir("ghz", GHZ_VERSION)
    binary = directory / "ghz"
    if is_complete(directory) and binary.exists():
        return str(binary)
    log(f"ghz not found; building {GHZ_PACKAGE}@{GHZ_VERSION} from the Go module proxy into {directory}")
    go_install(GHZ_PACKAGE, GHZ_VERSION, directory)
    mark_complete(directory)
    return str(binary)


def protoset(file: FileDescriptor) -> bytes:
    """A FileDescriptorSet holding `file` and every file it imports, dependencies first."""
    ordered: list[FileDescriptor] = []

    def visit(current: FileDescriptor) -> None:
        if current in ordered:
            return
        for dependency in current.dependencies:
            visit(dependency)
        ordered.append(current)

    visit(file)
    descriptor_set = descriptor_pb2.FileDescriptorSet()
    for each in ordered:
        each.CopyToProto(descriptor_set.file.add())
    return descriptor_set.SerializeToString()


def latency_ms(report: dict, percentage: int) -> float:
    for entry in report.get("latencyDistribution") or []:
        if entry["percentage"] == percentage:
            return round(entry["latency"] / NANOSECONDS_PER_MS, 3)
    return 0.0  # no call succeeded: ghz gives latencies of successful calls only


def parse_report(report: dict, concurrency: int, load_cpu_fraction: float) -> LoadResult:
    """ghz's JSON report as a LoadResult; every call not answered OK is an error.

    ghz's latencies (nanoseconds) cover the successful calls; its `count` includes the
    failed ones, as wrk's request count includes non-2xx answers.
    """
    statuses = dict(report.get("statusCodeDistribution") or {})
    count = int(report["count"])
    duration_s = report["total"] / 1e9
    failed = sum(n for status, n in statuses.items() if status != OK)
    return LoadResult(
        concurrency=concurrency,
        duration_s=round(duration_s, 3),
        requests=count,
        throughput_rps=round(count / duration_s, 1) if duration_s > 0 else 0.0,
        p50_ms=latency_ms(report, 50),
        p90_ms=latency_ms(report, 90),
        p99_ms=latency_ms(report, 99),
        max_ms=round(report.get("slowest", 0) / NANOSECONDS_PER_MS, 3),
        mean_ms=round(report.get("average", 0) / NANOSECONDS_PER_MS, 3),
        errors=failed,
        non_2xx=0,
        load_cpu_fraction=load_cpu_fraction,
        statuses=statuses,
    )


def command(
    target: str,
    method: str,
    protoset_file: Path,
    message_file: Path,
    concurrency: int,
    bound: list[str],
    cpu: int,
) -> list[str]:
    return [
        "taskset", "-c", str(cpu),
        ensure_ghz(),
        "--insecure",
        f"--protoset={protoset_file}",
        f"--call={method}",
        f"--binary-file={message_file}",
        f"--concurrency={concurrency}",
        f"--connections={concurrency}",
        f"--timeout={REQUEST_TIMEOUT_SECONDS}s",
        "--cpus=1",
        "--format=json",
        *bound,
        target,
    ]  # fmt: skip


def execute(argv: list[str], timeout_s: float) -> tuple[dict, float]:
    """Run ghz; its parsed report and the share of a core it used."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    completed = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s)
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if completed.returncode != 0 or not completed.stdout.strip():
        raise RuntimeError(f"ghz failed ({completed.returncode}): {completed.stderr.strip()[-1000:]}")
    cpu_seconds = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return json.loads(completed.stdout), round(cpu_seconds / wall, 3)


def run(
    target: str,
    method: str,
    protoset_file: Path,
    message_file: Path,
    concurrency: int,
    duration_s: float,
    cpu: int = LOAD_CPU,
) -> LoadResult:
    """One bounded ghz run at a fixed number of channels (closed loop, one call in flight each)."""
    bound = [f"--duration={duration_s:g}s", "--duration-stop=ignore"]
    argv = command(target, method, protoset_file, message_file, concurrency, bound, cpu)
    report, cpu_fraction = execute(argv, duration_s + REQUEST_TIMEOUT_SECONDS + 30)
    return parse_report(report, concurrency, cpu_fraction)


def call_once(target: str, method: str, protoset_file: Path, message_file: Path, cpu: int = LOAD_CPU) -> dict:
    """One call; its status counts (e.g. {"OK": 1}), to check the request before timing it."""
    argv = command(target, method, protoset_file, message_file, 1, ["--total=1"], cpu)
    report, _ = execute(argv, REQUEST_TIMEOUT_SECONDS + 30)
    return dict(report.get("statusCodeDistribution") or {})
