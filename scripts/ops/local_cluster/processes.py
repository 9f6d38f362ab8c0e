"""Host processes: pid files that survive pid reuse, finding our processes, stopping them.

A pid file holds "<pid> <start time>" (field 22 of /proc/<pid>/stat), so a stale file
left by a killed cluster never names an unrelated process that reused the pid.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Process:
    pid: int
    start_time: int

    def alive(self) -> bool:
        return start_time_of(self.pid) == self.start_time

    def cmdline(self) -> list[str]:
        return cmdline_of(self.pid)


def start_time_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ")".
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] == "Z":  # a zombie is as good as gone
        return None
    return int(fields[19])


def cmdline_of(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def exe_of(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return ""


def current(pid: int) -> Process | None:
    started = start_time_of(pid)
    return Process(pid, started) if started is not None else None


def write_pidfile(path: Path, pid: int) -> None:
    process = current(pid)
    if process is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(f"{process.pid} {process.start_time}\n")
    tmp.replace(path)


def read_pidfile(path: Path) -> Process | None:
    """The live process a pid file names, or None (missing, malformed or stale)."""
    try:
        pid_text, start_text = path.read_text().split()
        process = Process(int(pid_text), int(start_text))
    except (OSError, ValueError):
        return None
    return process if process.alive() else None


def all_pids() -> Iterator[int]:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            yield int(entry.name)


def find(predicate: Callable[[int], bool]) -> list[Process]:
    found = []
    for pid in all_pids():
        if pid == os.getpid():
            continue
        try:
            matches = predicate(pid)
        except OSError:
            continue
        if matches:
            process = current(pid)
            if process is not None:
                found.append(process)
    return found


def wait_gone(processes: list[Process], timeout: float) -> list[Process]:
    deadline = time.monotonic() + timeout
    remaining = [p for p in processes if p.alive()]
    while remaining and time.monotonic() < deadline:
        time.sleep(0.1)
        remaining = [p for p in remaining if p.alive()]
    return remaining


def signal_all(processes: list[Process], sig: signal.Signals) -> None:
    for process in processes:
        if process.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, sig)


def stop(processes: list[Process], grace: float = 10.0) -> None:
    """SIGTERM, wait up to grace seconds, then SIGKILL whatever is left."""
    signal_all(processes, signal.SIGTERM)
    left = wait_gone(processes, grace)
    if left:
        signal_all(left, signal.SIGKILL)
        wait_gone(left, 5.0)
