"""The TensorFlow floor and each model's serial limit.

The floor is what the model's own call costs with no server around it: a child process
(floor_worker.py) on the server's core, with the servers' thread settings, loads the
SavedModel with the server's own loader and calls `serving_default` on a prebuilt batch
in a loop. It stays up through the model's whole load phase and is measured at the end of
every round of the round-robin, next to the servers it is compared with, at the batch
sizes the server can reach (FLOOR_BATCH_SIZES) and at the mean batch our server reached
at the highest concurrency in that round.

The serial limit is what one core doing everything in series allows: each request pays
what the no-model ceiling server spends on it (HTTP, JSON parse and write) plus its row's
share of one TensorFlow call at the batch size our server reached:

    limit = 1 / (ceiling CPU per request + TensorFlow CPU per row)

and ours / limit, per round, is the share of it we get (median, min-max over rounds).
"""

from __future__ import annotations

import contextlib
import json
import selectors
import statistics
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from ops.paths import REPO_ROOT

from bench import procs, venvs
from bench.models import SIGNATURE, Model
from bench.servers import TF_THREADS, one_cpu_env

FLOOR_BATCH_SIZES = (1, 8, 32, 64)
FLOOR_SECONDS = 2.0
LOAD_TIMEOUT_SECONDS = 180.0
WORKER = Path(__file__).resolve().parent / "floor_worker.py"


class FloorFailed(RuntimeError):
    pass


@dataclass(frozen=True)
class FloorPoint:
    rows: int
    calls: int
    cpu_s: float
    wall_s: float
    tf_threads_cpu_s: float  # the part of cpu_s TensorFlow's own threads spent

    @property
    def cpu_us_per_call(self) -> float:
        return 1e6 * self.cpu_s / self.calls

    @property
    def cpu_us_per_row(self) -> float:
        return self.cpu_us_per_call / self.rows

    def to_dict(self) -> dict:
        return {
            "rows": self.rows,
            "calls": self.calls,
            "cpu_us_per_call": round(self.cpu_us_per_call, 1),
            "cpu_us_per_row": round(self.cpu_us_per_row, 2),
            "tf_threads_cpu_us_per_row": round(1e6 * self.tf_threads_cpu_s / self.calls / self.rows, 2),
            "wall_us_per_call": round(1e6 * self.wall_s / self.calls, 1),
        }


