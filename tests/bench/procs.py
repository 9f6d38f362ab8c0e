"""Server processes: start pinned to a core, wait until ready, measure memory, stop.

A server may fork (gunicorn workers, MLServer inference workers, BentoML's supervisor),
so every measurement and every stop covers the whole process tree.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.thread_cpu import CLOCK_TICKS

SERVER_CPU = 1
READY_POLL_SECONDS = 0.02
STOP_GRACE_SECONDS = 15.0
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


class ServerFailed(RuntimeError):
    """The server exited or never became ready; the message carries its log tail."""


def http_request(
    port: int, path: str, timeout: float = 1.0, method: str = "GET", body: bytes | None = None
) -> tuple[int, bytes]:
    """One request to 127.0.0.1:`port`: its status and body."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def http_status(
    port: int, path: str, timeout: float = 1.0, method: str = "GET", body: bytes | None = None
) -> int:
    return http_request(port, path, timeout, method, body)[0]


def http_get(port: int, path: str, timeout: float = 1.0) -> str:
    """The body of a GET that must answer 200, as text."""
    status, payload = http_request(port, path, timeout)
    if status != 200:
        raise RuntimeError(f"GET {path} on port {port} answered {status}")
    return payload.decode("utf-8", "replace")


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass
class ServerProcess:
    """A running server: its root process, its port and its log."""

    name: str
    process: subprocess.Popen
    port: int
    log_path: Path
    started_at: float
    ready_after: float | None = None
    peak_rss_bytes: int = 0
    samples: list[int] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_ready(self, path: str, timeout: float) -> float:
        """Poll path until it answers 200; returns seconds since the process was started."""
        deadline = self.started_at + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerFailed(
                    f"{self.name} exited with {self.process.returncode} before it was ready:\n"
                    f"{log_tail(self.log_path)}"
                )
            try:
                if http_status(self.port, path, timeout=1.0) == 200:
                    self.ready_after = time.monotonic() - self.started_at
                    return self.ready_after
            except OSError:
                pass
            time.sleep(READY_POLL_SECONDS)
        raise ServerFailed(f"{self.name} not ready after {timeout:.0f}s:\n{log_tail(self.log_path)}")

    def tree(self) -> list[int]:
        return process_tree(self.pid)

    def sample_memory(self) -> int:
        rss = tree_rss_bytes(self.tree())
        self.samples.append(rss)
        self.peak_rss_bytes = max(self.peak_rss_bytes, rss)
        return rss

    def stop(self) -> None:
        stop_group(self.process)


def start(
    name: str,
    argv: Sequence[str],
    env: Mapping[str, str],
    cwd: Path,
    port: int,
    log_path: Path,
    cpu: int = SERVER_CPU,
) -> ServerProcess:
    """Start argv pinned to one core (children inherit the affinity) in its own process group."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log_file:
        started_at = time.monotonic()
        process = subprocess.Popen(
            ["taskset", "-c", str(cpu), *argv],
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return ServerProcess(name=name, process=process, port=port, log_path=log_path, started_at=started_at)


def stop_group(process: subprocess.Popen, grace: float = STOP_GRACE_SECONDS) -> None:
    """SIGTERM the process group, SIGKILL whatever is left after the grace period."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=grace)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=grace)


def parent_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    return children


def process_tree(root: int) -> list[int]:
    children = parent_map()
    tree, pending = [], [root]
    while pending:
        pid = pending.pop()
        tree.append(pid)
        pending.extend(children.get(pid, []))
    return tree


def tree_rss_bytes(pids: Sequence[int]) -> int:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/statm", "rb") as statm:
                total += int(statm.read().split()[1]) * PAGE_SIZE
        except (OSError, IndexError, ValueError):
            continue
    return total


def status_kib(pid: int, key: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_hwm_bytes(pids: Sequence[int]) -> int:
    """Sum of each process's own peak RSS (VmHWM): an upper bound for the tree's peak."""
    return sum(status_kib(pid, "VmHWM") for pid in pids) * 1024


def tree_pss_bytes(pids: Sequence[int]) -> int:
    """Proportional set size: shared pages (forked workers, libraries) counted once in total."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as rollup:
                for line in rollup:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1]) * 1024
                        break
        except OSError:
            continue
    return total


def cpu_busy_seconds(cpu: int) -> float:
    """Time one core spent busy (any process, kernel included) since boot, from /proc/stat."""
    with open("/proc/stat") as stat:
        for line in stat:
            if line.startswith(f"cpu{cpu} "):
                user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, line.split()[1:9])
                return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS
    raise RuntimeError(f"/proc/stat has no cpu{cpu}")
