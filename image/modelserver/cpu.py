"""How many CPUs this container may use, and TensorFlow's thread counts from it.

os.cpu_count() reports the host's cores; a pod limited to 1 CPU on a 64-core node would
otherwise start 64 intra-op threads and be throttled by the CFS quota all the time. In
order: the cgroup CPU quota (a CPU limit), else the pod's CPU request (the chart passes
it through the downward API, as TFMS_CPU_REQUEST_MILLICORES: the chart sets no CPU limit
on purpose, and a 100m pod on a 64-core node must not start 64 threads), else the CPUs
the process may be scheduled on.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_SELF_CGROUP = Path("/proc/self/cgroup")
V1_CPU_MOUNTS = ("cpu,cpuacct", "cpu", "cpuacct,cpu")


def parse_cpu_max(text: str) -> float | None:
    """cgroup v2 ``cpu.max``: "<quota> <period>" or "max <period>" -> CPUs, None when unlimited."""
    fields = text.split()
    if not fields or fields[0] == "max":
        return None
    quota = int(fields[0])
    period = int(fields[1]) if len(fields) > 1 else 100_000
    return quota / period if quota > 0 and period > 0 else None


def parse_cfs(quota_text: str, period_text: str) -> float | None:
    """cgroup v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` -> CPUs, None when unlimited (-1)."""
    quota = int(quota_text.strip())
    period = int(period_text.strip())
    return quota / period if quota > 0 and period > 0 else None


def own_cgroup_paths(proc_self_cgroup: Path) -> tuple[str | None, str | None]:
    """(v1 cpu controller path, v2 unified path) of this process, as /proc/self/cgroup lists them."""
    v1_path: str | None = None
    v2_path: str | None = None
    try:
        lines = proc_self_cgroup.read_text().splitlines()
    except OSError:
        return None, None
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":
            v2_path = path
        elif "cpu" in controllers.split(","):
            v1_path = path
    return v1_path, v2_path


def directories_up(mount: Path, relative: str | None) -> list[Path]:
    """The process's cgroup directory and each parent up to the mount (a limit on any of them applies).

    Inside a container with its own cgroup namespace (or a bind-mounted cgroup fs) the
    listed path does not exist under the mount; then the mount itself is the container's cgroup.
    """
    candidates: list[Path] = []
    if relative and relative != "/":
        leaf = mount / relative.lstrip("/")
        if leaf.is_dir():
            current = leaf
            while current != mount and mount in current.parents:
                candidates.append(current)
                current = current.parent
    candidates.append(mount)
    return candidates


def read_limit_v1(directory: Path) -> float | None:
    quota = directory / "cpu.cfs_quota_us"
    period = directory / "cpu.cfs_period_us"
    if not (quota.is_file() and period.is_file()):
        return None
    return parse_cfs(quota.read_text(), period.read_text())


def read_limit_v2(directory: Path) -> float | None:
    cpu_max = directory / "cpu.max"
    return parse_cpu_max(cpu_max.read_text()) if cpu_max.is_file() else None


def cgroup_cpu_limit(root: Path = CGROUP_ROOT, proc_self_cgroup: Path = PROC_SELF_CGROUP) -> float | None:
    """The tightest CPU quota on this process's cgroup path, in CPUs; None when there is none."""
    v1_path, v2_path = own_cgroup_paths(proc_self_cgroup)
    limits: list[float] = []
    v1_mount = next((root / name for name in V1_CPU_MOUNTS if (root / name).is_dir()), None)
    if v1_mount is not None:
        limits += [
            limit for d in directories_up(v1_mount, v1_path) if (limit := read_limit_v1(d)) is not None
        ]
    elif (root / "cgroup.controllers").is_file():
        limits += [limit for d in directories_up(root, v2_path) if (limit := read_limit_v2(d)) is not None]
    return min(limits) if limits else None


def schedulable_cpus() -> int:
    """CPUs this process may run on (cpuset / taskset), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class ThreadCounts:
    intra_op: int
    inter_op: int
    cpu_limit: float | None
    schedulable: int
    cpu_request: float | None = None
    source: str = "setting"  # what intra_op came from: setting, cpu limit, cpu request, schedulable CPUs

    def describe(self) -> str:
        limit = "none" if self.cpu_limit is None else f"{self.cpu_limit:g}"
        request = "unknown" if self.cpu_request is None else f"{self.cpu_request:g}"
        return (
            f"intra-op {self.intra_op} (from {self.source}), inter-op {self.inter_op}; "
            f"CPU limit {limit}, CPU request {request}, schedulable CPUs {self.schedulable}"
        )


def usable_cpus(cpu_limit: float | None, cpu_request: float | None, schedulable: int) -> tuple[int, str]:
    """Whole CPUs to size the thread pools for, and where the number came from.

    A limit is a hard cap (floored: 1.5 CPUs of quota cannot keep 2 threads busy); a
    request is what the pod is guaranteed and may exceed when the node is idle (rounded
    up: 1.5 CPUs keep 2 threads busy).
    """
    if cpu_limit is not None:
        return min(schedulable, max(1, math.floor(cpu_limit))), "cpu limit"
    if cpu_request is not None and cpu_request > 0:
        return min(schedulable, max(1, math.ceil(cpu_request))), "cpu request"
    return schedulable, "schedulable CPUs"


def thread_counts(
    intra_setting: int,
    inter_setting: int,
    cpu_limit: float | None,
    schedulable: int,
    cpu_request: float | None = None,
) -> ThreadCounts:
    """Explicit settings win; 0 means derive intra-op threads from `usable_cpus`."""
    usable, source = usable_cpus(cpu_limit, cpu_request, schedulable)
    intra = intra_setting or usable
    # The served graphs are mostly one chain of ops; more inter-op threads only add contention.
    inter = inter_setting or max(1, min(2, intra))
    return ThreadCounts(
        intra_op=intra,
        inter_op=inter,
        cpu_limit=cpu_limit,
        schedulable=schedulable,
        cpu_request=cpu_request,
        source="setting" if intra_setting else source,
    )


def detect_thread_counts(intra_setting: int, inter_setting: int, cpu_request_millicores: int) -> ThreadCounts:
    request = cpu_request_millicores / 1000 if cpu_request_millicores > 0 else None
    return thread_counts(intra_setting, inter_setting, cgroup_cpu_limit(), schedulable_cpus(), request)
