"""Every name, address and path of the local cluster, in one place.

kubeadm fixes two paths (/etc/kubernetes and /var/lib/kubelet), as it does inside a kind
node; everything else is ours: the containerd root (kept: it is the image cache), and a
run directory with logs, pid files, configs and the CNI config, recreated on bring-up.
Short-lived runtime state (containerd state, sockets, netns, IP allocations) lives under
/run/tfms-local-cluster so its paths stay short and obviously ours.
"""

from __future__ import annotations

from pathlib import Path

from ops.paths import cache_root

CLUSTER_NAME = "tfms-local"
NODE_NAME = "tfms-local"
API_PORT = 6443
# The address every kubeconfig names: stable when the machine's own address changes.
CONTROL_PLANE_ENDPOINT = f"127.0.0.1:{API_PORT}"
POD_SUBNET = "10.244.0.0/16"
NODE_POD_CIDR = "10.244.0.0/24"  # kube-controller-manager gives the first (only) node the first /24
SERVICE_SUBNET = "10.96.0.0/16"
DNS_DOMAIN = "cluster.local"
CNI_NETWORK = "tfms-local"
BRIDGE = "tfms0"
NODEPORT_RANGE = "30000-32767"

# kubeadm's fixed locations. The marker says "ours": nothing is wiped without it.
KUBERNETES_DIR = Path("/etc/kubernetes")
KUBELET_DIR = Path("/var/lib/kubelet")
OWNER_MARKER = KUBERNETES_DIR / ".tfms-local-cluster"
SUPER_ADMIN_CONF = KUBERNETES_DIR / "super-admin.conf"
ADMIN_CONF = KUBERNETES_DIR / "admin.conf"
KUBEADM_FLAGS_ENV = KUBELET_DIR / "kubeadm-flags.env"
KUBELET_CONFIG = KUBELET_DIR / "config.yaml"
# libcni (inside containerd) caches ADD results here; its directory is not configurable.
CNI_RESULT_CACHE = Path("/var/lib/cni/results")
# The kubelet links every container log here; the directory is not configurable either.
CONTAINER_LOG_LINKS = Path("/var/log/containers")

STATE_DIR = Path("/run/tfms-local-cluster")
CONTAINERD_STATE = STATE_DIR / "containerd"
CONTAINERD_SOCKET = STATE_DIR / "containerd.sock"
RUNC_ROOT = STATE_DIR / "runc"
CNI_IPAM_DIR = STATE_DIR / "ipam"


def base_dir() -> Path:
    return cache_root() / "local-cluster"


def containerd_root() -> Path:
    """Images and snapshots: survives cluster-down so the next bring-up imports nothing."""
    return base_dir() / "containerd"


def etcd_dir() -> Path:
    return base_dir() / "etcd"


def volumes_dir() -> Path:
    """Where the local-path provisioner creates PersistentVolumes (deleted by cluster-down)."""
    return base_dir() / "volumes"


def run_dir() -> Path:
    return base_dir() / "run"


def logs_dir() -> Path:
    return run_dir() / "logs"


def pod_logs_dir() -> Path:
    return logs_dir() / "pods"


def pids_dir() -> Path:
    return run_dir() / "pids"


def cni_conf_dir() -> Path:
    return run_dir() / "cni"


def containerd_config() -> Path:
    return run_dir() / "containerd.toml"


def kubeadm_config() -> Path:
    return run_dir() / "kubeadm.yaml"


def kubeconfig() -> Path:
    """The admin kubeconfig users and tests get (a copy of kubeadm's admin.conf)."""
    return base_dir() / "kubeconfig"


def containerd_address() -> str:
    return f"unix://{CONTAINERD_SOCKET}"
