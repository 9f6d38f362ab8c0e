"""CPU quota from cgroup v1 and v2 files, and the TensorFlow thread counts derived from it."""

from __future__ import annotations

from pathlib import Path

import pytest
from modelserver.cpu import cgroup_cpu_limit, detect_thread_counts, parse_cfs, parse_cpu_max, thread_counts


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def v1_tree(root: Path, quotas: dict[str, tuple[int, int]], own_path: str) -> Path:
    """A cgroup v1 hierarchy (cpu,cpuacct mount) and a /proc/self/cgroup naming own_path."""
    for relative, (quota, period) in quotas.items():
        directory = root / "cpu,cpuacct" / relative.lstrip("/")
        write(directory / "cpu.cfs_quota_us", f"{quota}\n")
        write(directory / "cpu.cfs_period_us", f"{period}\n")
    proc = root / "proc-self-cgroup"
    write(proc, f"12:memory:{own_path}\n4:cpu,cpuacct:{own_path}\n0::/\n")
    return proc


def v2_tree(root: Path, limits: dict[str, str], own_path: str) -> Path:
    write(root / "cgroup.controllers", "cpuset cpu io memory pids\n")
    for relative, cpu_max in limits.items():
        write(root / relative.lstrip("/") / "cpu.max", cpu_max + "\n")
    proc = root / "proc-self-cgroup"
    write(proc, f"0::{own_path}\n")
    return proc


@pytest.mark.parametrize(
    ("text", "cpus"), [("max 100000", None), ("150000 100000", 1.5), ("50000 100000", 0.5), ("200000", 2.0)]
)
def test_parse_cpu_max(text, cpus):
    assert parse_cpu_max(text) == cpus


@pytest.mark.parametrize(("quota", "period", "cpus"), [("-1", "100000", None), ("250000", "100000", 2.5)])
def test_parse_cfs(quota, period, cpus):
    assert parse_cfs(quota, period) == cpus


def test_v1_container_sees_its_own_cgroup_at_the_mount_root(tmp_path):
    # Docker / Kubernetes with cgroup v1: the container's cgroup is mounted at the root,
    # while /proc/self/cgroup still names the host-side path.
    proc = v1_tree(tmp_path, {"/": (150000, 100000)}, "/kubepods/burstable/pod1/abc")
    assert cgroup_cpu_limit(tmp_path, proc) == 1.5


def test_v1_host_view_takes_the_tightest_limit_on_the_path(tmp_path):
    proc = v1_tree(
        tmp_path,
        {"/": (-1, 100000), "/kubepods/pod1": (400000, 100000), "/kubepods/pod1/abc": (200000, 100000)},
        "/kubepods/pod1/abc",
    )
    assert cgroup_cpu_limit(tmp_path, proc) == 2.0


def test_v1_without_quota_is_unlimited(tmp_path):
    proc = v1_tree(tmp_path, {"/": (-1, 100000)}, "/")
    assert cgroup_cpu_limit(tmp_path, proc) is None


def test_v2_limit_on_own_cgroup(tmp_path):
    proc = v2_tree(
        tmp_path,
        {"/": "max 100000", "/kubepods.slice/pod.slice": "300000 100000"},
        "/kubepods.slice/pod.slice",
    )
    assert cgroup_cpu_limit(tmp_path, proc) == 3.0


def test_v2_container_namespace_root(tmp_path):
    proc = v2_tree(tmp_path, {"/": "100000 100000"}, "/")
    assert cgroup_cpu_limit(tmp_path, proc) == 1.0


def test_no_cgroup_files_means_no_limit(tmp_path):
    assert cgroup_cpu_limit(tmp_path, tmp_path / "missing") is None


@pytest.mark.parametrize(
    ("intra", "inter", "limit", "schedulable", "expected"),
    [
        (0, 0, None, 8, (8, 2)),  # no quota: every schedulable CPU
        (0, 0, 2.0, 64, (2, 2)),  # a 2-CPU pod on a 64-core node gets 2 threads, not 64
        (0, 0, 1.5, 64, (1, 1)),  # floor: 2 threads on 1.5 CPUs would be throttled
        (0, 0, 0.25, 64, (1, 1)),  # never below one
        (0, 0, 16.0, 4, (4, 2)),  # cpuset narrower than the quota
        (3, 5, 2.0, 64, (3, 5)),  # explicit settings win
    ],
)
def test_thread_counts(intra, inter, limit, schedulable, expected):
    counts = thread_counts(intra, inter, limit, schedulable)
    assert (counts.intra_op, counts.inter_op) == expected


@pytest.mark.parametrize(
    ("request_cpus", "schedulable", "intra", "source"),
    [
        (0.1, 64, 1, "cpu request"),
        (1.5, 64, 2, "cpu request"),
        (4.0, 64, 4, "cpu request"),
        (8.0, 2, 2, "cpu request"),
        (None, 64, 64, "schedulable CPUs"),
    ],
)
def test_without_a_limit_threads_follow_the_cpu_request(request_cpus, schedulable, intra, source):
    counts = thread_counts(0, 0, cpu_limit=None, schedulable=schedulable, cpu_request=request_cpus)
    assert (counts.intra_op, counts.source) == (intra, source)
    assert counts.inter_op == min(2, intra)


def test_a_cpu_limit_wins_over_the_request():
    counts = thread_counts(0, 0, cpu_limit=1.5, schedulable=64, cpu_request=4.0)
    assert (counts.intra_op, counts.source) == (1, "cpu limit")


def test_explicit_thread_settings_win_over_both():
    counts = thread_counts(3, 1, cpu_limit=1.0, schedulable=64, cpu_request=0.1)
    assert (counts.intra_op, counts.inter_op, counts.source) == (3, 1, "setting")


def test_the_request_from_the_downward_api_is_read_in_millicores(monkeypatch):
    monkeypatch.setattr("modelserver.cpu.cgroup_cpu_limit", lambda: None)
    monkeypatch.setattr("modelserver.cpu.schedulable_cpus", lambda: 64)
    assert detect_thread_counts(0, 0, cpu_request_millicores=100).intra_op == 1
    assert detect_thread_counts(0, 0, cpu_request_millicores=2500).intra_op == 3
    assert detect_thread_counts(0, 0, cpu_request_millicores=0).intra_op == 64  # unknown: the node's CPUs
    monkeypatch.setattr("modelserver.cpu.cgroup_cpu_limit", lambda: 2.0)
    assert detect_thread_counts(0, 0, cpu_request_millicores=100).intra_op == 2
