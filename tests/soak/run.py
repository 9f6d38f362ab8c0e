"""`make soak`: the server under steady load for 10 minutes; its memory and file descriptors must not grow.

    PYTHONPATH=scripts:image:tests .venv/bin/python -m soak.run [--duration 600] [--warmup 120]

Built from the benchmark harness (tests/bench): the server is started as `make bench`
starts ours (pinned to core 1, one TensorFlow thread, demo model `anomaly`), wrk on
core 0 drives it. First the maximum throughput is measured briefly (closed loop, 64
connections), then the soak runs at about 70% of it (each connection paced by wrk's
`delay` hook, calibrated once) in bounded 30 s runs. RSS, open file descriptors and
threads are sampled every few seconds. After the warm-up, the median of the last minute
may exceed the median of the first minute by at most 5% (RSS and descriptors), and no
request may fail; otherwise the exit code is 1. Traffic goes to 127.0.0.1 only; every
wrk run is bounded in time and count. Writes reports/soak/soak.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench import loadgen, servers, throughput
from bench.models import DEFAULT_MODEL_BASE, build_demo_models, load_model
from bench.venvs import PROJECT_VENV
from ops.paths import REPORTS_DIR

from soak.sampling import Sample, Sampler

CONNECTIONS = 64
MAX_PROBE_S = 5.0
SEGMENT_S = 30.0
CALIBRATION_S = 10.0
SAMPLE_PERIOD_S = 5.0
WINDOW_S = 60.0
GROWTH_LIMIT = 0.05


def log(message: str) -> None:
    print(f"[soak] {message}", flush=True)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="soak.run", description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of paced load (default 600)")
    parser.add_argument(
        "--warmup", type=float, default=120.0, help="seconds not judged for growth (default 120)"
    )
    parser.add_argument("--fraction", type=float, default=0.7, help="share of the measured maximum to run at")
    parser.add_argument("--model", default="anomaly")
    parser.add_argument("--out", type=Path, default=REPORTS_DIR / "soak")
    args = parser.parse_args(argv)
    if args.duration < args.warmup + 2 * WINDOW_S:
        parser.error(f"--duration must leave two {WINDOW_S:g}s windows after --warmup")
    return args


def delay_for(rate: float, latency_ms: float) -> int:
    """Per-connection delay (ms) so CONNECTIONS paced connections send about `rate` requests/s."""
    return max(1, round(CONNECTIONS * 1000 / rate - latency_ms))


def repaced(delay: int, achieved_rps: float, target_rps: float, ceiling: int) -> int:
    """The delay that would have given `target_rps`, from what `delay` gave (the server's share of the cycle).

    Each connection's cycle is its delay plus the server's answer; the answer time is
    estimated from the run just made, so a busy moment on this shared machine moves the
    next run's pacing (bounded), not the whole soak's.
    """
    cycle_ms = CONNECTIONS * 1000 / max(achieved_rps, 1.0)
    answer_ms = max(0.0, cycle_ms - delay)
    return min(ceiling, max(1, round(CONNECTIONS * 1000 / target_rps - answer_ms)))


def window_median(samples: list[Sample], start_s: float, end_s: float, key: str) -> float:
    values = [getattr(s, key) for s in samples if start_s <= s.at_s < end_s]
    if not values:
        raise SystemExit(f"no samples between {start_s:g}s and {end_s:g}s")
    return statistics.median(values)


def judge(samples: list[Sample], load_started_s: float, warmup_s: float, duration_s: float) -> dict:
    first = (load_started_s + warmup_s, load_started_s + warmup_s + WINDOW_S)
    last = (load_started_s + duration_s - WINDOW_S, load_started_s + duration_s)
    verdict: dict = {"windows_s": {"first": first, "last": last}}
    for key in ("rss_bytes", "open_fds"):
        before = window_median(samples, *first, key)
        after = window_median(samples, *last, key)
        growth = after / before - 1 if before else 0.0
        verdict[key] = {
            "first": before,
            "last": after,
            "growth": round(growth, 4),
            "ok": growth <= GROWTH_LIMIT,
        }
    return verdict


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    os.sched_setaffinity(0, {loadgen.LOAD_CPU})
    loadgen.ensure_wrk()
    python = PROJECT_VENV / "bin" / "python"
    build_demo_models(DEFAULT_MODEL_BASE, python)
    model = load_model(DEFAULT_MODEL_BASE, args.model, python)
    server = servers.Ours(batching=True)
    log(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory(prefix="tfms-soak-") as tmp:
        workdir = Path(tmp)
        process = throughput.start_server(server, model, workdir)
        try:
            body_file = workdir / "body"
            body_file.write_bytes(server.request(model).body)
            url = f"http://127.0.0.1:{process.port}{server.request(model).path}"
            loadgen.run(url, body_file, CONNECTIONS, 3.0)  # warm-up
            peak = max(
                (loadgen.run(url, body_file, CONNECTIONS, MAX_PROBE_S) for _ in range(2)),
                key=lambda r: r.throughput_rps,
            )
            target = args.fraction * peak.throughput_rps
            log(
                f"maximum {peak.throughput_rps:,.0f} req/s (c={CONNECTIONS}); soak target {target:,.0f} req/s"
            )
            first_delay = delay_for(target, 1.0)
            ceiling_delay = 4 * first_delay  # the pacing never slows the load below a quarter of the target
            calibration = loadgen.run(url, body_file, CONNECTIONS, CALIBRATION_S, delay_ms=first_delay)
            delay = repaced(first_delay, calibration.throughput_rps, target, ceiling_delay)
            log(
                f"calibration: {calibration.throughput_rps:,.0f} req/s at delay {first_delay} ms; "
                f"soaking from delay {delay} ms (re-paced after every run)"
            )
            sampler = Sampler(process.pid, SAMPLE_PERIOD_S)
            sampler.start()
            load_started = time.monotonic() - sampler.started_at
            segments = []
            while (elapsed := time.monotonic() - sampler.started_at - load_started) < args.duration:
                length = int(min(SEGMENT_S, args.duration - elapsed))  # wrk takes whole seconds
                if length < 1:
                    break
                result = loadgen.run(url, body_file, CONNECTIONS, length, delay_ms=delay)
                latest = sampler.samples[-1]
                segments.append({"at_s": round(elapsed, 1), "delay_ms": delay, **result.to_dict()})
                delay = repaced(delay, result.throughput_rps, target, ceiling_delay)
                log(
                    f"t={elapsed:6.0f}s {result.throughput_rps:8,.0f} req/s p99 {result.p99_ms:6.2f} ms "
                    f"RSS {latest.rss_bytes / 2**20:7.1f} MiB fds {latest.open_fds:4d} "
                    f"threads {latest.threads:3d} errors {result.errors} non-2xx {result.non_2xx}"
                )
            samples = sampler.stop()
        finally:
            process.stop()
    verdict = judge(samples, load_started, args.warmup, args.duration)
    failed_requests = sum(s["errors"] + s["non_2xx"] for s in segments)
    requests = sum(s["requests"] for s in segments)
    achieved = statistics.median(s["throughput_rps"] for s in segments)
    report = {
        "maximum_rps": peak.throughput_rps,
        "target_rps": round(target, 1),
        "median_segment_rps": achieved,
        "fraction_of_maximum": round(achieved / peak.throughput_rps, 3),
        "delay_ms": delay,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "requests": requests,
        "failed_requests": failed_requests,
        "verdict": verdict,
        "segments": segments,
        "samples": [s.to_dict() for s in samples],
        "load_average_after": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "soak.json"
    path.write_text(json.dumps(report, indent=2))
    rss, fds = verdict["rss_bytes"], verdict["open_fds"]
    log(
        f"{requests:,} requests, {failed_requests} failed; {achieved:,.0f} req/s = "
        f"{report['fraction_of_maximum']:.2f} of the maximum {peak.throughput_rps:,.0f}"
    )
    log(
        f"RSS {rss['first'] / 2**20:.1f} -> {rss['last'] / 2**20:.1f} MiB ({rss['growth']:+.1%}), "
        f"fds {fds['first']:.0f} -> {fds['last']:.0f} ({fds['growth']:+.1%}); limit +{GROWTH_LIMIT:.0%} "
        f"(medians of the first and last {WINDOW_S:g}s after a {args.warmup:g}s warm-up)"
    )
    log(f"load average after: {report['load_average_after']}; report {path}")
    ok = rss["ok"] and fds["ok"] and failed_requests == 0
    log("PASSED" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
