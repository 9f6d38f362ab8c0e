"""`make soak-memory`: the memory bound, measured in a container limited as the chart limits the pod.

    PYTHONPATH=scripts:image:tests .venv/bin/python -m soak.memory --image tf-model-server:0.1.0

The image runs as the chart runs it (`--memory 1g`, the chart's default limit, no swap,
read-only root, tmpfs /tmp, UID 10001) with the bounds the chart derives for that limit
(TFMS_MAX_INFLIGHT_BYTES a quarter of it, TFMS_MAX_CONCURRENT_REQUESTS one per 2 MiB).
Then, for 60 s, N connections (24) post bodies just under TFMS_MAX_BODY_BYTES (8 MiB of
float rows) back to back, while 2 connections post the ordinary one-row request. It
must hold: no OOM kill and the container still running, no 5xx, some big bodies
answered 429 (the excess), every small request answered 200, and the RSS back within
10% of its baseline 15 s after the load (the baseline: idle after one max-size body,
whose first call sizes TensorFlow's and malloc's pools once; the cold RSS is reported
too). It prints the peak RSS, the status counts and
the small requests' latency before and during the load; writes reports/soak/memory-<image>.json.
wrk (tests/bench) drives both loads from core 0; traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench import loadgen, procs
from bench.models import DEFAULT_MODEL_BASE, load_model
from bench.throughput import free_port
from bench.venvs import PROJECT_VENV
from ops.paths import REPORTS_DIR

from soak.sampling import Sampler

MEMORY_LIMIT = "1g"
MEMORY_LIMIT_BYTES = 1024**3
MAX_BODY_BYTES = 8 * 1024 * 1024
PREDICT = "/v1/models/anomaly:predict"
SAMPLE_PERIOD_S = 0.2
SETTLE_S = 15.0
RETURN_TOLERANCE = 0.10
READY_TIMEOUT_S = 120.0


def log(message: str) -> None:
    print(f"[soak-memory] {message}", flush=True)


def big_body(limit: int = MAX_BODY_BYTES) -> bytes:
    """Anomaly-model rows of 8 realistic floats, as many as fit just under `limit`."""
    rng = random.Random(14)
    parts = [b'{"instances": [']
    size = len(parts[0]) + 2
    first = True
    while True:
        row = "[" + ",".join(f"{rng.uniform(0, 60000):.4f}" for _ in range(8)) + "]"
        piece = (row if first else "," + row).encode()
        if size + len(piece) > limit - 16:
            break
        parts.append(piece)
        size += len(piece)
        first = False
    parts.append(b"]}")
    return b"".join(parts)


def docker(*args: str, check: bool = True) -> str:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, check=check, timeout=120
    ).stdout.strip()


def start_container(image: str, port: int, name: str, extra_env: list[str]) -> str:
    inflight = MEMORY_LIMIT_BYTES // 4  # what the chart derives for a 1Gi limit
    concurrent = max(16, MEMORY_LIMIT_BYTES // (2 * 1024 * 1024))
    return docker(
        "run", "-d", "--name", name,
        f"--memory={MEMORY_LIMIT}", f"--memory-swap={MEMORY_LIMIT}",
        "--read-only", "--tmpfs", "/tmp", "--user", "10001:10001",
        "--cpuset-cpus", str(procs.SERVER_CPU),
        "-p", f"127.0.0.1:{port}:8501",
        "-e", "TFMS_MODEL_NAME=anomaly",
        "-e", f"TFMS_MAX_BODY_BYTES={MAX_BODY_BYTES}",
        "-e", f"TFMS_MAX_INFLIGHT_BYTES={inflight}",
        "-e", f"TFMS_MAX_CONCURRENT_REQUESTS={concurrent}",
        "-e", "TFMS_LOG_LEVEL=warning",
        *[arg for pair in extra_env for arg in ("-e", pair)],
        image,
    )  # fmt: skip


def wait_ready(port: int, name: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            if procs.http_status(port, "/v2/health/ready") == 200:
                return
        except OSError:
            pass
        if docker("inspect", "-f", "{{.State.Running}}", name) != "true":
            raise SystemExit(f"container exited before it was ready:\n{docker('logs', name, check=False)}")
        time.sleep(0.2)
    raise SystemExit(f"not ready within {READY_TIMEOUT_S:g}s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="soak.memory", description=__doc__.splitlines()[0])
    parser.add_argument("--image", required=True, help="server image to run (not built here)")
    parser.add_argument("--concurrency", type=int, default=24, help="connections posting max-size bodies")
    parser.add_argument("--small-concurrency", type=int, default=2)
    parser.add_argument("--duration", type=int, default=60, help="seconds of load")
    parser.add_argument("--env", action="append", default=[], help="extra KEY=VALUE for the container")
    parser.add_argument("--out", type=Path, default=REPORTS_DIR / "soak")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    os.sched_setaffinity(0, {loadgen.LOAD_CPU})
    loadgen.ensure_wrk()
    port = free_port()
    name = f"tfms-soak-memory-{os.getpid()}"
    log(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    small_body = load_model(DEFAULT_MODEL_BASE, "anomaly", PROJECT_VENV / "bin" / "python").tfserving_body()
    with tempfile.TemporaryDirectory(prefix="tfms-soak-memory-") as tmp:
        big_file, small_file = Path(tmp) / "big", Path(tmp) / "small"
        big_file.write_bytes(big_body())
        big_size = big_file.stat().st_size
        small_file.write_bytes(small_body)
        log(f"big body {big_size:,} bytes (limit {MAX_BODY_BYTES:,}); image {args.image}")
        start_container(args.image, port, name, args.env)
        try:
            wait_ready(port, name)
            pid = int(docker("inspect", "-f", "{{.State.Pid}}", name))
            url = f"http://127.0.0.1:{port}{PREDICT}"
            sampler = Sampler(pid, SAMPLE_PERIOD_S)
            sampler.start()
            cold = sampler.take().rss_bytes
            # One max-size body first: its first call sizes TensorFlow's and malloc's pools
            # for a 100k-row batch once; the baseline is the server idle after that.
            warm_status = procs.http_status(port, PREDICT, 60.0, "POST", big_file.read_bytes())
            before = loadgen.run(url, small_file, args.small_concurrency, 5)
            baseline = sampler.take().rss_bytes
            log(
                f"RSS {cold / 2**20:.1f} MiB cold, {baseline / 2**20:.1f} MiB after one max-size body "
                f"({warm_status}) = the baseline; small requests p50 {before.p50_ms:.2f} ms "
                f"p99 {before.p99_ms:.2f} ms"
            )
            results: dict[str, loadgen.LoadResult] = {}

            def drive(label: str, body: Path, connections: int) -> None:
                results[label] = loadgen.run(url, body, connections, args.duration)

            loads = [
                threading.Thread(target=drive, args=("big", big_file, args.concurrency)),
                threading.Thread(target=drive, args=("small", small_file, args.small_concurrency)),
            ]
            load_started = time.monotonic() - sampler.started_at
            for thread in loads:
                thread.start()
            for thread in loads:
                thread.join()
            load_ended = time.monotonic() - sampler.started_at
            time.sleep(SETTLE_S)
            samples = sampler.stop()
            settled = [x.rss_bytes for x in samples if x.at_s >= load_ended + SETTLE_S - 5]
            after = sorted(settled)[len(settled) // 2]  # median of the last 5 s
            state = json.loads(docker("inspect", "-f", "{{json .State}}", name))
            hwm = procs.status_kib(pid, "VmHWM") * 1024
        finally:
            logs = docker("logs", "--tail", "20", name, check=False)
            docker("rm", "-f", name, check=False)
    peak = max(s.rss_bytes for s in samples if load_started <= s.at_s <= load_ended + SETTLE_S)
    big, small = results["big"], results["small"]
    five_xx = sum(n for r in (big, small) for status, n in r.statuses.items() if status.startswith("5"))
    checks = {
        "no OOM kill, still running": not state.get("OOMKilled") and state.get("Running") is True,
        "no 5xx": five_xx == 0,
        "the excess got 429": big.statuses.get("429", 0) > 0,
        "big bodies were also served": big.statuses.get("200", 0) > 0,
        "every small request 200": small.non_2xx == 0 and small.errors == 0 and small.requests > 0,
        f"RSS back within {RETURN_TOLERANCE:.0%} of baseline": 0 < after <= baseline * (1 + RETURN_TOLERANCE),
    }
    report = {
        "image": args.image,
        "container": f"--memory={MEMORY_LIMIT} --read-only --tmpfs /tmp --user 10001:10001",
        "big_body_bytes": big_size,
        "concurrency": args.concurrency,
        "duration_s": args.duration,
        "cold_rss_mib": round(cold / 2**20, 1),
        "baseline_rss_mib": round(baseline / 2**20, 1),
        "peak_rss_mib": round(peak / 2**20, 1),
        "vm_hwm_mib": round(hwm / 2**20, 1),
        "after_rss_mib": round(after / 2**20, 1),
        "big": big.to_dict(),
        "small_before": before.to_dict(),
        "small_during": small.to_dict(),
        "oom_killed": state.get("OOMKilled"),
        "checks": checks,
        "samples": [s.to_dict() for s in samples],
        "container_log_tail": logs,
        "load_average_after": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"memory-{args.image.replace('/', '_').replace(':', '_')}.json"
    path.write_text(json.dumps(report, indent=2))
    log(
        f"big bodies: {big.requests} answered in {args.duration}s at {args.concurrency} connections, "
        f"statuses {big.statuses}, transport errors {big.errors}"
    )
    log(
        f"small requests during: {small.requests} answered, statuses {small.statuses}, "
        f"p50 {small.p50_ms:.2f} ms p99 {small.p99_ms:.2f} ms "
        f"(before: p50 {before.p50_ms:.2f} ms p99 {before.p99_ms:.2f} ms)"
    )
    log(
        f"RSS cold {report['cold_rss_mib']} MiB, baseline {report['baseline_rss_mib']} MiB, "
        f"peak {report['peak_rss_mib']} MiB "
        f"(VmHWM {report['vm_hwm_mib']} MiB) under a {MEMORY_LIMIT} limit, {SETTLE_S:g}s after "
        f"{report['after_rss_mib']} MiB; OOMKilled {state.get('OOMKilled')}"
    )
    for check, ok in checks.items():
        log(f"{'ok  ' if ok else 'FAIL'} {check}")
    log(f"load average after: {report['load_average_after']}; report {path}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
