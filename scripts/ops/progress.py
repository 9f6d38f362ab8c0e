"""Timed, logged steps: the progress lines and step summaries the long `ops` commands print."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

Log = Callable[[str], None]


class Steps:
    """Logs each named step as it starts and ends, with its duration; `summary()` lists them all."""

    def __init__(self, log: Log) -> None:
        self.log = log
        self.results: list[tuple[str, float, str]] = []

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        started = time.monotonic()
        self.log(f"{name} ...")
        try:
            yield
        except BaseException:
            elapsed = time.monotonic() - started
            self.results.append((name, elapsed, "FAILED"))
            self.log(f"{name}: FAILED after {elapsed:.1f}s")
            raise
        elapsed = time.monotonic() - started
        self.results.append((name, elapsed, "ok"))
        self.log(f"{name}: done in {elapsed:.1f}s")

    def summary(self) -> str:
        lines = [f"  {seconds:6.1f}s  {status:6}  {name}" for name, seconds, status in self.results]
        total = sum(seconds for _, seconds, _ in self.results)
        return "\n".join([*lines, f"  {total:6.1f}s  total"])