class FloorProcess:
    """One floor worker for one model, on the server's core, until `stop`."""

    def __init__(self, model: Model, log_path: Path) -> None:
        self.model = model
        self.log_file = log_path.open("w")
        env = one_cpu_env({"PYTHONPATH": str(REPO_ROOT / "image"), "TF_CPP_MIN_LOG_LEVEL": "2"})
        self.process = subprocess.Popen(
            ["taskset", "-c", str(procs.SERVER_CPU), str(venvs.PROJECT_VENV / "bin" / "python"), str(WORKER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log_file,
            env=env,
            text=True,
        )
        self.load_s = float(
            self.ask(
                {
                    "path": str(model.path),
                    "signature": SIGNATURE,
                    "input": model.input_name,
                    "dtype": model.dtype,
                    "instance": model.instance(),
                    "threads": TF_THREADS,
                },
                LOAD_TIMEOUT_SECONDS,
            )["load_s"]
        )

    def ask(self, message: dict, timeout_s: float) -> dict:
        stdin, stdout = self.streams()
        stdin.write(json.dumps(message) + "\n")
        stdin.flush()
        line = read_line(stdout, timeout_s)
        if not line:
            raise FloorFailed(
                f"the TensorFlow floor worker for {self.model.name} exited "
                f"(code {self.process.poll()}); its log: {self.log_file.name}"
            )
        return json.loads(line)

    def streams(self) -> tuple[IO[str], IO[str]]:
        assert self.process.stdin is not None and self.process.stdout is not None
        return self.process.stdin, self.process.stdout

    def measure(self, rows: int, seconds: float = FLOOR_SECONDS) -> FloorPoint:
        answer = self.ask({"rows": rows, "seconds": seconds}, seconds + LOAD_TIMEOUT_SECONDS)
        return FloorPoint(
            rows,
            int(answer["calls"]),
            float(answer["cpu_s"]),
            float(answer["wall_s"]),
            float(answer["tf_threads_cpu_s"]),
        )

    def stop(self) -> None:
        stdin, _ = self.streams()
        with contextlib.suppress(BrokenPipeError):  # the worker died first
            stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log_file.close()


def read_line(stream: IO[str], timeout_s: float) -> str:
    """One line from the worker, or '' when it ended; raises when it says nothing in time."""
    with selectors.DefaultSelector() as selector:
        selector.register(stream, selectors.EVENT_READ)
        if not selector.select(timeout_s):
            raise FloorFailed(f"the TensorFlow floor worker said nothing for {timeout_s:g}s")
    return stream.readline()


def round_sizes(mean_rows: Iterable[float | None]) -> list[int]:
    """The batch sizes measured in one round: the fixed ones, plus the mean each batching server
    reached (ours, and the `--baseline` checkout's: each one's limit needs the floor at its own)."""
    sizes = set(FLOOR_BATCH_SIZES)
    sizes.update(round(mean) for mean in mean_rows if mean is not None and round(mean) >= 1)
    return sorted(sizes)


def stats(values: list[float], digits: int) -> dict:
    return {
        "median": round(statistics.median(values), digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
    }


def measure_round(floor: FloorProcess, mean_rows: Iterable[float | None], seconds: float) -> dict[str, dict]:
    """One round of the floor: {rows: FloorPoint.to_dict()} at each of `round_sizes`."""
    return {str(rows): floor.measure(rows, seconds).to_dict() for rows in round_sizes(mean_rows)}


def summarize(rounds: list[dict[str, dict]]) -> dict:
    """Median and min-max TensorFlow CPU per call and per row at each fixed batch size."""
    summary = {}
    for rows in map(str, FLOOR_BATCH_SIZES):
        measured = [r[rows] for r in rounds if rows in r]
        if measured:
            summary[rows] = {
                "cpu_us_per_call": stats([m["cpu_us_per_call"] for m in measured], 1),
                "cpu_us_per_row": stats([m["cpu_us_per_row"] for m in measured], 2),
            }
    return summary


GAP_KEYS = (
    "ours_tf_threads_us_per_request",
    "limit_tf_threads_us_per_request",
    "ours_other_threads_us_per_request",
    "limit_other_threads_us_per_request",
)


def gap_by_thread(ours_run: dict, ceiling_us: float, floor_point: dict) -> dict:
    """Ours' CPU per request and the limit's, each split into TensorFlow's threads and the rest.

    The limit's TensorFlow part is the floor's own threads per row (one row per request);
    its rest is the ceiling's CPU plus the floor's dispatch per row. Empty for records
    from before the split was measured.
    """
    ours_tf = ours_run.get("tf_threads_cpu_us_per_request")
    floor_tf = floor_point.get("tf_threads_cpu_us_per_row")
    if ours_tf is None or floor_tf is None:
        return {}
    return {
        "ours_tf_threads_us_per_request": ours_tf,
        "limit_tf_threads_us_per_request": floor_tf,
        "ours_other_threads_us_per_request": round(ours_run["server_cpu_us_per_request"] - ours_tf, 1),
        "limit_other_threads_us_per_request": round(ceiling_us + floor_point["cpu_us_per_row"] - floor_tf, 1),
    }


def serial_limit(floor: dict, ours: dict, ceiling: dict, concurrency: int) -> dict | None:
    """Per round: the limit from the ceiling's CPU per request and the floor at our mean batch.

    `ours` and `ceiling` are the two servers' reports for the model. None when a report
    lacks the point, our batch sizes, or the floor at that batch size.
    """
    ours_runs = ours.get("points", {}).get(str(concurrency), {}).get("runs", [])
    ceiling_runs = ceiling.get("points", {}).get(str(concurrency), {}).get("runs", [])
    rounds = []
    for index, floor_round in enumerate(floor.get("rounds", [])):
        if index >= len(ours_runs) or index >= len(ceiling_runs):
            break
        batches = ours_runs[index].get("batches")
        if not batches:
            continue
        rows = str(round(batches["mean_rows_per_call"]))
        if rows not in floor_round:
            continue
        ceiling_us = ceiling_runs[index]["server_cpu_us_per_request"]
        tf_row_us = floor_round[rows]["cpu_us_per_row"]
        limit = 1e6 / (ceiling_us + tf_row_us)
        ours_rps = ours_runs[index]["throughput_rps"]
        rounds.append(
            gap_by_thread(ours_runs[index], ceiling_us, floor_round[rows])
            | {
                "mean_rows_per_call": batches["mean_rows_per_call"],
                "top_bucket_share": batches["top_bucket_share"],
                "ceiling_cpu_us_per_request": ceiling_us,
                "tf_cpu_us_per_row": tf_row_us,
                "limit_rps": round(limit, 1),
                "ours_rps": ours_rps,
                "ours_over_limit": round(ours_rps / limit, 3),
            }
        )
    if not rounds:
        return None

    def over(key: str, digits: int) -> dict:
        return stats([r[key] for r in rounds], digits)

    split = {key: over(key, 1) for key in GAP_KEYS if all(key in r for r in rounds)}
    return split | {
        "concurrency": concurrency,
        "rounds": rounds,
        "mean_rows_per_call": over("mean_rows_per_call", 1),
        "top_bucket_share": over("top_bucket_share", 3),
        "ceiling_cpu_us_per_request": over("ceiling_cpu_us_per_request", 1),
        "tf_cpu_us_per_row": over("tf_cpu_us_per_row", 2),
        "limit_rps": over("limit_rps", 1),
        "ours_rps": over("ours_rps", 1),
        "ours_over_limit": over("ours_over_limit", 3),
    }
