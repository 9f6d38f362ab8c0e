"""Cold start: process start until the readiness endpoint answers 200.

Next to it, in the same run and on the same core, the floor no server can beat: a
Python process that imports TensorFlow and loads the same SavedModel, timed until the
load returns. Measured on the host for every server, and for ours in its container
(``docker run --read-only --tmpfs /tmp`` as UID 10001) with the image module's own
timers (``ops.image_check``, also behind ``make image-startup``), which time the floor in the
same image the same way. Each figure is the median of several interleaved rounds.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import time
from pathlib import Path

from ops import docker, image, image_base, image_check

from bench import procs
from bench.models import Model
from bench.servers import STARTUP_TIMEOUT_SECONDS, Server, one_cpu_env
from bench.throughput import log, start_server

IMAGE = f"{image.IMAGE_NAME}:{image.APP_VERSION}"
FLOOR_MARK = "FLOOR "

# Timestamps with the wall clock, which the harness, the child and a container share.
FLOOR_SCRIPT = """
import json, os, sys, time
base, name = sys.argv[1], sys.argv[2]
import tensorflow as tf
imported = time.time()
threads = int(os.environ.get("BENCH_TF_THREADS", "1"))
tf.config.threading.set_intra_op_parallelism_threads(threads)
tf.config.threading.set_inter_op_parallelism_threads(threads)
version = max((d for d in os.listdir(os.path.join(base, name)) if d.isdigit()), key=int)
tf.saved_model.load(os.path.join(base, name, version))
print("FLOOR " + json.dumps({"imported": imported, "loaded": time.time()}), flush=True)
"""


def stats(values: list[float]) -> dict:
    if not values:
        return {}
    return {
        "median": round(statistics.median(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
        "runs": [round(v, 3) for v in values],
    }


def parse_floor(stdout: str, started_wall: float) -> dict[str, float]:
    line = next((x for x in stdout.splitlines() if x.startswith(FLOOR_MARK)), None)
    if line is None:
        raise RuntimeError(f"floor process printed no result:\n{stdout[-2000:]}")
    marks = json.loads(line.removeprefix(FLOOR_MARK))
    return {"import_s": marks["imported"] - started_wall, "total_s": marks["loaded"] - started_wall}


def floor_on_host(model: Model, python: Path) -> dict[str, float]:
    command = ["taskset", "-c", str(procs.SERVER_CPU), str(python), "-c", FLOOR_SCRIPT]
    command += [str(model.path.parent.parent), model.name]
    started_wall = time.time()
    completed = subprocess.run(
        command,
        env=one_cpu_env({}),
        capture_output=True,
        text=True,
        timeout=STARTUP_TIMEOUT_SECONDS,
        check=False,
    )
    return parse_floor(completed.stdout, started_wall)


def container_skip_reason() -> str | None:
    """None when the image can be run, else why the container phase is skipped."""
    try:
        docker.ensure_daemon()
        if not image_base.image_exists(IMAGE):
            return f"image {IMAGE} not found (build it with `make image`)"
    except (OSError, subprocess.SubprocessError, SystemExit) as error:
        return f"docker unavailable: {error}"
    return None


def container_round() -> tuple[float, float]:
    """(ours docker run -> ready, floor docker run -> model loaded) with ops.image's own timers."""
    port = image_check.free_port()
    ours = image_check.time_server_start(IMAGE, port)
    floor_total, _, _ = image_check.time_floor(IMAGE, port)
    return ours, floor_total


def measure(
    model: Model, servers: list[Server], rounds: int, container: bool, workdir: Path, python: Path
) -> dict:
    """Interleaved rounds: the floor, then each server alone, then (optionally) the container pair."""
    servers = [server for server in servers if not server.speaks_grpc]  # same processes as REST
    floor: dict[str, list[float]] = {"import_s": [], "total_s": []}
    ready: dict[str, list[float]] = {server.name: [] for server in servers}
    errors: dict[str, str] = {}
    container_skip = container_skip_reason() if container else "disabled (--no-container)"
    container_floor: list[float] = []
    container_ours: list[float] = []
    for round_index in range(rounds):
        log(f"cold start round {round_index + 1}/{rounds}")
        for key, value in floor_on_host(model, python).items():
            floor[key].append(value)
        for server in servers:
            if server.name in errors:
                continue
            try:
                process = start_server(server, model, workdir / "cold")
            except procs.ServerFailed as failure:
                errors[server.name] = str(failure)
                continue
            ready[server.name].append(process.ready_after or 0.0)
            process.stop()
        if container_skip is None:
            try:
                ours, floor_total = container_round()
            except (RuntimeError, subprocess.SubprocessError, SystemExit) as error:
                container_skip = f"failed: {error}"
            else:
                container_ours.append(ours)
                container_floor.append(floor_total)
    floor_median = statistics.median(floor["total_s"])
    host = {
        name: stats(values) | {"vs_floor": round(statistics.median(values) / floor_median, 2)}
        for name, values in ready.items()
        if values
    }
    result: dict = {
        "model": model.name,
        "rounds": rounds,
        "floor_import_tensorflow_s": stats(floor["import_s"]),
        "floor_import_and_load_s": stats(floor["total_s"]),
        "servers": host,
        "errors": errors,
    }
    if container_skip is None and container_ours:
        container_floor_median = statistics.median(container_floor)
        result["container"] = {
            "image": IMAGE,
            "floor_import_and_load_s": stats(container_floor),
            "ours_s": stats(container_ours),
            "vs_floor": round(statistics.median(container_ours) / container_floor_median, 2),
        }
    else:
        result["container"] = {"skipped": container_skip}
    for name, values in ready.items():
        if values:
            log(f"cold start {name}: median {statistics.median(values):.2f}s (floor {floor_median:.2f}s)")
    return result
