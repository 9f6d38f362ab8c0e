"""Remove everything a running, stopped or SIGKILLed local cluster leaves on the machine.

Order matters. With the kubelet stopped and containerd still up, CRI removes every pod
(its CNI DEL frees addresses and iptables rules). What a kill left behind is then removed
by hand: processes (supervisors, containerd, shims, kubelet, container processes in the
kubepods cgroups), mounts under our roots, the pod bridge and veths, address and result
caches, our iptables chains, kubeadm's files, the kubepods cgroups, changed sysctls.
Only things that are provably ours are touched (see `ours_*` below).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from ops.local_cluster import containerd, host, iptables, kubelet, layout
from ops.local_cluster.processes import cmdline_of, current, exe_of, find, signal_all, stop, wait_gone
from ops.paths import kubernetes_binary

CGROUP_ROOT = Path("/sys/fs/cgroup")
SHIM_SOCKET_DIR = Path("/run/containerd/s")


@dataclass
class Report:
    actions: list[str] = field(default_factory=list)

    def add(self, what: str, count: int) -> None:
        if count:
            self.actions.append(f"{what}: {count}")

    def summary(self) -> str:
        return "; ".join(self.actions) if self.actions else "nothing to clean"


# ---------------------------------------------------------------------------- what is ours


def our_roots() -> list[Path]:
    return [layout.KUBELET_DIR, layout.containerd_root(), layout.STATE_DIR, layout.base_dir()]


def ours_by_command(pid: int) -> bool:
    """A host process of this cluster (supervisor, containerd, shim, kubelet), by paths only we use."""
    command = cmdline_of(pid)
    joined = " ".join(command)
    if str(layout.CONTAINERD_SOCKET) in joined or str(layout.containerd_config()) in joined:
        return True  # containerd itself, its shims (-address <our socket>)
    if "ops.local_cluster.supervisor" in joined and str(layout.pids_dir()) in joined:
        return True
    return exe_of(pid) in {str(kubernetes_binary("kubelet"))}


def kubepods_cgroups() -> list[Path]:
    """Every kubepods cgroup directory (one per mounted v1 controller, plus the v2 tree)."""
    found = []
    if CGROUP_ROOT.exists():
        for controller in CGROUP_ROOT.iterdir():
            candidate = controller / "kubepods"
            if candidate.is_dir():
                found.append(candidate)
        if (CGROUP_ROOT / "kubepods").is_dir():
            found.append(CGROUP_ROOT / "kubepods")
    return found


def container_pids() -> set[int]:
    pids: set[int] = set()
    for top in kubepods_cgroups():
        for procs in top.rglob("cgroup.procs"):
            try:
                pids.update(int(line) for line in procs.read_text().split())
            except (OSError, ValueError):
                continue
    return pids


def our_mounts() -> list[str]:
    """Mount points under our roots, deepest first (so children unmount before parents)."""
    roots = [str(root) for root in our_roots()]
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if any(point == root or point.startswith(root + "/") for root in roots):
            points.append(point)
    return sorted(set(points), key=lambda p: (p.count("/"), p), reverse=True)


def our_links() -> list[str]:
    """The pod bridge and every interface enslaved to it (host ends of pod veths)."""
    result = subprocess.run(["ip", "-j", "link", "show"], capture_output=True, text=True, check=False)
    links = json.loads(result.stdout or "[]")
    return [
        link["ifname"]
        for link in links
        if link.get("ifname") == layout.BRIDGE or link.get("master") == layout.BRIDGE
    ]


def our_shim_sockets() -> list[Path]:
    """Our shims' sockets: they live in containerd's default state dir whatever ours is.

    Each task's bundle names its socket; the name is also derivable from address/namespace/id.
    """
    sockets = []
    tasks = layout.CONTAINERD_STATE / "io.containerd.runtime.v2.task"
    if tasks.exists():
        for bundle in tasks.glob("*/*"):
            address_file = bundle / "address"
            if address_file.exists():
                sockets.append(Path(address_file.read_text().strip().removeprefix("unix://")))
            digest = hashlib.sha256(f"{layout.CONTAINERD_SOCKET}/{bundle.parent.name}/{bundle.name}".encode())
            sockets.append(SHIM_SOCKET_DIR / digest.hexdigest())
    return [socket for socket in sockets if socket.exists()]


def our_cni_results() -> list[Path]:
    """libcni's cached ADD results for our network, and the loopback ones of the same sandboxes."""
    if not layout.CNI_RESULT_CACHE.exists():
        return []
    ours = sorted(layout.CNI_RESULT_CACHE.glob(f"{layout.CNI_NETWORK}-*"))
    sandbox_ids = {path.name.removeprefix(f"{layout.CNI_NETWORK}-").rsplit("-", 1)[0] for path in ours}
    loopbacks = [layout.CNI_RESULT_CACHE / f"cni-loopback-{sandbox}-lo" for sandbox in sorted(sandbox_ids)]
    return ours + [path for path in loopbacks if path.exists()]


