"""What the machine must provide: root, Debian packages, kernel settings, a node address, free ports."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ops import apt
from ops.local_cluster import layout

# Debian package -> a file it installs (present = installed).
PACKAGES = {
    "containerd": "/usr/bin/containerd",
    "runc": "/usr/sbin/runc",
    "containernetworking-plugins": "/usr/lib/cni/bridge",
    "iptables": "/usr/sbin/iptables",
    "conntrack": "/usr/sbin/conntrack",
    "socat": "/usr/bin/socat",
    "ethtool": "/usr/sbin/ethtool",
    "ebtables": "/usr/sbin/ebtables",
    "iproute2": "/usr/sbin/ip",
    "util-linux": "/usr/bin/nsenter",
    "kmod": "/usr/sbin/modprobe",
}
CNI_BIN_DIR = Path("/usr/lib/cni")
KERNEL_MODULES = ("overlay", "br_netfilter")
# Values the cluster needs; kube-proxy sets route_localnet itself (localhost NodePorts).
SYSCTLS = {
    "net/ipv4/ip_forward": "1",
    "net/bridge/bridge-nf-call-iptables": "1",
    "net/bridge/bridge-nf-call-ip6tables": "1",
}
# Sysctls the cluster changes that nothing else on the machine needs: restored on cluster-down.
RESTORED_SYSCTLS = ("net/ipv4/conf/all/route_localnet",)
# apiserver, etcd client/peer/metrics, kubelet, controller-manager, scheduler, kube-proxy.
PORTS = (layout.API_PORT, 2379, 2380, 2381, 10248, 10250, 10256, 10257, 10259, 10249)


class HostNotReady(RuntimeError):
    pass


def log(message: str) -> None:
    print(f"[local] {message}", flush=True)


def require_root() -> None:
    if os.geteuid() != 0:
        raise HostNotReady("the local cluster runs containerd and the kubelet as root: run as root")


def ensure_packages() -> None:
    missing = [package for package, path in PACKAGES.items() if not Path(path).exists()]
    if not missing:
        return
    apt.install(missing, "the local cluster needs them")


def read_sysctl(name: str) -> str | None:
    try:
        return (Path("/proc/sys") / name).read_text().strip()
    except OSError:
        return None


def write_sysctl(name: str, value: str) -> None:
    (Path("/proc/sys") / name).write_text(f"{value}\n")


def prepare_kernel() -> None:
    for module in KERNEL_MODULES:
        if not Path(f"/sys/module/{module}").exists() and shutil.which("modprobe"):
            subprocess.run(["modprobe", module], check=False, capture_output=True)
    for name, value in SYSCTLS.items():
        if read_sysctl(name) is None:
            raise HostNotReady(f"/proc/sys/{name} is missing (kernel module br_netfilter not available?)")
        if read_sysctl(name) != value:
            write_sysctl(name, value)


def saved_sysctls_path() -> Path:
    return layout.base_dir() / "sysctls.json"


def save_sysctls() -> None:
    """Remember the machine's own values once (a killed cluster must not overwrite them)."""
    path = saved_sysctls_path()
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({name: read_sysctl(name) for name in RESTORED_SYSCTLS}))


def restore_sysctls() -> None:
    path = saved_sysctls_path()
    if not path.exists():
        return
    for name, value in json.loads(path.read_text()).items():
        if value is not None and read_sysctl(name) != value:
            write_sysctl(name, value)
    path.unlink()


@dataclass(frozen=True)
class NodeAddress:
    ip: str
    interface: str


def ip_json(*args: str) -> list[dict[str, Any]]:
    result = subprocess.run(["ip", "-j", *args], capture_output=True, text=True, check=True)
    return list(json.loads(result.stdout or "[]"))


def node_address() -> NodeAddress:
    """The address of the interface that carries the default route (what kind's node has on eth0)."""
    for route in ip_json("-4", "route", "show", "default"):
        device = route.get("dev", "")
        for link in ip_json("-4", "addr", "show", "dev", device):
            for info in link.get("addr_info", []):
                if info.get("scope") == "global":
                    return NodeAddress(info["local"], device)
    raise HostNotReady(
        "no IPv4 default route with a global address: kubeadm advertises the apiserver on the "
        "node's address, so the machine needs one (an offline laptop: add a dummy interface with "
        "an address and a default route through it)"
    )


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("0.0.0.0", port))
        except OSError:
            return True
    return False


def check_ports_free() -> None:
    busy = [port for port in PORTS if port_in_use(port)]
    if busy:
        raise HostNotReady(
            f"ports {busy} are in use by something that is not this cluster "
            "(another Kubernetes? `ss -ltnp` shows who); stop it first"
        )


def check_not_foreign_install() -> None:
    """Refuse to touch a kubeadm install that is not ours."""
    if (
        layout.KUBERNETES_DIR.exists()
        and any(layout.KUBERNETES_DIR.iterdir())
        and not layout.OWNER_MARKER.exists()
    ):
        raise HostNotReady(
            f"{layout.KUBERNETES_DIR} exists and was not created by this project's local cluster; "
            "refusing to overwrite another Kubernetes installation"
        )
