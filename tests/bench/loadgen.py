"""The load generator: wrk on its own core, one connection per concurrent client.

wrk (C, epoll) posts the same body over keep-alive connections for a fixed duration and
reports its latency distribution through a Lua ``done`` hook (wrk/post.lua). Each run
is bounded in time (wrk's duration, and a hard subprocess timeout) and in count
(MAX_RATE_RPS x duration, far above any rate reached here); the CPU time wrk used is
recorded so a run can show that the generator was not the bottleneck.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

LUA_SCRIPT = Path(__file__).resolve().parent / "wrk" / "post.lua"
LOAD_CPU = 0
REQUEST_TIMEOUT_SECONDS = 10
RESULT_PREFIX = "BENCH_RESULT "
# Request cap per run: duration x this rate (the no-model ceiling does ~30k req/s here).
MAX_RATE_RPS = 100_000


@dataclass(frozen=True)
class LoadResult:
    concurrency: int
    duration_s: float
    requests: int
    throughput_rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float
    errors: int
    non_2xx: int
    load_cpu_fraction: float
    statuses: dict[str, int] = field(default_factory=dict)  # HTTP status -> responses

    def to_dict(self) -> dict:
        return asdict(self)


def ensure_wrk() -> str:
    """wrk from PATH, installing Debian's package when it is missing."""
    found = shutil.which("wrk")
    if found:
        return found
    print("[bench] wrk not found; installing Debian's wrk package", flush=True)
    subprocess.run(["apt-get", "update", "-qq"], check=True)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "wrk"],
        check=True,
        env=os.environ | {"DEBIAN_FRONTEND": "noninteractive"},
    )
    found = shutil.which("wrk")
    if not found:
        raise SystemExit("wrk is still missing after apt-get install wrk")
    return found


def run(
    url: str,
    body_file: Path,
    concurrency: int,
    duration_s: float,
    content_type: str = "application/json",
    delay_ms: int = 0,
    cpu: int = LOAD_CPU,
) -> LoadResult:
    """One bounded wrk run at a fixed number of connections (closed loop; paced by `delay_ms`)."""
    command = [
        "taskset", "-c", str(cpu),
        ensure_wrk(),
        "-t1",
        f"-c{concurrency}",
        f"-d{duration_s:g}s",
        f"--timeout={REQUEST_TIMEOUT_SECONDS}s",
        "-s", str(LUA_SCRIPT),
        url,
    ]  # fmt: skip
    env = os.environ | {
        "BENCH_BODY_FILE": str(body_file),
        "BENCH_CONTENT_TYPE": content_type,
        "BENCH_MAX_REQUESTS": str(int(MAX_RATE_RPS * duration_s)),
        "BENCH_DELAY_MS": str(delay_ms),
    }
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    completed = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=duration_s + REQUEST_TIMEOUT_SECONDS + 30
    )
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if completed.returncode != 0:
        raise RuntimeError(f"wrk failed ({completed.returncode}): {completed.stderr.strip()[-1000:]}")
    line = next((x for x in completed.stdout.splitlines() if x.startswith(RESULT_PREFIX)), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result line:\n{completed.stdout[-2000:]}")
    raw = json.loads(line.removeprefix(RESULT_PREFIX))
    cpu_seconds = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    errors = raw["errors"]
    percentiles = raw["latency_us"]["percentiles"]
    duration = raw["duration_us"] / 1e6
    return LoadResult(
        concurrency=concurrency,
        duration_s=round(duration, 3),
        requests=raw["requests"],
        throughput_rps=round(raw["requests"] / duration, 1),
        p50_ms=percentiles["50"] / 1000,
        p90_ms=percentiles["90"] / 1000,
        p99_ms=percentiles["99"] / 1000,
        max_ms=raw["latency_us"]["max"] / 1000,
        mean_ms=round(raw["latency_us"]["mean"] / 1000, 3),
        errors=errors["connect"] + errors["read"] + errors["write"] + errors["timeout"],
        non_2xx=errors["status"],
        load_cpu_fraction=round(cpu_seconds / wall, 3),
        statuses=raw.get("statuses", {}),
    )