def our_container_log_links() -> list[Path]:
    if not layout.CONTAINER_LOG_LINKS.exists():
        return []
    ours = str(layout.pod_logs_dir())
    return [
        link
        for link in layout.CONTAINER_LOG_LINKS.iterdir()
        if link.is_symlink() and str(link.readlink()).startswith(ours)
    ]


# ---------------------------------------------------------------------------- removal steps


def stop_gracefully(report: Report) -> None:
    """The clean path: kubelet off, pods removed through CRI (CNI DEL), containerd off."""
    kubelet.stop()
    if containerd.answers():
        containerd.remove_all_pods()
        report.add("pods removed through CRI", 1)
    containerd.stop()


def kill_leftovers(report: Report) -> None:
    host_processes = find(ours_by_command)
    stop(host_processes, grace=5.0)
    report.add("leftover host processes stopped", len(host_processes))
    # Container processes whose shim is gone: nothing else will ever stop them.
    containers = [process for pid in container_pids() if (process := current(pid)) is not None]
    signal_all(containers, signal.SIGKILL)
    wait_gone(containers, 10.0)
    report.add("leftover container processes killed", len(containers))


def unmount_all(report: Report) -> None:
    points = our_mounts()
    for point in points:
        result = subprocess.run(["umount", point], capture_output=True, check=False)
        if result.returncode != 0:
            subprocess.run(["umount", "-l", point], capture_output=True, check=False)
    report.add("mounts removed", len(points))


def remove_links(report: Report) -> None:
    links = our_links()
    for name in sorted(links, key=lambda n: n == layout.BRIDGE):  # veths first, bridge last
        subprocess.run(["ip", "link", "delete", name], capture_output=True, check=False)
    report.add("network interfaces deleted", len(links))


def remove_cgroups(report: Report) -> None:
    removed = 0
    for top in kubepods_cgroups():
        for directory in sorted(
            (d for d in top.rglob("*") if d.is_dir()), key=lambda d: len(d.parts), reverse=True
        ):
            try:
                directory.rmdir()
                removed += 1
            except OSError:
                pass
        try:
            top.rmdir()
            removed += 1
        except OSError:
            pass
    report.add("cgroups removed", removed)


def remove_paths(paths: list[Path], report: Report, what: str) -> None:
    count = 0
    for path in paths:
        if path.is_symlink() or path.is_file() or path.is_socket():
            path.unlink(missing_ok=True)
            count += 1
        elif path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
            count += 1
    report.add(what, count)


def remove_if_empty(directory: Path) -> None:
    with contextlib.suppress(OSError):
        directory.rmdir()


def remove_files(report: Report) -> None:
    remove_paths(our_shim_sockets(), report, "stale shim sockets removed")
    remove_paths(our_cni_results(), report, "CNI result caches removed")
    remove_paths(our_container_log_links(), report, "container log links removed")
    for directory in (layout.CNI_RESULT_CACHE, layout.CNI_RESULT_CACHE.parent, layout.CONTAINER_LOG_LINKS):
        remove_if_empty(directory)
    node_state = [
        layout.STATE_DIR,
        layout.etcd_dir(),
        layout.volumes_dir(),
        layout.pids_dir(),
        layout.kubeconfig(),
    ]
    if layout.OWNER_MARKER.exists():
        node_state += [layout.KUBELET_DIR, layout.KUBERNETES_DIR]
    remove_paths([p for p in node_state if p.exists() or p.is_symlink()], report, "state directories removed")


def clean(report: Report | None = None) -> Report:
    """Bring the machine back to "no local cluster", from any state."""
    report = report or Report()
    stop_gracefully(report)
    kill_leftovers(report)
    unmount_all(report)
    remove_links(report)
    remove_files(report)
    removed_chains = iptables.remove_ours()
    report.add("iptables chains removed", len(removed_chains))
    remove_cgroups(report)
    host.restore_sysctls()
    return report


# ---------------------------------------------------------------------------- verification


def leftovers() -> list[str]:
    """Anything of the cluster still on the machine (empty list = clean)."""
    found = [f"process {p.pid}: {' '.join(p.cmdline())[:120]}" for p in find(ours_by_command)]
    found += [f"container process {pid}" for pid in sorted(container_pids())]
    found += [f"mount {point}" for point in our_mounts()]
    found += [f"interface {name}" for name in our_links()]
    found += [f"IP allocations {path}" for path in [layout.CNI_IPAM_DIR] if path.exists()]
    found += [f"CNI result cache {path}" for path in our_cni_results()]
    found += [f"shim socket {path}" for path in our_shim_sockets()]
    found += iptables.leftovers()
    found += [f"cgroup {path}" for path in kubepods_cgroups()]
    if os.path.exists(layout.STATE_DIR):
        found.append(f"state dir {layout.STATE_DIR}")
    return found
