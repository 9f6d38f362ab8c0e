"""Resource samples of a running server process over time: RSS, open file descriptors, threads."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import asdict, dataclass

from bench import procs


@dataclass(frozen=True)
class Sample:
    at_s: float  # seconds since the sampler started
    rss_bytes: int
    open_fds: int
    threads: int

    def to_dict(self) -> dict:
        return asdict(self)


def open_fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def threads(pid: int) -> int:
    return procs.status_kib(pid, "Threads")  # the field is a plain count


class Sampler(threading.Thread):
    """Samples a process tree every `period_s` until stopped (bounded by `max_samples`)."""

    def __init__(self, pid: int, period_s: float, max_samples: int = 100_000) -> None:
        super().__init__(daemon=True, name="sampler")
        self.pid = pid
        self.period_s = period_s
        self.max_samples = max_samples
        self.samples: list[Sample] = []
        self.halt = threading.Event()
        self.started_at = time.monotonic()

    def take(self) -> Sample:
        tree = procs.process_tree(self.pid)
        sample = Sample(
            at_s=round(time.monotonic() - self.started_at, 2),
            rss_bytes=procs.tree_rss_bytes(tree),
            open_fds=sum(open_fds(pid) for pid in tree),
            threads=sum(threads(pid) for pid in tree),
        )
        self.samples.append(sample)
        return sample

    def run(self) -> None:
        self.started_at = time.monotonic()
        while not self.halt.is_set() and len(self.samples) < self.max_samples:
            self.take()
            self.halt.wait(self.period_s)

    def stop(self) -> list[Sample]:
        self.halt.set()
        self.join()
        return self.samples

    @property
    def peak_rss_bytes(self) -> int:
        return max((s.rss_bytes for s in self.samples), default=0)
