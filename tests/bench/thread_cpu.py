"""A process's CPU time split between TensorFlow's own threads and the rest, from /proc.

TensorFlow names the threads of its pools (`tf_Compute`, ...); Python 3.11 leaves its
threads with the process's name. So the split is TensorFlow's kernels on one side, and
everything that runs Python on the other: the event loop (HTTP, parsing, the queue,
encoding) and the inference thread's dispatch into TensorFlow. The rest is the
process's total minus TensorFlow's threads, so threads that ended are counted too.

Loaded as `bench.thread_cpu` by the bench and by path in the floor worker (its own
directory is on its sys.path): standard library only.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

TF_THREAD_PREFIX = "tf_"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ThreadCpu:
    tensorflow_s: float = 0.0
    other_s: float = 0.0

    @property
    def total_s(self) -> float:
        return self.tensorflow_s + self.other_s

    def __add__(self, other: ThreadCpu) -> ThreadCpu:
        return ThreadCpu(self.tensorflow_s + other.tensorflow_s, self.other_s + other.other_s)

    def __sub__(self, other: ThreadCpu) -> ThreadCpu:
        return ThreadCpu(self.tensorflow_s - other.tensorflow_s, self.other_s - other.other_s)


def stat_cpu_seconds(stat: bytes) -> float:
    """utime + stime of one /proc/<pid>[/task/<tid>]/stat line (fields after the command's ')')."""
    fields = stat.rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def process_thread_cpu(pid: int) -> ThreadCpu:
    """One process's CPU so far, TensorFlow's threads apart; zero when it is gone."""
    try:
        total = stat_cpu_seconds(Path(f"/proc/{pid}/stat").read_bytes())
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return ThreadCpu()
    tensorflow = 0.0
    for task in tasks:
        try:
            if (task / "comm").read_text().startswith(TF_THREAD_PREFIX):
                tensorflow += stat_cpu_seconds((task / "stat").read_bytes())
        except OSError:  # the thread ended meanwhile: its time is in the process's total
            continue
    return ThreadCpu(tensorflow, max(total - tensorflow, 0.0))


def tree_thread_cpu(pids: Sequence[int]) -> ThreadCpu:
    """The split summed over a process tree."""
    summed = ThreadCpu()
    for pid in pids:
        summed += process_thread_cpu(pid)
    return summed
