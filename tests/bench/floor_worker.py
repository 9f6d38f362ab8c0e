"""The TensorFlow floor's child process: the model's own call in a loop, nothing around it.

    python floor_worker.py   (PYTHONPATH=image; bench.tf_floor starts it on the server's core)

Loads the SavedModel with the server's own loader (same thread settings, same warm-up,
the same call the inference thread makes: the flat call once warm-up verified it), then
answers one JSON line per JSON line on stdin:

    {"path": ..., "signature": ..., "input": ..., "dtype": ..., "instance": [...], "threads": 1}
        -> {"ready": true, "load_s": ...}
    {"rows": 32, "seconds": 2.0}
        -> {"rows": 32, "calls": ..., "cpu_s": ..., "tf_threads_cpu_s": ..., "wall_s": ...}

The batch is built once per command, so the loop times TensorFlow alone. CPU is the
whole process's (TensorFlow's own pools included); `tf_threads_cpu_s` is the part of it
TensorFlow's own threads spent (thread_cpu.py, next to this file). EOF ends it.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from modelserver.cpu import ThreadCounts
from modelserver.loader import load_and_warm_up
from thread_cpu import process_thread_cpu

MIN_CALLS = 3


def reply(message: dict) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def main() -> None:
    config = json.loads(sys.stdin.readline())
    threads = int(config["threads"])
    counts = ThreadCounts(intra_op=threads, inter_op=threads, cpu_limit=None, schedulable=1)
    model, _ = load_and_warm_up(counts, "floor", 1, Path(config["path"]))
    signature = model.signatures[config["signature"]]
    instance = np.asarray(config["instance"], dtype=config["dtype"])
    reply({"ready": True, "load_s": round(model.load_seconds, 2)})
    for line in sys.stdin:
        command = json.loads(line)
        rows = int(command["rows"])
        inputs = {config["input"]: np.repeat(instance[np.newaxis], rows, axis=0)}
        signature.run(inputs)  # a new batch shape may build a new graph once: not the floor
        calls = 0
        threads_start = process_thread_cpu(os.getpid())
        wall_start, cpu_start = time.perf_counter(), time.process_time()
        deadline = wall_start + float(command["seconds"])
        while calls < MIN_CALLS or time.perf_counter() < deadline:
            signature.run(inputs)
            calls += 1
        reply(
            {
                "rows": rows,
                "calls": calls,
                "cpu_s": time.process_time() - cpu_start,
                "tf_threads_cpu_s": (process_thread_cpu(os.getpid()) - threads_start).tensorflow_s,
                "wall_s": time.perf_counter() - wall_start,
            }
        )


if __name__ == "__main__":
    main()
