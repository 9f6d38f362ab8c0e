"""Where a server's time goes per request: one extra run under py-spy, its samples by stage.

`make bench BENCH_ARGS="--profile"` adds, after the measured runs of a model, one run of
each profiled server (ours, the `--baseline` checkout when there is one, ours-nobatch,
the ceiling) at the highest concurrency with py-spy attached (sampling every thread of
the process at PROFILE_RATE_HZ, idle samples left out, py-spy pinned to the load
generator's core). Each sample is given to the stage of the innermost frame that names
one (STAGES, checked from the leaf up): a sample with no project or uvicorn frame on top
is the event loop's own C code, and every sample of the inference thread is "inference
thread" (TensorFlow's own time and its Python wrappers). Stage time per request =
samples / rate / requests answered in the window. The same window's `tfms_batch_size`
histogram (read from /metrics before and after) gives the mean rows per TensorFlow call
and the share of calls in the top bucket below the max batch size.

What a sample is: py-spy samples a thread that is not sleeping, so a thread that is
runnable but waiting for the core counts as well as one running on it. The ceiling has
one thread and the figures are its CPU; ours shares its one core between the event loop
and the inference thread (and TensorFlow's native threads, which py-spy does not see),
so its rows are time spent running or ready to run in each stage: the event-loop row in
particular holds the loop's waits for the core while TensorFlow computes. Read the table
as where the time goes, not as CPU; `server CPU us/req` in the load tables is the CPU.
Sampling perturbs what it measures a little (py-spy reads the process's memory), and the
measured runs stay unprofiled.
"""

from __future__ import annotations

import subprocess
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from ops.paths import cache_root

from bench import loadgen, procs, venvs
from bench.servers import BASELINE

PROFILER_DIR = Path(__file__).resolve().parent / "profiler"
PROFILE_RATE_HZ = 250
PROFILED_SERVERS = ("ours", BASELINE, "ours-nobatch", "ceiling")
INFERENCE_THREAD = "inference thread"
EVENT_LOOP = "event loop (C)"
# (stage, substrings of a py-spy frame "function (file:line)"), checked on each frame
# from the innermost outwards; the first frame that matches any stage decides.
STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "encode outputs",
        ("row_predictions", "columnar_outputs", "encode_output", "jsonable", "dumps (modelserver"),
    ),
    (
        "parse + validate",
        ("loads_object", "predict_inputs", "row_inputs", "may_hold_booleans", "protocols/tensors"),
    ),
    ("read body", ("read_body",)),
    ("batching", ("batching/", "ModelService.infer", "concurrent/futures")),
    ("metrics", ("modelserver/metrics",)),
    ("admission + deadlines", ("modelserver/admission", "modelserver/deadlines")),
    ("write response", ("send_response", "RequestResponseCycle.send")),
    ("route + handle", ("modelserver/", "CeilingApp")),
    ("HTTP protocol", ("uvicorn/",)),
)
STAGE_ORDER = (INFERENCE_THREAD, EVENT_LOOP, *(name for name, _ in STAGES))
# Frames that run the loop itself (under every coroutine's frames): reaching one from the
# leaf without meeting a stage means the sample was in the loop's C code.
LOOP_FRAMES = ("asyncio/runners.py", "asyncio/base_events.py", "uvicorn/server.py", "uvicorn/_compat.py")
BATCH_METRIC = "tfms_batch_size"


def stage_of(thread: str, frames: list[str]) -> str:
    """The stage one sample belongs to, from its thread's name and its frames (outermost first)."""
    if "tf-inference" in thread:
        return INFERENCE_THREAD
    for frame in reversed(frames):
        if any(needle in frame for needle in LOOP_FRAMES):
            return EVENT_LOOP
        for stage, needles in STAGES:
            if any(needle in frame for needle in needles):
                return stage
    return EVENT_LOOP


def sample_counts(raw: str) -> Counter[str]:
    """Samples per stage from py-spy's raw (collapsed) output: `thread;frame;...;frame count`."""
    counts: Counter[str] = Counter()
    for line in raw.splitlines():
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack or not count.isdigit():
            continue
        thread, *frames = stack.split(";")
        counts[stage_of(thread, frames)] += int(count)
    return counts


def per_request_us(counts: Counter[str], requests: int, rate_hz: int = PROFILE_RATE_HZ) -> dict[str, float]:
    """Microseconds of CPU per request in each stage (every stage listed, 0 when unsampled)."""
    if requests <= 0:
        raise ValueError("a profile needs requests answered in its window")
    return {stage: round(counts.get(stage, 0) * 1e6 / rate_hz / requests, 1) for stage in STAGE_ORDER}


