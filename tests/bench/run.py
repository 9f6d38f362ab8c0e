"""`make bench`: every server on the same models, side by side, in one run.

    PYTHONPATH=scripts:image:tests .venv/bin/python -m bench.run [--smoke] [options]

Phases: build peer venvs (cached) → read the models' signatures → cold start (each
server alone, next to the import+load floor, then the container) → per model:
throughput/latency at each concurrency, round-robin over servers, with memory sampled →
ratios, tables (stdout + summary.md), results.json and a PNG in reports/bench/.
The harness itself runs on the load generator's core; servers run on the other one.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import sys
import tempfile
from pathlib import Path

from ops.paths import REPORTS_DIR

from bench import coldstart, grpc_loadgen, loadgen, procs, report, servers, stages, tf_floor, throughput
from bench.models import DEFAULT_MODEL_BASE, build_demo_models, load_model
from bench.venvs import PROJECT_VENV

PUBLISH_DIR = Path(__file__).resolve().parent / "results"
DEFAULT_SERVERS = [s.name for s in servers.all_servers()]
SMOKE_SERVERS = ["ours", "ours-grpc", "ceiling", "ceiling-grpc"]
QUIET_LOAD = 0.5


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="anomaly,heavy", help="comma-separated model names")
    parser.add_argument("--servers", default=",".join(DEFAULT_SERVERS), help="comma-separated server names")
    parser.add_argument("--concurrency", default="1,8,32,64", help="comma-separated connection counts")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measured run")
    parser.add_argument("--runs", type=int, default=3, help="runs per point (median, min-max reported)")
    parser.add_argument(
        "--warmup", type=float, default=3.0, help="warm-up seconds per server before measuring"
    )
    parser.add_argument(
        "--profile",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="after the measured runs, one run this long of ours / the baseline / ours-nobatch / the ceiling "
        "under py-spy at the highest concurrency: time per request by stage, py-spy samples (0 = off)",
    )
    parser.add_argument(
        "--floor-seconds",
        type=float,
        default=tf_floor.FLOOR_SECONDS,
        help="seconds per batch size of the TensorFlow floor at the end of each round (0 = no floor, "
        "no serial limit)",
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        metavar="CHECKOUT",
        help=f"also run `{servers.BASELINE}`: the server from another checkout (e.g. a `git worktree` of "
        "the commit before a change), measured round-robin beside ours",
    )
    parser.add_argument(
        "--max-batch-sizes",
        default="",
        metavar="N,...",
        help=f"also run `{servers.OURS}-bN` for each N: ours with at most N rows per model call (ours "
        f"itself uses {servers.MAX_BATCH_SIZE}), round-robin beside it: the batch-size default, measured",
    )
    parser.add_argument("--cold-rounds", type=int, default=3, help="cold-start rounds (0 = skip)")
    parser.add_argument("--cold-model", default="anomaly", help="model used for the cold-start phase")
    parser.add_argument("--no-container", action="store_true", help="skip the in-container cold start")
    parser.add_argument("--model-base", type=Path, default=DEFAULT_MODEL_BASE, help="model repository root")
    parser.add_argument("--out", type=Path, default=REPORTS_DIR / "bench", help="output directory")
    parser.add_argument("--publish", action="store_true", help=f"also copy the outputs to {PUBLISH_DIR}")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="seconds-long proof the harness works: ours + ceiling, each over REST and gRPC, anomaly, c=1,4, "
        "1 s, 1 run, no container",
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.models, args.servers, args.concurrency = "anomaly", ",".join(SMOKE_SERVERS), "1,4"
        args.duration, args.runs, args.warmup, args.cold_rounds = 1.0, 1, 1.0, 1
        args.floor_seconds = 0.5
        args.no_container = True
        args.out = REPORTS_DIR / "bench-smoke"
    return args


def max_batch_sizes(option: str) -> list[int]:
    """`--max-batch-sizes 16,64` -> [16, 64]; anything but whole numbers from 1 up is refused."""
    sizes = [part.strip() for part in option.split(",") if part.strip()]
    if not all(size.isdigit() and int(size) >= 1 for size in sizes):
        raise SystemExit(f"--max-batch-sizes {option!r}: give whole numbers from 1 up, e.g. 16,64")
    return [int(size) for size in sizes]


def machine() -> dict:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    summary = (
        f"{cpu}, {os.cpu_count()} cores, {memory_gib:.0f} GiB, Linux {platform.release()}, "
        f"Python {platform.python_version()}; "
        f"server on core {procs.SERVER_CPU}, wrk and ghz on core {loadgen.LOAD_CPU}"
    )
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(memory_gib, 1),
        "kernel": platform.release(),
        "summary": summary,
    }


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    os.sched_setaffinity(0, {loadgen.LOAD_CPU})
    loadgen.ensure_wrk()
    chosen = servers.by_names([s for s in args.servers.split(",") if s])
    if args.baseline is not None:
        chosen.append(servers.OursBaseline(args.baseline))
    chosen += [servers.OursMaxBatch(size) for size in max_batch_sizes(args.max_batch_sizes)]
    if any(server.speaks_grpc for server in chosen):
        grpc_loadgen.ensure_ghz()
    if args.profile > 0:
        stages.ensure_py_spy()
    plan = throughput.LoadPlan(
        concurrency=tuple(int(c) for c in args.concurrency.split(",")),
        duration_s=args.duration,
        runs=args.runs,
        warmup_s=args.warmup,
        profile_s=args.profile,
        floor_s=args.floor_seconds,
    )
    before = os.getloadavg()[0]
    if before >= QUIET_LOAD:
        print(
            f"[bench] note: load average {load_average()} (machine not quiet; ratios stay comparable)",
            flush=True,
        )
    for server in chosen:
        server.prepare()
    python = PROJECT_VENV / "bin" / "python"
    if args.model_base == DEFAULT_MODEL_BASE:
        build_demo_models(args.model_base, python)
    models = [load_model(args.model_base, name, python) for name in args.models.split(",") if name]
    results: dict = {
        "started": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "config": {
            "servers": {s.name: s.description for s in chosen},
            "concurrency": list(plan.concurrency),
            "duration_s": plan.duration_s,
            "runs": plan.runs,
            "warmup_s": plan.warmup_s,
            "tf_threads": servers.TF_THREADS,
            "max_batch_size": servers.MAX_BATCH_SIZE,
            "max_batch_wait_ms": servers.MAX_BATCH_WAIT_MS,
            "load_generator": "wrk 4.x, 1 thread, keep-alive connections = concurrency, closed loop",
            "grpc_load_generator": (
                f"ghz {grpc_loadgen.GHZ_VERSION}, 1 CPU, connections = concurrency = channels, closed loop"
            ),
            "command": "python -m bench.run " + " ".join(sys.argv[1:] if argv is None else argv),
        },
        "models": {
            m.name: {
                "version": m.version,
                "input": m.input_name,
                "instance_shape": list(m.instance_shape),
                "dtype": m.dtype,
            }
            for m in models
        },
        "requests": {m.name: throughput.request_descriptions(m, chosen) for m in models},
        "load": {},
    }
    with tempfile.TemporaryDirectory(prefix="tfms-bench-") as tmp:
        workdir = Path(tmp)
        cold_model = next((m for m in models if m.name == args.cold_model), None)
        if args.cold_rounds > 0 and cold_model is not None:
            results["cold_start"] = coldstart.measure(
                cold_model, chosen, args.cold_rounds, not args.no_container, workdir, python
            )
        for model in models:
            load, floor = throughput.measure_model(model, chosen, plan, workdir)
            results["load"][model.name] = load
            if floor is not None:
                results.setdefault("tf_floor", {})[model.name] = floor
    results["load_average"] = {"before": f"{before:.2f}", "after": load_average()}
    results["ratios"] = report.ratios(results)
    paths = report.write(results, args.out)
    print()
    print(paths["markdown"].read_text())
    for kind, path in paths.items():
        print(f"[bench] {kind}: {path}")
    if args.publish:
        PUBLISH_DIR.mkdir(exist_ok=True)
        for path in paths.values():
            shutil.copy2(path, PUBLISH_DIR / path.name)
        print(f"[bench] published to {PUBLISH_DIR}")
    failed = [name for load in results["load"].values() for name, r in load.items() if "error" in r]
    if failed:
        print(f"[bench] FAILED servers: {sorted(set(failed))}", flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