def histogram_buckets(metrics_text: str, name: str) -> dict[float, float]:
    """Cumulative bucket counts of one histogram, summed over its label sets: {le: count}."""
    buckets: dict[float, float] = {}
    prefix = f"{name}_bucket{{"
    for line in metrics_text.splitlines():
        if not line.startswith(prefix):
            continue
        labels, _, value = line.rpartition(" ")
        bound = labels.split('le="', 1)[1].split('"', 1)[0]
        key = float("inf") if bound == "+Inf" else float(bound)
        buckets[key] = buckets.get(key, 0.0) + float(value)
    return buckets


def histogram_total(metrics_text: str, name: str, suffix: str) -> float:
    return sum(
        float(line.rpartition(" ")[2])
        for line in metrics_text.splitlines()
        if line.startswith(f"{name}_{suffix}")
    )


@dataclass(frozen=True)
class BatchStats:
    calls: int
    mean_rows: float
    top_bucket_share: float  # calls with more rows than the bucket below max_size, up to it
    top_bucket: str

    def to_dict(self) -> dict:
        return {
            "tf_calls": self.calls,
            "mean_rows_per_call": self.mean_rows,
            "top_bucket_share": self.top_bucket_share,
            "top_bucket": self.top_bucket,
        }


def batch_stats(before: str, after: str, max_size: int) -> BatchStats | None:
    """TensorFlow calls in the window between two /metrics scrapes; None when the server has none."""
    calls = histogram_total(after, BATCH_METRIC, "count") - histogram_total(before, BATCH_METRIC, "count")
    if calls <= 0:
        return None
    rows = histogram_total(after, BATCH_METRIC, "sum") - histogram_total(before, BATCH_METRIC, "sum")
    start, end = histogram_buckets(before, BATCH_METRIC), histogram_buckets(after, BATCH_METRIC)
    bounds = sorted(bound for bound in end if bound <= max_size)
    top = bounds[-1] if bounds else float(max_size)
    below = max((bound for bound in bounds if bound < top), default=0.0)
    in_top = (end.get(top, 0) - start.get(top, 0)) - (end.get(below, 0) - start.get(below, 0))
    return BatchStats(
        calls=int(calls),
        mean_rows=round(rows / calls, 1),
        top_bucket_share=round(in_top / calls, 3),
        top_bucket=f"{int(below) + 1}-{int(top)} rows",
    )


def ensure_py_spy() -> Path:
    """py-spy from its own cached venv (tests/bench/profiler/requirements.txt)."""
    target = cache_root() / "bench" / f"py-spy-{venvs.venv_key(PROFILER_DIR)}"
    return venvs.ensure_requirements_venv(PROFILER_DIR, target, "py-spy") / "bin" / "py-spy"


def scrape_metrics(port: int) -> str:
    return procs.http_get(port, "/metrics", 10.0)


def profile(
    process: procs.ServerProcess,
    url: str,
    body_file: Path,
    concurrency: int,
    duration_s: float,
    max_batch_size: int,
    out_file: Path,
) -> dict:
    """One wrk run at `concurrency` with py-spy recording the server; its stages and batches."""
    py_spy = ensure_py_spy()
    before = scrape_metrics(process.port)
    recorder = subprocess.Popen(
        [
            "taskset", "-c", str(loadgen.LOAD_CPU), str(py_spy), "record",
            "--pid", str(process.pid), "--rate", str(PROFILE_RATE_HZ),
            # Longer than the load: samples outside it are idle, and idle samples are left out.
            "--duration", str(int(duration_s) + 2), "--format", "raw", "--output", str(out_file),
            "--nonblocking", "--threads",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    time.sleep(0.5)  # py-spy attached before the load starts
    result = loadgen.run(url, body_file, concurrency, duration_s)
    try:
        _, stderr = recorder.communicate(timeout=duration_s + 30)
    except subprocess.TimeoutExpired:
        recorder.kill()
        raise RuntimeError("py-spy did not finish its recording") from None
    if recorder.returncode != 0 or not out_file.exists():
        raise RuntimeError(f"py-spy failed ({recorder.returncode}): {stderr.strip()[-500:]}")
    after = scrape_metrics(process.port)
    counts = sample_counts(out_file.read_text())
    batches = batch_stats(before, after, max_batch_size) if BATCH_METRIC in after else None
    return {
        "concurrency": concurrency,
        "requests": result.requests,
        "throughput_rps": result.throughput_rps,
        "samples": sum(counts.values()),
        "rate_hz": PROFILE_RATE_HZ,
        "stages_us_per_request": per_request_us(counts, result.requests),
        "batches": batches.to_dict() if batches is not None else None,
    }
